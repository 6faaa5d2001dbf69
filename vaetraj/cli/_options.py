"""Options every command has, and those the commands that generate structures share."""

from enum import Enum
from pathlib import Path

import typer

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
