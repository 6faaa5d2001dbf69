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
from vaetraj.cli._runtime import finish_report, print_table, run_command
from vaetraj.configs import KineticsConfig

KINETICS_OUTPUTS: OptionGroup = {
    "output": (Annotated[Path | None, typer.Option("-o", "--output", help="Write the clusters, MSM, states and tests (.h5).")], None),
    "figures": (Annotated[Path | None, typer.Option(help="Folder for timescales.png, ck.png and free_energy.png.")], None),
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
    """

    def body():
        from vaetraj.pipeline.kinetics import kinetics_file

        config = config_from(KineticsConfig, o)
        report = kinetics_file(latent, o["output"], config, figures=o["figures"],
                               overwrite=o["overwrite"])  # fmt: skip
        return finish_report(report, json_output=o["json_output"], print_summary=_print_summary)

    run_command(body, json_output=o["json_output"], debug=o["debug"])


def _print_summary(report) -> None:
    def in_time(values):
        frames = ", ".join(f"{v:.4g}" for v in values)
        if report.implied_timescales_ps is None:
            return f"{frames} frames"
        return f"{frames} frames = " + ", ".join(
            f"{v:.4g}" for v in report.implied_timescales_ps
        ) + " ps"  # fmt: skip

    rows = [
        ("latent", f"{report.latent} ({report.frames:,} frames, {report.trajectories} "
                   f"{'trajectory' if report.trajectories == 1 else 'trajectories'})"),
        (f"VAMP-2 at lag {report.lag}", f"{report.vamp2:.4f}"),
        ("Markov model", f"{report.active_states} of {report.clusters} clusters connected "
                         f"({report.active_fraction:.1%} of frames)"),
        ("implied timescales", in_time(report.implied_timescales)),
        (f"{report.states} metastable states", ", ".join(
            f"{w:.1%} ({n:,} frames)"
            for w, n in zip(report.stationary_weights, report.state_frames, strict=True))),
        ("Chapman-Kolmogorov", "not run" if report.ck_max_error is None else
         f"largest error {report.ck_max_error:.3f} over lags {report.ck_lags}"),
    ]  # fmt: skip
    if report.output:
        rows.append(("written", report.output))
    if report.figures:
        rows.append(("figures", ", ".join(report.figures)))
    print_table("kinetics", rows)
