"""`vaetraj evaluate`."""

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
from vaetraj.cli._runtime import finish_report, print_table, run_command
from vaetraj.configs import EvaluateConfig, ReadOptions


@with_options(
    config_options(EvaluateConfig),
    config_options(ReadOptions, skip=("allow_partial", "frame_time"),
                   helps={"select": MODEL_SELECT_HELP}),
    {"json_output": OUTPUT_OPTIONS["json_output"], "debug": OUTPUT_OPTIONS["debug"]},
)  # fmt: skip
def evaluate_command(
    inputs: list[Path] = typer.Argument(
        ..., metavar="DATA...", help="Trajectory files or an aligned .h5."
    ),
    model: Path = ModelOption,
    **o: Any,
) -> None:
    """Evaluate a model on a trajectory: reconstruction, likelihood, sample fidelity.

    Reports the reconstruction RMSD (mean and per atom), the ELBO terms, the
    importance-weighted log-likelihood with K draws, KL per dimension and active units,
    the 1-Wasserstein distance between data and samples (pairwise distances and R_g),
    sample plausibility, and prior holes.

    Examples:

      vaetraj evaluate aligned.h5

      vaetraj evaluate paths.npz --json -k 256
    """

    def body():
        from vaetraj.pipeline.evaluate import evaluate_file

        config, options = config_from(EvaluateConfig, o), config_from(ReadOptions, o)
        report = evaluate_file(inputs, model, config, options)
        return finish_report(report, json_output=o["json_output"], print_summary=_print_summary)

    run_command(body, json_output=o["json_output"], debug=o["debug"])


def _print_summary(report) -> None:
    units = report.units
    featurized = report.representation == "featurized"
    w1 = (
        f"per feature mean {report.w1_pairwise_mean:.3g} (max {report.w1_pairwise_max:.3g})"
        if featurized
        else f"pairwise mean {report.w1_pairwise_mean:.3g} (max {report.w1_pairwise_max:.3g}), "
        f"R_g {report.w1_rg:.3g}"
    )
    rows = [
        ("data", f"{report.data} ({report.frames:,} frames)"),
        (
            "recon RMS error (features)" if featurized else f"recon RMSD ({units})",
            f"{report.recon_rmsd:.4g}",
        ),
        (
            "ELBO (nats/frame)",
            f"{report.elbo:.4g} = log-lik {report.reconstruction_log_likelihood:.4g} "
            f"- KL {report.kl:.4g}",
        ),
        (f"IWAE log p(x), K={report.iwae_samples}", f"{report.iwae_log_likelihood:.4g}"),
        ("KL per dim", ", ".join(f"{v:.3g}" for v in report.kl_per_dim)),
        ("active units", f"{report.active_units} of {report.latent_dim}"),
        (
            "sample W1" + ("" if featurized else f" ({units})"),
            f"{w1}  [{report.samples} from the {report.prior} prior]",
        ),
    ]
    if report.sample_plausible_fraction is not None:
        rows += [
            (
                "energy check",
                f"samples {report.sample_plausible_fraction:.1%} pass, data "
                f"{report.data_plausible_fraction:.1%}"
                + (
                    f" (samples before refinement {report.raw_sample_plausible_fraction:.1%})"
                    if report.raw_sample_plausible_fraction is not None
                    else ""
                ),
            ),
            (
                f"mean bond ({units})",
                f"samples {report.sample_mean_bond:.4g}, data {report.data_mean_bond:.4g}",
            ),
        ]
    rows += [
        ("prior holes", f"{report.prior_hole_fraction:.1%} of N(0, I) mass"),
        ("wall time", f"{report.wall_time_s:.1f} s"),
    ]
    print_table("vaetraj evaluate", rows)
