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
from vaetraj.cli._runtime import finish_report, print_table, run_command
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
