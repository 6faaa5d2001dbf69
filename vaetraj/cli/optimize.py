"""`vaetraj optimize`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from vaetraj.cli._options import (
    DebugOption,
    JsonOption,
    ModelOption,
    OverwriteOption,
    RefineOption,
)
from vaetraj.cli._runtime import finish_report, print_table, run_command
from vaetraj.configs import OptimizeConfig


class Direction(str, Enum):
    min = "min"
    max = "max"


ObjectiveArg = Annotated[
    str,
    typer.Option("--objective", help="rg, end-to-end, distance (--group-a/--group-b) or rmsd."),
]

DirectionArg = Annotated[
    Direction,
    typer.Option("--direction", help="Minimize or maximize the objective (without --target)."),
]

TargetArg = Annotated[
    float | None,
    typer.Option("--target", help="Reach this value instead of minimizing or maximizing."),
]

OutputArg = Annotated[
    Path,
    typer.Option(
        "-o", "--output", help="Best structure: .npz, .h5 or any mdtraj format (.pdb, ...)."
    ),
]

RestartsArg = Annotated[
    int,
    typer.Option("--restarts", help="Starting points, optimized at once."),
]

StepsArg = Annotated[
    int,
    typer.Option("--steps", help="Adam steps (a multiple of 10)."),
]

LrArg = Annotated[
    float,
    typer.Option("--lr", help="Adam learning rate in latent units."),
]

TrustWeightArg = Annotated[
    float,
    typer.Option(
        "--trust-weight",
        help="Weight of the latent-density penalty (0: plain descent, the textbook's).",
    ),
]

TrustQuantileArg = Annotated[
    float,
    typer.Option(
        "--trust-quantile",
        help="The trust region is log p(z) above this quantile of the density's own draws.",
    ),
]

GroupAArg = Annotated[
    str | None,
    typer.Option("--group-a", help="Selection of the first group (--objective distance)."),
]

GroupBArg = Annotated[
    str | None,
    typer.Option("--group-b", help="Selection of the second group (--objective distance)."),
]

TargetStructureArg = Annotated[
    Path | None,
    typer.Option("--target-structure", help="Structure file (--objective rmsd)."),
]

TopArg = Annotated[
    Path | None,
    typer.Option("--top", help="Topology for --target-structure."),
]

SeedArg = Annotated[
    int,
    typer.Option("--seed", help="Seed of the starting points."),
]

DataStartsArg = Annotated[
    float,
    typer.Option(
        "--data-starts",
        help="Share of restarts that start at the training frames scoring best on the "
        "objective (the rest are density draws).",
    ),
]

TetherWidthArg = Annotated[
    float,
    typer.Option(
        "--tether-width",
        help="How far refinement may move a candidate, in units of the decoder's own "
        "per-atom error (sample's refinement uses 3).",
    ),
]

DataArg = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="The aligned training file, for the RMSD to the nearest training frame "
        "(default: the file the model was trained from, if still there).",
    ),
]


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


def optimize_command(
    objective: ObjectiveArg = OptimizeConfig.objective,
    direction: DirectionArg = Direction(OptimizeConfig.direction),
    target: TargetArg = None,
    model: Path = ModelOption,
    output: OutputArg = Path("optimized.npz"),
    restarts: RestartsArg = OptimizeConfig.restarts,
    steps: StepsArg = OptimizeConfig.steps,
    lr: LrArg = OptimizeConfig.learning_rate,
    trust_weight: TrustWeightArg = OptimizeConfig.trust_weight,
    trust_quantile: TrustQuantileArg = OptimizeConfig.trust_quantile,
    group_a: GroupAArg = None,
    group_b: GroupBArg = None,
    target_structure: TargetStructureArg = None,
    top: TopArg = None,
    seed: SeedArg = OptimizeConfig.seed,
    data_starts: DataStartsArg = OptimizeConfig.data_starts,
    refine: bool = RefineOption,
    tether_width: TetherWidthArg = OptimizeConfig.tether_width,
    data: DataArg = None,
    overwrite: bool = OverwriteOption,
    json_output: bool = JsonOption,
    debug: bool = DebugOption,
) -> None:
    """`vaetraj optimize`: see HELP."""
    options = dict(locals())
    run_command(lambda: _optimize(options), json_output=json_output, debug=debug)


def _optimize(o: dict) -> dict[str, Any]:
    from vaetraj.pipeline.optimize import optimize_file

    config = OptimizeConfig(
        objective=o["objective"],
        direction=o["direction"].value,
        target=o["target"],
        restarts=o["restarts"],
        steps=o["steps"],
        learning_rate=o["lr"],
        trust_weight=o["trust_weight"],
        trust_quantile=o["trust_quantile"],
        seed=o["seed"],
        refine=o["refine"],
        tether_width=o["tether_width"],
        data_starts=o["data_starts"],
    )
    group_a, group_b = o["group_a"], o["group_b"]
    groups = None
    if group_a is not None or group_b is not None:
        if group_a is None or group_b is None:
            from vaetraj.errors import UsageError

            raise UsageError("--group-a and --group-b go together")
        groups = (group_a, group_b)
    report = optimize_file(
        o["model"],
        o["output"],
        config,
        groups=groups,
        target_structure=o["target_structure"],
        top=o["top"],
        data=o["data"],
        overwrite=o["overwrite"],
    )
    return finish_report(report, json_output=o["json_output"], print_summary=_print_summary)


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
        rows += _geometry_rows(report)
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
            f"{report.restarts} x {report.steps} steps ({report.data_starts} from training "
            f"frames); the descent alone {report.optimize_time_s:.2f} s",
        ),
        ("time", f"{report.wall_time_s:.1f} s (the whole command)"),
    ]
    print_table("vaetraj optimize", rows)


def _geometry_rows(report) -> list[tuple[str, str]]:
    """The best structure's energy check, energy, refinement and bonds."""
    units = report.units
    rows: list[tuple[str, str]] = []
    failing = [kind for kind, failed in report.failures.items() if failed]
    verdict = "pass" if report.plausible else f"FAIL ({', '.join(failing)})"
    if report.contacts_colder_than_md:
        verdict += (
            "; contacts colder than the MD frames' 1st percentile (allowed: compacting makes more)"
        )
    rows.append(
        (
            "energy check",
            verdict
            + f" ({report.plausible_candidates} of {report.candidates} candidates pass"
            + (
                f"; {report.redrawn} of them redraws of the best points)" if report.redrawn else ")"
            ),
        )
    )
    low, high = report.train_energy_range
    rows.append(
        ("energy (kT)", f"{report.energy:.3g} (MD frames' p1 to p99: {low:.3g} to {high:.3g})")
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
    return rows
