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
from vaetraj.cli._runtime import finish_report, run_command
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
    weights: Path | None = typer.Option(
        None,
        "--weights",
        help="Per-frame weights of biased frames (a `vaetraj bias` .h5, .npy or text): "
        "frames are drawn in proportion to them, so every score is of the unbiased ensemble.",
    ),
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

      vaetraj evaluate biased.dcd --top ala2.pdb --weights bias.h5
    """

    def body():
        from vaetraj.pipeline.evaluate import evaluate_file

        config, options = config_from(EvaluateConfig, o), config_from(ReadOptions, o)
        report = evaluate_file(inputs, model, config, options, weights=weights)
        return finish_report(report, json_output=o["json_output"], title="vaetraj evaluate")

    run_command(body, json_output=o["json_output"], debug=o["debug"])
