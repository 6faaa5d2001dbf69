"""`vaetraj optimize`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vaetraj.cli._options import (
    OUTPUT_OPTIONS,
    ModelOption,
    OptionGroup,
    config_from,
    config_options,
    with_options,
)
from vaetraj.cli._runtime import finish_report, run_command
from vaetraj.configs import OptimizeConfig

OutputArg = Annotated[
    Path,
    typer.Option(
        "-o", "--output", help="Best structure: .npz, .h5 or any mdtraj format (.pdb, ...)."
    ),
]

# options of no config: the objective's atoms and structures, and the training data
OPTIMIZE_INPUTS: OptionGroup = {
    "group_a": (Annotated[str | None, typer.Option(help="Selection of the first group (--objective distance).")], None),
    "group_b": (Annotated[str | None, typer.Option(help="Selection of the second group (--objective distance).")], None),
    "target_structure": (Annotated[Path | None, typer.Option(help="Structure file (--objective rmsd).")], None),
    "top": (Annotated[Path | None, typer.Option(help="Topology for --target-structure.")], None),
    "data": (Annotated[Path | None, typer.Option(help="The aligned training file, for the RMSD to the nearest training frame (default: the file the model was trained from, if still there).")], None),
}  # fmt: skip


HELP = """Find structures that optimize an objective, by gradient descent in latent space.

Every restart runs in one compiled loop; the latent density keeps them where the
decoder is trustworthy. Half the restarts start at the training frames that score
best. Every candidate is made a thermal conformation on the training frames'
statistical potential, and the best one whose energies (bonds, angles, torsions,
contacts, handedness, and their sum) lie inside the held-out MD frames' ranges is
written.

Examples:

  vaetraj optimize --objective rg              # most compact -> optimized.npz

  vaetraj optimize --objective distance --group-a "index 0" --group-b "index 11" --direction max -o far.pdb
"""


@with_options(config_options(OptimizeConfig), OPTIMIZE_INPUTS, OUTPUT_OPTIONS)
def optimize_command(
    model: Path = ModelOption, output: OutputArg = Path("optimized.npz"), **grouped: Any
) -> None:
    """`vaetraj optimize`: see HELP."""
    options = {"model": model, "output": output, **grouped}
    run_command(
        lambda: _optimize(options), json_output=grouped["json_output"], debug=grouped["debug"]
    )


def _optimize(o: dict) -> dict[str, Any]:
    from vaetraj.errors import UsageError
    from vaetraj.pipeline.optimize import optimize_file

    group_a, group_b = o["group_a"], o["group_b"]
    if (group_a is None) != (group_b is None):
        raise UsageError("--group-a and --group-b go together")
    report = optimize_file(
        o["model"],
        o["output"],
        config_from(OptimizeConfig, o),
        groups=None if group_a is None else (group_a, group_b),
        target_structure=o["target_structure"],
        top=o["top"],
        data=o["data"],
        overwrite=o["overwrite"],
    )
    return finish_report(report, json_output=o["json_output"], title="vaetraj optimize")
