"""`vaetraj kinetics`."""

from __future__ import annotations

from pathlib import Path

import typer

from vaetraj.cli._options import DebugOption, JsonOption, OverwriteOption
from vaetraj.cli._runtime import finish_report, print_table, run_command
from vaetraj.configs import KineticsConfig

# defaults from the config (one place for them)
_CLUSTERS = typer.Option(
    KineticsConfig.clusters, "--clusters", help="k-means clusters of the latent means."
)
_STATES = typer.Option(
    KineticsConfig.states, "--states", help="Metastable states (PCCA+, CK test)."
)
_SEED = typer.Option(KineticsConfig.seed, "--seed", help="Seed of the k-means initialization.")


def kinetics_command(
    latent: Path = typer.Argument(
        Path("latent.h5"), metavar="[LATENT]", help="Latent path from `encode` (latent.h5)."
    ),
    lag: int = typer.Option(
        ..., "--lag", help="Frames between the two ends of a pair (as encoded, after --stride)."
    ),
    clusters: int = _CLUSTERS,
    states: int = _STATES,
    lags: str | None = typer.Option(
        None, "--lags", help="Implied-timescale lags, e.g. 1,2,5,10,20 (default: up to 5x --lag)."
    ),
    frame_time: float | None = typer.Option(
        None,
        "--frame-time",
        metavar="PS",
        help="Picoseconds per latent frame, for timescales in ps too (default: the one "
        "encode recorded from its inputs, if any).",
    ),
    seed: int = _SEED,
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Write the clusters, MSM, states and tests (.h5)."
    ),
    figures: Path | None = typer.Option(
        None, "--figures", help="Folder for timescales.png, ck.png and free_energy.png."
    ),
    overwrite: bool = OverwriteOption,
    json_output: bool = JsonOption,
    debug: bool = DebugOption,
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

        config = KineticsConfig(
            lag=lag, clusters=clusters, states=states, lags=_parse_lags(lags), seed=seed,
            frame_time=frame_time,
        )  # fmt: skip
        report = kinetics_file(latent, output, config, figures=figures, overwrite=overwrite)
        return finish_report(report, json_output=json_output, print_summary=_print_summary)

    run_command(body, json_output=json_output, debug=debug)


def _parse_lags(text: str | None) -> tuple[int, ...] | None:
    from vaetraj.errors import UsageError

    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--lags takes whole numbers separated by commas, got '{text}'") from None


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
