"""`vaetraj optimize`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from vaetraj.cli._options import (
    DebugOption,
    JsonOption,
    ModelOption,
    OverwriteOption,
    RefineOption,
)
from vaetraj.cli._runtime import finish_report, print_table, run_command


class Direction(str, Enum):
    min = "min"
    max = "max"


def optimize_command(
    objective: str = typer.Option(
        "rg", "--objective", help="rg, end-to-end, distance (--group-a/--group-b) or rmsd."
    ),
    direction: Direction = typer.Option(
        Direction.min, "--direction", help="Minimize or maximize the objective (without --target)."
    ),
    target: float | None = typer.Option(
        None, "--target", help="Reach this value instead of minimizing or maximizing."
    ),
    model: Path = ModelOption,
    output: Path = typer.Option(
        Path("optimized.npz"),
        "-o",
        "--output",
        help="Best structure: .npz, .h5 or any mdtraj format (.pdb, ...).",
    ),
    restarts: int = typer.Option(64, "--restarts", help="Starting points, optimized at once."),
    steps: int = typer.Option(500, "--steps", help="Adam steps (a multiple of 10)."),
    lr: float = typer.Option(0.05, "--lr", help="Adam learning rate in latent units."),
    trust_weight: float = typer.Option(
        10.0,
        "--trust-weight",
        help="Weight of the latent-density penalty (0: plain descent, the textbook's).",
    ),
    trust_quantile: float = typer.Option(
        0.01,
        "--trust-quantile",
        help="The trust region is log p(z) above this quantile of the density's own draws.",
    ),
    group_a: str | None = typer.Option(
        None, "--group-a", help="Selection of the first group (--objective distance)."
    ),
    group_b: str | None = typer.Option(
        None, "--group-b", help="Selection of the second group (--objective distance)."
    ),
    target_structure: Path | None = typer.Option(
        None, "--target-structure", help="Structure file (--objective rmsd)."
    ),
    top: Path | None = typer.Option(None, "--top", help="Topology for --target-structure."),
    seed: int = typer.Option(0, "--seed", help="Seed of the starting points."),
    data_starts: float = typer.Option(
        0.5,
        "--data-starts",
        help="Share of restarts that start at the training frames scoring best on the "
        "objective (the rest are density draws).",
    ),
    refine: bool = RefineOption,
    tether_width: float = typer.Option(
        1.0,
        "--tether-width",
        help="How far refinement may move a candidate, in units of the decoder's own "
        "per-atom error (sample's refinement uses 3).",
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="The aligned training file, for the RMSD to the nearest training frame "
        "(default: the file the model was trained from, if still there).",
    ),
    overwrite: bool = OverwriteOption,
    json_output: bool = JsonOption,
    debug: bool = DebugOption,
) -> None:
    """Find structures that optimize an objective, by gradient descent in latent space.

    Every restart runs in one compiled loop; the latent density keeps them where the
    decoder is trustworthy. Half the restarts start at the training frames that score
    best. Every candidate is refined to the training data's local geometry, and the
    best one that passes the geometry check (bonds, angles, contacts, handedness) is
    written.

    Examples:

      vaetraj optimize --objective rg              # most compact -> optimized.npz

      vaetraj optimize --objective distance --group-a "index 0" --group-b "index 11" --direction max -o far.pdb
    """

    def body():
        from vaetraj.pipeline.optimize import OptimizeConfig, optimize_file

        config = OptimizeConfig(
            objective=objective,
            direction=direction.value,
            target=target,
            restarts=restarts,
            steps=steps,
            learning_rate=lr,
            trust_weight=trust_weight,
            trust_quantile=trust_quantile,
            seed=seed,
            refine=refine,
            tether_width=tether_width,
            data_starts=data_starts,
        )
        groups = None
        if group_a is not None or group_b is not None:
            if group_a is None or group_b is None:
                from vaetraj.errors import UsageError

                raise UsageError("--group-a and --group-b go together")
            groups = (group_a, group_b)
        report = optimize_file(
            model,
            output,
            config,
            groups=groups,
            target_structure=target_structure,
            top=top,
            data=data,
            overwrite=overwrite,
        )
        return finish_report(report, json_output=json_output, print_summary=_print_summary)

    run_command(body, json_output=json_output, debug=debug)


def _print_summary(report) -> None:
    units = report.units
    goal = f"reach {report.target:g}" if report.target is not None else f"{report.direction}imize"
    rows = [
        ("output", report.output),
        ("objective", f"{report.objective}: {goal}"),
        (
            "best",
            f"{report.best_value:.4g} {units} (restart {report.best_restart}, step "
            f"{report.best_step})",
        ),
        (
            "model's samples",
            f"{report.sample_value_range[0]:.4g} to {report.sample_value_range[1]:.4g}",
        ),
    ]
    if report.train_rg_min is not None:
        rows.append(
            (
                f"R_g ({units})",
                f"{report.rg:.4g} (training frames: {report.train_rg_min:.4g} to "
                f"{report.train_rg_max:.4g})",
            )
        )
    if report.nearest_frame_rmsd is not None:
        rows.append(("nearest training frame", f"RMSD {report.nearest_frame_rmsd:.4g} {units}"))
    if report.plausible is not None:
        failing = [kind for kind, failed in report.failures.items() if failed]
        rows.append(
            (
                "geometry check",
                ("pass" if report.plausible else f"FAIL ({', '.join(failing)})")
                + f" ({report.plausible_candidates} of {report.candidates} candidates pass)",
            )
        )
        if report.refined:
            rows.append(
                (
                    "refined",
                    f"moved {report.moved:.3g} {units} RMSD (tether "
                    f"{report.tether_width:g}x the decoder's error)",
                )
            )
        rows.append(
            (
                "bonds",
                f"{report.min_bond:.3g} to {report.max_bond:.3g}, mean {report.mean_bond:.3g} "
                f"(training frames' mean {report.train_mean_bond:.3g}); closest non-bonded "
                f"{report.closest_nonbonded:.3g}",
            )
        )
    rows += [
        (
            "trust region",
            "off"
            if report.trust_threshold is None
            else f"{'inside' if report.inside_trust_region else 'outside'} "
            f"(log p {report.best_log_density:.3g}, threshold {report.trust_threshold:.3g})",
        ),
        (
            "restarts",
            f"{report.restarts} x {report.steps} steps in {report.optimize_time_s:.2f} s "
            f"({report.data_starts} from training frames)",
        ),
        ("wall time", f"{report.wall_time_s:.1f} s"),
    ]
    print_table("vaetraj optimize", rows)
