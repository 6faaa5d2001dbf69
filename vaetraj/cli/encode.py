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
from vaetraj.cli._runtime import finish_report, print_table, progress_bar, run_command
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
        return finish_report(report, json_output=o["json_output"], print_summary=_print_summary)

    run_command(body, json_output=o["json_output"], debug=o["debug"])


def _print_summary(report) -> None:
    ranges = ", ".join(
        f"[{low:.3g}, {high:.3g}]"
        for low, high in zip(report.mean_min, report.mean_max, strict=True)
    )
    rows = [
        ("output", report.output),
        (
            "frames",
            f"{report.frames:,} ({report.atoms} features)"
            if report.alignment == "features"
            else f"{report.frames:,} ({report.atoms} atoms, featurized: {report.featurizer})"
            if report.featurizer
            else f"{report.frames:,} ({report.atoms} atoms, aligned: {report.alignment})",
        ),
        ("latent mean range", ranges),
        ("mean posterior std", ", ".join(f"{s:.3g}" for s in report.std_mean)),
        *(
            [(f"R_g ({report.units})", f"{report.rg_min:.4g} to {report.rg_max:.4g}")]
            if report.rg_min is not None
            else []
        ),
    ]
    if report.recon_rmsd_mean is not None:
        label = (
            "recon RMS error"
            if report.alignment in ("features", "featurized")
            else f"recon RMSD ({report.units})"
        )
        rows.append((label, f"{report.recon_rmsd_mean:.4g}"))
    rows += [
        ("throughput", f"{report.frames_per_s:,.0f} frames/s"),
        ("wall time", f"{report.wall_time_s:.1f} s"),
    ]
    print_table("vaetraj encode", rows)
