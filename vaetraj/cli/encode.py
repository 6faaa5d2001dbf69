"""`vaetraj encode`."""

from __future__ import annotations

from pathlib import Path

import typer

from vaetraj.cli._options import (
    DebugOption,
    FrameTimeOption,
    JsonOption,
    ModelOption,
    OverwriteOption,
)
from vaetraj.cli._runtime import finish_report, print_table, progress_bar, run_command


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
    top: Path | None = typer.Option(None, "--top", help="Topology for formats without one."),
    select: str | None = typer.Option(
        None,
        "--select",
        help="mdtraj selection of the model's atoms (default: the selection the model "
        "was trained with, when the file has more atoms).",
    ),
    stride: int = typer.Option(1, "--stride", min=1, help="Keep every Nth frame."),
    key: str | None = typer.Option(None, "--key", help="Array name in an .npz."),
    frame_time: float | None = FrameTimeOption,
    overwrite: bool = OverwriteOption,
    json_output: bool = JsonOption,
    debug: bool = DebugOption,
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
        from vaetraj.io.trajectory import ReadOptions
        from vaetraj.pipeline.encode import encode_file

        options = ReadOptions(top=top, select=select, stride=stride, key=key, frame_time=frame_time)
        with progress_bar(not json_output) as progress:
            report = encode_file(
                inputs,
                model,
                output,
                options,
                recon=recon,
                overwrite=overwrite,
                progress=progress,
            )
        return finish_report(report, json_output=json_output, print_summary=_print_summary)

    run_command(body, json_output=json_output, debug=debug)


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
