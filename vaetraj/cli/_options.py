"""Options every command has, those the commands that generate structures share, and
option groups declared once and added to a command's signature (`with_options`)."""

import inspect
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any

import typer

OptionGroup = dict[str, tuple[Any, Any]]  # parameter name -> (Annotated type, default)


def with_options(*groups: OptionGroup) -> Callable[[Callable], Callable]:
    """Add the groups' options to a command whose last parameter is `**grouped`: typer
    reads them from the signature, and the command gets them as keyword arguments."""

    def wrap(function: Callable) -> Callable:
        signature = inspect.signature(function, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        added = [
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
            )  # fmt: skip
            for group in groups
            for name, (annotation, default) in group.items()
        ]
        function.__signature__ = signature.replace(parameters=kept + added)  # type: ignore[attr-defined]
        return function

    return wrap


OverwriteOption = typer.Option(False, "--overwrite", help="Replace an existing output.")
JsonOption = typer.Option(False, "--json", help="Print one JSON result record on stdout.")
DebugOption = typer.Option(False, "--debug", help="Show the traceback of an error.")
FrameTimeOption = typer.Option(
    None,
    "--frame-time",
    metavar="PS",
    help="Picoseconds between the input files' frames (before --stride), for files that "
    "do not record it (mdtraj's DCDs, arrays). Default: what the files record.",
)
ModelOption = typer.Option(
    Path("model.h5"), "--model", "-m", help="Model file from `vaetraj train`."
)


class Relax(str, Enum):
    statistical = "statistical"
    openmm = "openmm"


RelaxOption = typer.Option(
    Relax.statistical,
    "--relax",
    help="What refinement samples: the training frames' statistical potential, or "
    "(openmm) the AMBER ff14SB force field with OBC2 implicit solvent, for all-atom "
    "proteins and peptides in nm (needs pip install 'vaetraj[openmm]'); the energy "
    "check judges both.",
)

RefineOption = typer.Option(
    True,
    "--refine/--no-refine",
    help="Relax each decoded structure to the training data's bonds, angles, contacts "
    "and handedness before it is judged or written (the decoder's mean has short bonds "
    "and overlapping atoms).",
)
