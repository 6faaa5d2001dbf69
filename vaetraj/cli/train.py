"""`vaetraj train`: its options are the fields of the model's, the training's, the
reading's, the alignment's and the featurization's configs (`vaetraj.configs`)."""

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
from vaetraj.cli._runtime import (
    SILENT,
    finish_report,
    keep_stdout_for_records,
    keep_termination_handler,
    progress_bar,
    run_command,
)
from vaetraj.configs import (
    JOIN_TIMEOUT_S,
    AlignConfig,
    FeaturizeConfig,
    ModelConfig,
    ReadOptions,
    TrainConfig,
)

HELP = """Train a beta-VAE on aligned frames and write the model file.

Checkpoints are written every --checkpoint-every epochs and on Ctrl-C or SIGTERM
(exit 75); the same command with --resume continues exactly where it stopped.

Examples:

  vaetraj align && vaetraj train                 # aligned.h5 -> model.h5

  vaetraj train long_paths.npz --epochs 250 --latent-dim 2 -o polymer.h5

  vaetraj train ala2.dcd --top ala2.pdb --method kabsch --select "not element H"

  vaetraj train ala2.dcd --top ala2.pdb --featurize torsions --lag 10

  vaetraj train classes.npy --features --likelihood categorical --latent-dim 1
"""

InputsArg = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="[DATA]...",
        help="An aligned .h5 (default aligned.h5), or trajectory files aligned first "
        "with the --method/--reference/--select options of `align`.",
    ),
]

_PANEL = "Reading and aligning raw DATA"
# what the run is and where it goes: options of no config
RUN_OPTIONS: OptionGroup = {
    "checkpoint": (
        Annotated[Path | None, typer.Option(help="Checkpoint file. Default: MODEL.ckpt.h5 beside the model.")],
        None,
    ),
    "resume": (
        Annotated[bool, typer.Option(help="Continue the interrupted run from its checkpoint.")],
        False,
    ),
    "memory_budget": (
        Annotated[str | None, typer.Option(metavar="SIZE", help="Memory the frames may take (64MB, 2GB style); an aligned file larger is streamed from disk within it. Default: half of the memory available.")],
        None,
    ),
    "coordinator": (
        Annotated[str | None, typer.Option(metavar="HOST:PORT", help="Process 0's address, to train over several processes (jax.distributed). Default: from SLURM (srun) or Open MPI (mpirun) when they started several tasks.")],
        None,
    ),
    "num_processes": (
        Annotated[int | None, typer.Option(min=1, help="Processes of the run (with --coordinator).")],
        None,
    ),
    "process_id": (
        Annotated[int | None, typer.Option(min=0, help="This process's index, 0 to N-1 (0 writes).")],
        None,
    ),
    "join_timeout": (
        Annotated[float, typer.Option(metavar="SECONDS", help="How long to wait for the other processes to join before giving up.")],
        JOIN_TIMEOUT_S,
    ),
    "weights": (
        Annotated[Path | None, typer.Option(help="Per-frame weights of biased frames (a `vaetraj bias` .h5, .npy or text): training and validation frames are drawn in proportion to them.")],
        None,
    ),
    "features": (
        Annotated[bool, typer.Option(help="DATA is one plain table (.npy, .npz or .csv; frames x features), trained on as it is: no alignment, no structure checks.")],
        False,
    ),
}  # fmt: skip
# --featurize is off unless given (its config's kind has a default for Python callers)
FEATURIZE_OPTIONS = config_options(FeaturizeConfig, panel="Features", optional=("kind",))


@with_options(
    config_options(ModelConfig),
    config_options(TrainConfig),
    RUN_OPTIONS,
    config_options(AlignConfig, panel=_PANEL),
    config_options(ReadOptions, skip=("allow_partial",), panel=_PANEL),
    FEATURIZE_OPTIONS,
    OUTPUT_OPTIONS,
)
def train_command(
    inputs: InputsArg = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="Model .h5 to write.")] = Path(
        "model.h5"
    ),
    **grouped: Any,
) -> None:
    """`vaetraj train`: see HELP."""
    options = {"inputs": inputs, "output": output, **grouped}
    run_command(lambda: _train(options), json_output=grouped["json_output"], debug=grouped["debug"])


def _train(o: dict) -> dict[str, Any] | None:
    from vaetraj.errors import TrainingFailedError
    from vaetraj.pipeline.runtime.processes import expected_count, join, leaving_last, will_join
    from vaetraj.pipeline.train import check_for_processes, train_file

    # every check a process can make alone comes before the join: a refused option
    # must not wait for peers (or hang, when they were refused the same way)
    check_for_processes(_configs(o)[1], expected_count(o["num_processes"]))
    flags = (o["coordinator"], o["num_processes"], o["process_id"])
    if will_join(*flags, timeout=o["join_timeout"]):  # gloo speaks as processes connect
        keep_stdout_for_records()
    processes = join(*flags, timeout=o["join_timeout"])
    if processes.count > 1:
        keep_termination_handler()
    json_output = o["json_output"]
    if not processes.primary:  # the others print nothing but errors
        train_file(o["inputs"], o["output"], *_configs(o), **_file_options(o, None))
        return SILENT
    with leaving_last(processes), progress_bar(not json_output) as progress:
        try:
            report = train_file(
                o["inputs"], o["output"], *_configs(o), **_file_options(o, progress)
            )
        except TrainingFailedError as failure:  # the numbers first, then the error line
            finish_report(failure.report, json_output=json_output, title="vaetraj train")
            raise
    return finish_report(report, json_output=json_output, title="vaetraj train")


def _configs(o: dict) -> tuple:
    """The model's and the training's configs from the options."""
    return config_from(ModelConfig, o), config_from(TrainConfig, o)


def _file_options(o: dict, progress) -> dict[str, Any]:
    """`train_file`'s keyword arguments from the options."""
    return {
        "align_config": config_from(AlignConfig, o),
        "read_options": config_from(ReadOptions, o),
        "checkpoint": o["checkpoint"],
        "resume": o["resume"],
        "overwrite": o["overwrite"],
        "features": o["features"],
        "featurize": _featurize_config(o),
        "progress": progress,
        "memory_budget": _memory_budget(o["memory_budget"]),
        "weights": o["weights"],
    }


def _featurize_config(o: dict) -> FeaturizeConfig | None:
    """--featurize's config, or None; its options without it are refused."""
    from vaetraj.errors import UsageError

    if o["kind"] is None:
        given = [f"--{name.replace('_', '-')}" for name, (_, default) in
                 FEATURIZE_OPTIONS.items() if o[name] != default]  # fmt: skip
        if given:
            raise UsageError(f"{', '.join(given)} only go with --featurize")
        return None
    return config_from(FeaturizeConfig, o)


def _memory_budget(text: str | None) -> int | None:
    from vaetraj._memory import parse_size
    from vaetraj.errors import UsageError

    if text is None:
        return None
    try:
        return parse_size(text)
    except ValueError as error:
        raise UsageError(f"--memory-budget: {error}") from None
