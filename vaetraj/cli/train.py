"""`vaetraj train`."""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from vaetraj.cli._options import (
    DebugOption,
    FrameTimeOption,
    JsonOption,
    OptionGroup,
    OverwriteOption,
    with_options,
)
from vaetraj.cli._runtime import (
    SILENT,
    finish_report,
    keep_stdout_for_records,
    keep_termination_handler,
    print_table,
    progress_bar,
    run_command,
)
from vaetraj.cli.align import Method, _parse_reference
from vaetraj.configs import (
    FEATURIZATIONS,
    JOIN_TIMEOUT_S,
    TORSION_KINDS,
    FeaturizeConfig,
    ModelConfig,
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


class Activation(str, Enum):
    relu = "relu"
    gelu = "gelu"
    silu = "silu"
    tanh = "tanh"
    softplus = "softplus"
    elu = "elu"


class Likelihood(str, Enum):
    mse = "mse"
    gaussian = "gaussian"
    gaussian_learned = "gaussian-learned"
    categorical = "categorical"


class Posterior(str, Enum):
    diagonal = "diagonal"
    full = "full"


class Optimizer(str, Enum):
    adam = "adam"
    adamw = "adamw"
    sgd = "sgd"
    rmsprop = "rmsprop"


class Schedule(str, Enum):
    constant = "constant"
    cosine = "cosine"


class LrScaling(str, Enum):
    fan_in = "fan-in"
    uniform = "uniform"


class Keep(str, Enum):
    best = "best"
    last = "last"


InputsArg = Annotated[
    list[Path] | None,
    typer.Argument(
        metavar="[DATA]...",
        help="An aligned .h5 (default aligned.h5), or trajectory files aligned first "
        "with the --method/--reference/--select options of `align`.",
    ),
]

OutputArg = Annotated[
    Path,
    typer.Option("-o", "--output", help="Model .h5 to write."),
]

LatentDimArg = Annotated[
    int | None,
    typer.Option(
        "--latent-dim",
        help="Latent dimensions [default: 4; fewer for an input of at most 4 features; "
        "the textbook's is 2].",
        show_default=False,
    ),
]

HiddenArg = Annotated[
    int,
    typer.Option("--hidden", help="Units per hidden layer."),
]

LayersArg = Annotated[
    int,
    typer.Option(
        "--layers", help="Weight layers per network, as the textbook counts: 4 = 3 hidden."
    ),
]

ActivationArg = Annotated[
    Activation,
    typer.Option("--activation", help="Hidden-layer activation."),
]

LikelihoodArg = Annotated[
    Likelihood,
    typer.Option(
        "--likelihood",
        help="mse: sum of squared errors; gaussian: fixed --decoder-std; gaussian-learned: "
        "the decoder predicts a std per feature; categorical: one-hot rows (with --features).",
    ),
]

DecoderStdArg = Annotated[
    float,
    typer.Option("--decoder-std", help="Decoder std for --likelihood gaussian (normalized units)."),
]

PosteriorArg = Annotated[
    Posterior,
    typer.Option("--posterior", help="diagonal, or full (Cholesky) covariance."),
]

InputNoiseArg = Annotated[
    float,
    typer.Option(
        "--input-noise",
        help="Std of the noise on the (standardized) frames the encoder sees in training; "
        "the loss scores the clean frame (denoising). 0: off.",
    ),
]

BetaArg = Annotated[
    float,
    typer.Option("--beta", help="Weight of the KL term."),
]

KlWarmupArg = Annotated[
    int,
    typer.Option("--kl-warmup", help="Epochs over which beta ramps up from 0 (against collapse)."),
]

SamplesArg = Annotated[
    int,
    typer.Option("--samples", help="Reparameterized draws per frame."),
]

EpochsArg = Annotated[
    int,
    typer.Option("--epochs", help="Passes over the training frames."),
]

BatchSizeArg = Annotated[
    int,
    typer.Option("--batch-size", help="Frames per gradient step."),
]

LrArg = Annotated[
    float,
    typer.Option("--lr", help="Peak learning rate."),
]

WarmupEpochsArg = Annotated[
    int | None,
    typer.Option(
        "--warmup-epochs",
        help="Epochs of linear learning-rate warm-up from 0. Default: 5, at most a tenth "
        "of --epochs.",
    ),
]

OptimizerArg = Annotated[
    Optimizer,
    typer.Option("--optimizer", help="optax optimizer (sgd: with Nesterov momentum)."),
]

ScheduleArg = Annotated[
    Schedule,
    typer.Option("--schedule", help="cosine: decay to 1% of --lr; constant."),
]

ClipNormArg = Annotated[
    float | None,
    typer.Option("--clip-norm", help="Clip the global gradient norm to this."),
]

LrScalingArg = Annotated[
    LrScaling,
    typer.Option(
        "--lr-scaling",
        help="fan-in: the first layer's rate times hidden/features when features are more "
        "(same defaults for any molecule size); uniform: --lr for every layer.",
    ),
]

WeightDecayArg = Annotated[
    float,
    typer.Option(
        "--weight-decay",
        help="Decoupled (AdamW) weight decay on the weight matrices, times the rate per "
        "step; 0 for none.",
    ),
]

ValFractionArg = Annotated[
    float,
    typer.Option(
        "--val-fraction",
        help="Share of each trajectory held out to validate (and pick the kept epoch).",
    ),
]

ValBlocksArg = Annotated[
    int,
    typer.Option("--val-blocks", help="Contiguous blocks per trajectory the held-out frames form."),
]

LagArg = Annotated[
    int,
    typer.Option(
        "--lag",
        help="Time-lagged VAE: encode frame t, reconstruct frame t + LAG (frames as read, "
        "after --stride; pairs never cross input files). 0: the plain VAE.",
    ),
]

KeepArg = Annotated[
    Keep,
    typer.Option("--keep", help="Parameters kept: best (validation) epoch, or last."),
]

PatienceArg = Annotated[
    int | None,
    typer.Option("--patience", help="Stop after this many epochs without validation gain."),
]

MaxRecoveriesArg = Annotated[
    int,
    typer.Option(
        "--max-recoveries",
        help="Divergences (loss spike, non-finite step) rolled back at half the rate "
        "before training stops (exit 3).",
    ),
]

MinExplainedArg = Annotated[
    float,
    typer.Option(
        "--min-explained",
        help="Fail (exit 3) when the model explains less than this share of what PCA "
        "with as many components explains; 0 accepts any model.",
    ),
]

SeedArg = Annotated[
    int,
    typer.Option(
        "--seed", help="Seed of initialization, split, batches and draws: same seed, same model."
    ),
]

DensityComponentsArg = Annotated[
    int,
    typer.Option("--density-components", help="Gaussians in the fitted latent density."),
]

CheckpointEveryArg = Annotated[
    int,
    typer.Option("--checkpoint-every", help="Epochs between checkpoints (0: only on interrupt)."),
]

CheckpointArg = Annotated[
    Path | None,
    typer.Option("--checkpoint", help="Checkpoint file. Default: MODEL.ckpt.h5 beside the model."),
]

ResumeArg = Annotated[
    bool,
    typer.Option("--resume", help="Continue the interrupted run from its checkpoint."),
]

MemoryBudgetArg = Annotated[
    str | None,
    typer.Option(
        "--memory-budget",
        metavar="SIZE",
        help="Memory the frames may take (64MB, 2GB style); an aligned file larger is "
        "streamed from disk within it. Default: half of the memory available.",
    ),
]

CoordinatorArg = Annotated[
    str | None,
    typer.Option(
        "--coordinator",
        metavar="HOST:PORT",
        help="Process 0's address, to train over several processes (jax.distributed). "
        "Default: from SLURM (srun) or Open MPI (mpirun) when they started several tasks.",
    ),
]

NumProcessesArg = Annotated[
    int | None,
    typer.Option("--num-processes", min=1, help="Processes of the run (with --coordinator)."),
]

JoinTimeoutArg = Annotated[
    float,
    typer.Option(
        "--join-timeout",
        metavar="SECONDS",
        help="How long to wait for the other processes to join before giving up.",
    ),
]

ProcessIdArg = Annotated[
    int | None,
    typer.Option("--process-id", min=0, help="This process's index, 0 to N-1 (0 writes)."),
]

MethodArg = Annotated[
    Method,
    typer.Option("--method", help="Alignment of raw DATA (see `vaetraj align`)."),
]

ReferenceArg = Annotated[
    str | None,
    typer.Option("--reference", help="kabsch reference."),
]

TopArg = Annotated[
    Path | None,
    typer.Option("--top", help="Topology for raw DATA."),
]

SelectArg = Annotated[
    str | None,
    typer.Option("--select", help="mdtraj selection for raw DATA."),
]

StrideArg = Annotated[
    int,
    typer.Option("--stride", min=1, help="Keep every Nth frame of raw DATA."),
]

KeyArg = Annotated[
    str | None,
    typer.Option("--key", help="Array name in an .npz."),
]

EqualMassesArg = Annotated[
    bool,
    typer.Option("--equal-masses", help="Weight all atoms alike when aligning raw DATA."),
]

FeaturesArg = Annotated[
    bool,
    typer.Option(
        "--features",
        help="DATA is one plain table (.npy, .npz or .csv; frames x features), trained on "
        "as it is: no alignment, no structure checks.",
    ),
]


Featurization = Enum("Featurization", {kind: kind for kind in FEATURIZATIONS}, type=str)  # type: ignore[misc]

FeaturizeArg = Annotated[
    Featurization | None,
    typer.Option(
        "--featurize",
        help="Train on features computed from raw DATA (needs a topology), not on aligned "
        "coordinates: torsions (sin, cos), distances (nm) or contacts. They ignore rigid "
        "motions; decode and sample then give feature tables, optimize refuses.",
        rich_help_panel="Features",
    ),
]
TorsionsArg = Annotated[
    str,
    typer.Option(
        "--torsions",
        help=f"--featurize torsions: comma-separated kinds of {', '.join(TORSION_KINDS)}.",
        rich_help_panel="Features",
    ),
]
PairSelectArg = Annotated[
    str | None,
    typer.Option(
        "--pair-select",
        help="--featurize distances/contacts: mdtraj selection of the atoms paired "
        '(default "name CA"), pairs 3 or more bonds apart.',
        rich_help_panel="Features",
    ),
]
CutoffArg = Annotated[
    float | None,
    typer.Option(
        "--cutoff",
        help="--featurize distances/contacts: keep pairs closer than this (nm) in some frame.",
        rich_help_panel="Features",
    ),
]
ContactR0Arg = Annotated[
    float,
    typer.Option(
        "--contact-r0",
        help="--featurize contacts: distance (nm) of half contact, 1/(1+(r/r0)^6).",
        rich_help_panel="Features",
    ),
]


# the options of `--featurize`, and their defaults (FeaturizeConfig's)
FEATURIZE_OPTIONS: OptionGroup = {
    "featurize": (FeaturizeArg, None),
    "torsions": (TorsionsArg, ",".join(FeaturizeConfig.torsions)),
    "pair_select": (PairSelectArg, FeaturizeConfig.pair_select),
    "cutoff": (CutoffArg, FeaturizeConfig.cutoff),
    "contact_r0": (ContactR0Arg, FeaturizeConfig.contact_r0),
}


@with_options(FEATURIZE_OPTIONS)
def train_command(
    inputs: InputsArg = None,
    output: OutputArg = Path("model.h5"),
    latent_dim: LatentDimArg = ModelConfig.latent_dim,
    hidden: HiddenArg = ModelConfig.hidden,
    layers: LayersArg = ModelConfig.layers,
    activation: ActivationArg = Activation(ModelConfig.activation),
    likelihood: LikelihoodArg = Likelihood(ModelConfig.likelihood),
    decoder_std: DecoderStdArg = ModelConfig.decoder_std,
    posterior: PosteriorArg = Posterior(ModelConfig.posterior),
    input_noise: InputNoiseArg = TrainConfig.input_noise,
    beta: BetaArg = TrainConfig.beta,
    kl_warmup: KlWarmupArg = TrainConfig.kl_warmup,
    samples: SamplesArg = TrainConfig.samples,
    epochs: EpochsArg = TrainConfig.epochs,
    batch_size: BatchSizeArg = TrainConfig.batch_size,
    lr: LrArg = TrainConfig.lr,
    warmup_epochs: WarmupEpochsArg = TrainConfig.warmup_epochs,
    optimizer: OptimizerArg = Optimizer(TrainConfig.optimizer),
    schedule: ScheduleArg = Schedule(TrainConfig.schedule),
    clip_norm: ClipNormArg = TrainConfig.clip_norm,
    lr_scaling: LrScalingArg = LrScaling(TrainConfig.lr_scaling),
    weight_decay: WeightDecayArg = TrainConfig.weight_decay,
    val_fraction: ValFractionArg = TrainConfig.val_fraction,
    val_blocks: ValBlocksArg = TrainConfig.val_blocks,
    lag: LagArg = TrainConfig.lag,
    keep: KeepArg = Keep(TrainConfig.keep),
    patience: PatienceArg = TrainConfig.patience,
    max_recoveries: MaxRecoveriesArg = TrainConfig.max_recoveries,
    min_explained: MinExplainedArg = TrainConfig.min_explained,
    seed: SeedArg = TrainConfig.seed,
    density_components: DensityComponentsArg = TrainConfig.density_components,
    checkpoint_every: CheckpointEveryArg = TrainConfig.checkpoint_every,
    checkpoint: CheckpointArg = None,
    resume: ResumeArg = False,
    memory_budget: MemoryBudgetArg = None,
    coordinator: CoordinatorArg = None,
    num_processes: NumProcessesArg = None,
    process_id: ProcessIdArg = None,
    join_timeout: JoinTimeoutArg = JOIN_TIMEOUT_S,
    method: MethodArg = Method.principal,
    reference: ReferenceArg = None,
    top: TopArg = None,
    select: SelectArg = None,
    stride: StrideArg = 1,
    key: KeyArg = None,
    frame_time: float | None = FrameTimeOption,
    equal_masses: EqualMassesArg = False,
    features: FeaturesArg = False,
    overwrite: bool = OverwriteOption,
    json_output: bool = JsonOption,
    debug: bool = DebugOption,
    **grouped: Any,
) -> None:
    """`vaetraj train`: see HELP."""
    options = dict(locals())
    options.update(options.pop("grouped"))
    run_command(lambda: _train(options), json_output=json_output, debug=debug)


def _pick(config_class, options: dict, *, besides: tuple[str, ...] = ()):
    """A config from the options named as its fields (a choice's value for an Enum);
    `besides`: fields whose namesake option means something else."""
    names = {field.name for field in dataclasses.fields(config_class)} - set(besides)
    return config_class(
        **{
            name: value.value if isinstance(value, Enum) else value
            for name, value in options.items()
            if name in names
        }
    )


def _train(o: dict) -> dict[str, Any] | None:
    from vaetraj.errors import TrainingFailedError
    from vaetraj.pipeline.processes import expected_count, join, leaving_last, will_join
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
            finish_report(failure.report, json_output=json_output, print_summary=_print_summary)
            raise
    return finish_report(report, json_output=json_output, print_summary=_print_summary)


def _configs(o: dict) -> tuple:
    """The model's and the training's configs from the options."""
    from vaetraj.model import ModelConfig
    from vaetraj.training import TrainConfig

    model_config = _pick(ModelConfig, o, besides=("features",))  # --features: a table
    return model_config, _pick(TrainConfig, o)


def _file_options(o: dict, progress) -> dict[str, Any]:
    """`train_file`'s keyword arguments from the options."""
    from vaetraj.io.trajectory import ReadOptions
    from vaetraj.pipeline.align import AlignConfig

    return {
        "align_config": AlignConfig(
            method=o["method"].value,
            reference=_parse_reference(o["reference"]),
            equal_masses=o["equal_masses"],
        ),
        "read_options": ReadOptions(
            top=o["top"],
            select=o["select"],
            stride=o["stride"],
            key=o["key"],
            frame_time=o["frame_time"],
        ),
        "checkpoint": o["checkpoint"],
        "resume": o["resume"],
        "overwrite": o["overwrite"],
        "features": o["features"],
        "featurize": _featurize_config(o),
        "progress": progress,
        "memory_budget": _memory_budget(o["memory_budget"]),
    }


def _featurize_config(o: dict):
    """--featurize's config, or None; its options without it are refused."""
    from vaetraj.errors import UsageError

    if o["featurize"] is None:
        given = [
            f"--{name.replace('_', '-')}"
            for name, (_, default) in FEATURIZE_OPTIONS.items()
            if o[name] != default
        ]
        if given:
            raise UsageError(f"{', '.join(given)} only go with --featurize")
        return None
    kinds = tuple(kind.strip() for kind in o["torsions"].split(",") if kind.strip())
    return FeaturizeConfig(
        kind=o["featurize"].value,
        torsions=kinds,
        pair_select=o["pair_select"],
        cutoff=o["cutoff"],
        contact_r0=o["contact_r0"],
    )


def _memory_budget(text: str | None) -> int | None:
    from vaetraj._memory import parse_size
    from vaetraj.errors import UsageError

    if text is None:
        return None
    try:
        return parse_size(text)
    except ValueError as error:
        raise UsageError(f"--memory-budget: {error}") from None


def _inputs_text(report) -> str:
    """What the network took, as the summary's frames row says it."""
    if report.representation == "table":
        return f"({report.features} features)"
    if report.representation == "featurized":
        return f"({report.features} features, {report.featurizer} of {report.atoms} atoms)"
    return f"({report.atoms} atoms in {report.dims}D)"


def _print_summary(report) -> None:
    rows = [
        (
            "output",
            f"{report.output}"
            + ("  (FAILED: see the error below)" if report.status == "failed" else ""),
        ),
        (
            "frames",
            f"{report.train_frames} training, {report.val_frames} validation"
            + (
                f" (blocks of {report.trajectories} trajectories) "
                if report.trajectories > 1
                else " "
            )
            + _inputs_text(report),
        ),
        *_lag_rows(report),
        (
            "epochs",
            f"{report.epochs_run} run, best {report.best_epoch}, kept {report.kept_epoch}"
            + (" (stopped early)" if report.stopped_early else ""),
        ),
        (
            "loss (kept epoch)",
            f"train {report.train_loss:.4g}"
            + (f", validation {report.val_loss:.4g}" if report.val_loss is not None else ""),
        ),
    ]
    rows += _quality_rows(report)
    if report.recoveries:
        rows.append(
            (
                "recoveries",
                f"{len(report.recoveries)} (rolled back; learning rate now {report.final_lr:.2g})",
            )
        )
    rows += [
        ("throughput", f"{report.frames_per_s:,.0f} frames/s on {report.devices} device(s)"),
        ("wall time", f"{report.wall_time_s:.1f} s"),
    ]
    print_table("vaetraj train", rows)


def _lag_rows(report) -> list[tuple[str, str]]:
    """The lag of a time-lagged model, in frames and (when known) ps; the frame time."""
    step = report.frame_time_ps
    if report.lag:
        time = f" = {report.lag * step:.4g} ps" if step else " (frame time unknown)"
        return [("lag", f"{report.lag} frames{time}: frame t is encoded, frame t+lag decoded")]
    return [("frame time", f"{step:.4g} ps")] if step else []


def _quality_rows(report) -> list[tuple[str, str]]:
    """What the kept model is worth: reconstruction, variance, KL, density."""
    table = report.representation != "aligned"  # errors over features, not atoms
    plural = "s" if report.latent_dim > 1 else ""
    yardstick = f"PCA with {report.latent_dim} component{plural}"
    later = ""
    if report.lag:  # a time-lagged model is scored on the frames it predicts
        yardstick = f"linear prediction through {report.latent_dim} dimension{plural}"
        later = f" of frame t+{report.lag}"
    kl = ", ".join(f"{value:.3g}" for value in report.kl_per_dim)
    return [
        (
            ("prediction RMS error" if table else f"prediction RMSD ({report.units})") + later
            if report.lag
            else ("recon RMS error" if table else f"recon RMSD ({report.units})"),
            f"train {report.recon_rmsd_train:.4g}"
            + (
                f", validation {report.recon_rmsd_val:.4g} ({report.val_gap:.2f}x)"
                if report.recon_rmsd_val is not None and report.val_gap is not None
                else ""
            ),
        ),
        (
            "variance explained" + later,
            f"train {report.explained_variance_train:.1%} ({yardstick}: "
            f"{report.pca_explained_variance:.1%})"
            + (
                f", validation {report.explained_variance_val:.1%}"
                + (
                    f" ({yardstick}: {report.pca_explained_variance_val:.1%})"
                    if report.pca_explained_variance_val is not None
                    else ""
                )
                if report.explained_variance_val is not None
                else ""
            ),
        ),
        *(
            [
                (
                    "linear memory",
                    f"{report.predictable_share:.0%} of what PCA explains of frame t "
                    f"is predicted at frame t+{report.lag}",
                )
            ]
            if report.lag and report.predictable_share is not None
            else []
        ),  # fmt: skip
        ("KL per dim", kl),
        ("active units", f"{report.active_units} of {report.latent_dim}"),
        (
            "latent density",
            f"{report.density_components}-component Gaussian mixture "
            f"({report.density_points:,} draws)",
        ),
    ]
