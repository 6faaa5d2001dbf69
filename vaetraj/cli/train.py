"""`vaetraj train`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from vaetraj.cli._options import DebugOption, JsonOption, OverwriteOption
from vaetraj.cli._runtime import finish_report, print_table, progress_bar, run_command
from vaetraj.cli.align import Method, _parse_reference


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


def train_command(
    inputs: list[Path] | None = typer.Argument(
        None,
        metavar="[DATA]...",
        help="An aligned .h5 (default aligned.h5), or trajectory files aligned first "
        "with the --method/--reference/--select options of `align`.",
    ),
    output: Path = typer.Option(Path("model.h5"), "-o", "--output", help="Model .h5 to write."),
    latent_dim: int | None = typer.Option(
        None,
        "--latent-dim",
        help="Latent dimensions [default: 4; fewer for an input of at most 4 features; "
        "the textbook's is 2].",
        show_default=False,
    ),
    hidden: int = typer.Option(256, "--hidden", help="Units per hidden layer."),
    layers: int = typer.Option(
        4, "--layers", help="Weight layers per network, as the textbook counts: 4 = 3 hidden."
    ),
    activation: Activation = typer.Option(
        Activation.relu, "--activation", help="Hidden-layer activation."
    ),
    likelihood: Likelihood = typer.Option(
        Likelihood.mse,
        "--likelihood",
        help="mse: sum of squared errors; gaussian: fixed --decoder-std; gaussian-learned: "
        "the decoder predicts a std per feature; categorical: one-hot rows (with --features).",
    ),
    decoder_std: float = typer.Option(
        1.0, "--decoder-std", help="Decoder std for --likelihood gaussian (normalized units)."
    ),
    posterior: Posterior = typer.Option(
        Posterior.diagonal, "--posterior", help="diagonal, or full (Cholesky) covariance."
    ),
    input_noise: float = typer.Option(
        0.5,
        "--input-noise",
        help="Std of the noise on the (standardized) frames the encoder sees in training; "
        "the loss scores the clean frame (denoising). 0: off.",
    ),
    beta: float = typer.Option(0.01, "--beta", help="Weight of the KL term."),
    kl_warmup: int = typer.Option(
        0, "--kl-warmup", help="Epochs over which beta ramps up from 0 (against collapse)."
    ),
    samples: int = typer.Option(1, "--samples", help="Reparameterized draws per frame."),
    epochs: int = typer.Option(250, "--epochs", help="Passes over the training frames."),
    batch_size: int = typer.Option(32, "--batch-size", help="Frames per gradient step."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate."),
    warmup_epochs: int | None = typer.Option(
        None,
        "--warmup-epochs",
        help="Epochs of linear learning-rate warm-up from 0. Default: 5, at most a tenth "
        "of --epochs.",
    ),
    optimizer: Optimizer = typer.Option(
        Optimizer.adam, "--optimizer", help="optax optimizer (sgd: with Nesterov momentum)."
    ),
    schedule: Schedule = typer.Option(
        Schedule.cosine, "--schedule", help="cosine: decay to 1% of --lr; constant."
    ),
    clip_norm: float | None = typer.Option(
        None, "--clip-norm", help="Clip the global gradient norm to this."
    ),
    lr_scaling: LrScaling = typer.Option(
        LrScaling.fan_in,
        "--lr-scaling",
        help="fan-in: the first layer's rate times hidden/features when features are more "
        "(same defaults for any molecule size); uniform: --lr for every layer.",
    ),
    weight_decay: float = typer.Option(
        1.0,
        "--weight-decay",
        help="Decoupled (AdamW) weight decay on the weight matrices, times the rate per "
        "step; 0 for none.",
    ),
    val_fraction: float = typer.Option(
        0.1,
        "--val-fraction",
        help="Share of each trajectory held out to validate (and pick the kept epoch).",
    ),
    val_blocks: int = typer.Option(
        5, "--val-blocks", help="Contiguous blocks per trajectory the held-out frames form."
    ),
    keep: Keep = typer.Option(
        Keep.best, "--keep", help="Parameters kept: best (validation) epoch, or last."
    ),
    patience: int | None = typer.Option(
        None, "--patience", help="Stop after this many epochs without validation gain."
    ),
    max_recoveries: int = typer.Option(
        5,
        "--max-recoveries",
        help="Divergences (loss spike, non-finite step) rolled back at half the rate "
        "before training stops (exit 3).",
    ),
    min_explained: float = typer.Option(
        0.5,
        "--min-explained",
        help="Fail (exit 3) when the model explains less than this share of what PCA "
        "with as many components explains; 0 accepts any model.",
    ),
    seed: int = typer.Option(
        0, "--seed", help="Seed of initialization, split, batches and draws: same seed, same model."
    ),
    density_components: int = typer.Option(
        8, "--density-components", help="Gaussians in the fitted latent density."
    ),
    checkpoint_every: int = typer.Option(
        10, "--checkpoint-every", help="Epochs between checkpoints (0: only on interrupt)."
    ),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="Checkpoint file. Default: MODEL.ckpt.h5 beside the model."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the interrupted run from its checkpoint."
    ),
    method: Method = typer.Option(
        Method.principal, "--method", help="Alignment of raw DATA (see `vaetraj align`)."
    ),
    reference: str | None = typer.Option(None, "--reference", help="kabsch reference."),
    top: Path | None = typer.Option(None, "--top", help="Topology for raw DATA."),
    select: str | None = typer.Option(None, "--select", help="mdtraj selection for raw DATA."),
    stride: int = typer.Option(1, "--stride", min=1, help="Keep every Nth frame of raw DATA."),
    key: str | None = typer.Option(None, "--key", help="Array name in an .npz."),
    equal_masses: bool = typer.Option(
        False, "--equal-masses", help="Weight all atoms alike when aligning raw DATA."
    ),
    features: bool = typer.Option(
        False,
        "--features",
        help="DATA is one plain table (.npy, .npz or .csv; frames x features), trained on "
        "as it is: no alignment, no structure checks.",
    ),
    overwrite: bool = OverwriteOption,
    json_output: bool = JsonOption,
    debug: bool = DebugOption,
) -> None:
    """Train a beta-VAE on aligned frames and write the model file.

    Checkpoints are written every --checkpoint-every epochs and on Ctrl-C or SIGTERM
    (exit 75); the same command with --resume continues exactly where it stopped.

    Examples:

      vaetraj align && vaetraj train                 # aligned.h5 -> model.h5

      vaetraj train long_paths.npz --epochs 250 --latent-dim 2 -o polymer.h5

      vaetraj train ala2.dcd --top ala2.pdb --method kabsch --select "not element H"

      vaetraj train classes.npy --features --likelihood categorical --latent-dim 1
    """

    def body():
        from vaetraj.errors import TrainingFailedError
        from vaetraj.io.trajectory import ReadOptions
        from vaetraj.model import ModelConfig
        from vaetraj.pipeline.align import AlignConfig
        from vaetraj.pipeline.train import train_file
        from vaetraj.train import TrainConfig

        model_config = ModelConfig(
            latent_dim=latent_dim,
            hidden=hidden,
            layers=layers,
            activation=activation.value,
            likelihood=likelihood.value,
            decoder_std=decoder_std,
            posterior=posterior.value,
        )
        train_config = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            warmup_epochs=warmup_epochs,
            optimizer=optimizer.value,
            schedule=schedule.value,
            clip_norm=clip_norm,
            lr_scaling=lr_scaling.value,
            weight_decay=weight_decay,
            input_noise=input_noise,
            beta=beta,
            kl_warmup=kl_warmup,
            samples=samples,
            val_fraction=val_fraction,
            val_blocks=val_blocks,
            keep=keep.value,
            patience=patience,
            max_recoveries=max_recoveries,
            min_explained=min_explained,
            seed=seed,
            checkpoint_every=checkpoint_every,
            density_components=density_components,
        )
        align_config = AlignConfig(
            method=method.value, reference=_parse_reference(reference), equal_masses=equal_masses
        )
        options = ReadOptions(top=top, select=select, stride=stride, key=key)
        with progress_bar(not json_output) as progress:
            try:
                report = train_file(
                    inputs,
                    output,
                    model_config,
                    train_config,
                    align_config=align_config,
                    read_options=options,
                    checkpoint=checkpoint,
                    resume=resume,
                    overwrite=overwrite,
                    features=features,
                    progress=progress,
                )
            except TrainingFailedError as failure:  # the numbers first, then the error line
                finish_report(failure.report, json_output=json_output, print_summary=_print_summary)
                raise
        return finish_report(report, json_output=json_output, print_summary=_print_summary)

    run_command(body, json_output=json_output, debug=debug)


def _print_summary(report) -> None:
    units = report.units
    kl = ", ".join(f"{value:.3g}" for value in report.kl_per_dim)
    table = report.dims == 1
    components = f"{report.latent_dim} component" + ("s" if report.latent_dim > 1 else "")
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
            + (
                f"({report.atoms} features)"
                if table
                else f"({report.atoms} atoms in {report.dims}D)"
            ),
        ),
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
        (
            "recon RMS error" if table else f"recon RMSD ({units})",
            f"train {report.recon_rmsd_train:.4g}"
            + (
                f", validation {report.recon_rmsd_val:.4g} ({report.val_gap:.2f}x)"
                if report.recon_rmsd_val is not None and report.val_gap is not None
                else ""
            ),
        ),
        (
            "variance explained",
            f"train {report.explained_variance_train:.1%}"
            + (
                f", validation {report.explained_variance_val:.1%}"
                if report.explained_variance_val is not None
                else ""
            )
            + f" (PCA with {components}: {report.pca_explained_variance:.1%})",
        ),
        ("KL per dim", kl),
        ("active units", f"{report.active_units} of {report.latent_dim}"),
        ("latent density", f"{report.density_components}-component Gaussian mixture"),
    ]
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
