"""`vaetraj kinetics`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from vaetraj.cli._options import (
    OUTPUT_OPTIONS,
    OptionGroup,
    config_from,
    config_options,
    with_options,
)
from vaetraj.cli._runtime import finish_report, run_command
from vaetraj.configs import KineticsConfig

KINETICS_OUTPUTS: OptionGroup = {
    "output": (Annotated[Path | None, typer.Option("-o", "--output", help="Write the clusters, MSM, states and tests (.h5).")], None),
    "figures": (Annotated[Path | None, typer.Option(help="Folder for timescales.png, ck.png and free_energy.png.")], None),
    "weights": (Annotated[Path | None, typer.Option(help="Per-frame weights of a biased run (a bias .h5, .npy or text): equilibrium populations and free energy.")], None),
}  # fmt: skip


@with_options(config_options(KineticsConfig), KINETICS_OUTPUTS, OUTPUT_OPTIONS)
def kinetics_command(
    latent: Path = typer.Argument(
        Path("latent.h5"), metavar="[LATENT]", help="Latent path from `encode` (latent.h5)."
    ),
    **o: Any,
) -> None:
    """Slow processes on a latent path: VAMP-2, a Markov state model, implied
    timescales, a Chapman-Kolmogorov test and metastable states (deeptime underneath).

    Pairs of frames never span two input files of `encode`.

    Examples:

      vaetraj kinetics --lag 10

      vaetraj kinetics latent.h5 --lag 10 --clusters 100 --states 2 -o kinetics.h5 --json

      vaetraj kinetics --lag 10 --frame-time 0.5 --figures figures

      vaetraj kinetics biased_latent.h5 --lag 10 --weights bias.h5   # a biased run
    """

    def body():
        from vaetraj.pipeline.kinetics import kinetics_file

        config = config_from(KineticsConfig, o)
        report = kinetics_file(latent, o["output"], config, figures=o["figures"],
                               overwrite=o["overwrite"], weights=o["weights"])  # fmt: skip
        return finish_report(report, json_output=o["json_output"], title="kinetics")

    run_command(body, json_output=o["json_output"], debug=o["debug"])
