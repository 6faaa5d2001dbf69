"""`vaetraj encode`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from vaetraj.cli._options import (
    MODEL_SELECT_HELP,
    OUTPUT_OPTIONS,
    ModelOption,
    config_from,
    config_options,
    with_options,
)
from vaetraj.cli._runtime import finish_report, progress_bar, run_command
from vaetraj.configs import ReadOptions


@with_options(
    config_options(ReadOptions, skip=("allow_partial",), helps={"select": MODEL_SELECT_HELP}),
    OUTPUT_OPTIONS,
)
def encode_command(
    inputs: list[Path] = typer.Argument(
        ..., metavar="TRAJ...", help="Trajectory files (any format `align` reads)."
    ),
    model: Path = ModelOption,
    output: Path = typer.Option(
        Path("latent.h5"), "-o", "--output", help="Latent path: .h5, .npz or .csv."
    ),
    recon: bool = typer.Option(
        False, "--recon", help="Add each frame's reconstruction RMSD (decode of the mean)."
    ),
    **o: Any,
) -> None:
    """Encode trajectories to a latent path: posterior mean and std per frame.

    Frames are aligned exactly as the model's training frames were (its stored method,
    reference, masses and atom selection), read and encoded chunk by chunk. Each frame's
    R_g is stored too (for `vaetraj plot`).

    Examples:

      vaetraj encode traj.npz                      # model.h5 -> latent.h5

      vaetraj encode ala2.dcd --top ala2.pdb -o latent.csv --recon
    """

    def body():
        from vaetraj.pipeline.encode import encode_file

        options = config_from(ReadOptions, o)
        with progress_bar(not o["json_output"]) as progress:
            report = encode_file(inputs, model, output, options, recon=recon,
                                 overwrite=o["overwrite"], progress=progress)  # fmt: skip
        return finish_report(report, json_output=o["json_output"], title="vaetraj encode")

    run_command(body, json_output=o["json_output"], debug=o["debug"])
