"""`train` and `train_file`: aligned frames in, a `Model` (and model file) out.

`train` runs in phases, each a function with a small record out:

1. `_prepare`: checks, the split into training and validation blocks, normalization
   (`runtime.data.Prepared`).
2. `runtime.session.start`: the compiled trainer, the data on the devices, a fresh or
   restored run (`Session`, `run_state.Run`).
3. `runtime.session.fit`: the Python loop around the jit-compiled epoch: validation,
   the epoch kept, progress, checkpoints, interrupts, and the divergence guard (a bad
   epoch is rolled back and run again at half the rate, up to `max_recoveries` times).
4. `_model_record`, then `assess.assess`: what the kept parameters are worth (explained
   variance against PCA's, the validation gap, the latent density); a model that
   explains almost nothing is a failed training (`TrainingFailedError`), not a file
   that looks normal.
5. `_report`, `_provenance`: the report and what the model file records of the run;
   the model is made once, complete. Remarks made on the way (`vaetraj._remarks`)
   become the report's notes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import jax
import numpy as np

from vaetraj._memory import FLOAT, require_memory, resolve_memory_budget, return_freed_memory
from vaetraj._remarks import collecting, remark
from vaetraj._version import __version__
from vaetraj.configs import FeaturizeConfig
from vaetraj.errors import (
    BadInputError,
    InputMissingError,
    TrainingFailedError,
    UsageError,
)
from vaetraj.io._atomic import check_output, run_lock
from vaetraj.io.aligned import AlignedData, FrameFile
from vaetraj.io.bias import read_weights
from vaetraj.io.model_file import ModelRecord, training_summary
from vaetraj.io.trajectory import ReadOptions
from vaetraj.model import (
    ModelConfig,
    Normalization,
    compute_moments,
    normalization_from_moments,
)
from vaetraj.pipeline.align import AlignConfig
from vaetraj.pipeline.assess import Quality, assess, nearly_independent
from vaetraj.pipeline.model import Model
from vaetraj.pipeline.runtime.data import Prepared, held_bytes, refuse_lag_unless_in_memory
from vaetraj.pipeline.runtime.processes import (
    current,
    least,
    peers_watched,
)
from vaetraj.pipeline.runtime.run_state import (
    Point,
    Run,
    default_checkpoint,
    history_arrays,
)
from vaetraj.pipeline.runtime.session import Session, Timing, check_for_processes, fit, start
from vaetraj.pipeline.train_report import TrainReport
from vaetraj.pipeline.training_set import (
    DEFAULT_DATA,
    TrainingSet,
    check_frames,
    read_training_set,
)
from vaetraj.training import (
    TrainConfig,
    lagged_pairs,
    split_blocks,
)

Progress = Callable[..., None]


def _check_categorical(table: np.ndarray, where: str | None) -> None:
    """Rows of class indicators: one-hot, or weights over classes that sum to 1."""
    bad = (table < 0).any(axis=1) | (np.abs(table.sum(axis=1) - 1) > 1e-3)
    if bad.any():
        row = int(np.argmax(bad))
        raise BadInputError(
            f"--likelihood categorical needs one-hot rows (or class weights summing to 1); "
            f"row {row} sums to {table[row].sum():.4g}",
            path=where,
        )


def _prepare(data: TrainingSet, model_config: ModelConfig, train_config: TrainConfig) -> Prepared:
    where = data.origin if data.origin not in ("array", "aligned data") else None
    check_frames(data.xyz, where, features=not data.representation.yields_structures)
    check_for_processes(train_config, current().count)
    frames, atoms, dims = data.xyz.shape
    model_config = dataclasses.replace(model_config, features=atoms * dims)
    flat = data.xyz.reshape(frames, -1)
    if model_config.likelihood == "categorical":
        _check_categorical(flat, where)
    train_index, val_index = split_blocks(
        data.trajectory_lengths,
        train_config.val_fraction,
        blocks=train_config.val_blocks,
        seed=train_config.seed,
    )
    targets = None
    if train_config.lag:
        train_index, val_index, targets = _pairs(
            data, train_index, val_index, train_config.lag, where
        )
        apart = f"{train_config.lag}" + (
            f" ({train_config.lag * data.frame_time_ps:.4g} ps)" if data.frame_time_ps else ""
        )
        remark(
            f"time-lagged: {len(train_index)} training and {len(val_index)} validation pairs "
            f"of frames {apart} apart, none across trajectories"
        )
    if data.weights is not None:
        train_index, val_index = _resampled(data, train_index, val_index, train_config)
    if len(train_index) < train_config.batch_size:
        raise BadInputError(
            f"{len(train_index)} training frames (after holding out "
            f"{len(val_index)} for validation) are fewer than one batch of "
            f"{train_config.batch_size}; lower --batch-size or --val-fraction",
            path=where,
        )
    feature_std = None
    moments = compute_moments(flat, train_index)
    normalization, constant = normalization_from_moments(*moments)
    if model_config.likelihood == "categorical":  # class indicators are used as they are
        feature_std = normalization.std
        normalization = Normalization(
            np.zeros(flat.shape[1], np.float32), np.ones(flat.shape[1], np.float32)
        )
    elif constant.any():
        remark(f"{int(constant.sum())} feature(s) are constant; they are only centred")
    return Prepared(
        model_config=model_config,
        normalization=normalization,
        train_index=train_index,
        val_index=val_index,
        targets=targets,
        feature_std=feature_std,
        moments=moments,
    )


def _train_and_write(data: TrainingSet, output: Path, checkpoint: Path, model_config: ModelConfig,
                     train_config: TrainConfig, *, resume: bool, overwrite: bool, progress,
                     budget: int) -> TrainReport:  # fmt: skip
    """Train, then write the model (process 0) and remove the checkpoint; a model that
    does not work is kept for inspection (`_keep_for_inspection`)."""
    try:
        with _closing(data):
            model, report = train(
                data, model_config, train_config, checkpoint=checkpoint, resume=resume,
                progress=progress, memory_budget=budget,
            )  # fmt: skip
    except TrainingFailedError as failure:
        _keep_for_inspection(failure, output, checkpoint, train_config, overwrite)
    if current().primary:  # over several processes, process 0 alone writes
        model.save(output, overwrite=overwrite)
        checkpoint.unlink(missing_ok=True)
    return report


def _with_weights(data: TrainingSet, weights: str | os.PathLike | None) -> TrainingSet:
    if weights is None:
        return data
    values = read_weights(weights, len(data.xyz))
    return dataclasses.replace(data, weights=values, weights_source=str(weights))


def _resampled(
    data: TrainingSet, train_index: np.ndarray, val_index: np.ndarray, config: TrainConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Biased frames: the training and the validation frames each drawn anew (as many,
    with replacement, seeded) in proportion to their weights, so the model learns the
    unbiased ensemble; the remark gives the effective share (Kish) of each."""
    if config.lag:
        raise UsageError(
            "weights and lag: the pairs of a biased run follow the biased dynamics",
            fields=("weights", "lag"),
        )
    assert data.weights is not None
    rng = np.random.default_rng(config.seed)
    drawn, shares = [], []
    for index in (train_index, val_index):
        w = data.weights[index]
        if len(index) and not w.sum() > 0:
            raise BadInputError("every frame of a split has weight 0", path=data.weights_source)
        drawn.append(np.sort(rng.choice(index, len(index), p=w / w.sum())) if len(index) else index)
        shares.append(w.sum() ** 2 / np.sum(w**2) / len(w) if len(index) else 1.0)
    remark(
        f"frames drawn by their weights ({data.weights_source}): effectively "
        f"{shares[0]:.0%} of the training and {shares[1]:.0%} of the validation frames"
    )
    return drawn[0], drawn[1]


def _pairs(
    data: TrainingSet, train_index: np.ndarray, val_index: np.ndarray, lag: int,
    where: str | None,
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """The time-lagged pairs (t, t + lag) within the training and the validation
    frames: (training inputs, validation inputs, (their targets))."""
    refuse_lag_unless_in_memory(data.xyz)
    lengths = data.trajectory_lengths
    train_inputs, train_targets = lagged_pairs(lengths, train_index, lag)
    val_inputs, val_targets = lagged_pairs(lengths, val_index, lag)
    if not len(train_inputs):
        raise BadInputError(
            f"--lag {lag} leaves no pair of training frames {lag} apart within one "
            f"trajectory (the longest has {max(lengths)} frames); lower --lag",
            path=where,
        )
    if len(val_targets) == 0 and len(val_index):
        raise BadInputError(
            f"--lag {lag} is as long as every validation block ({len(val_index)} frames "
            f"in all): no validation pair; raise --val-fraction, lower --val-blocks or "
            f"--lag, or pass --val-fraction 0",
            path=where,
        )
    return train_inputs, val_inputs, (train_targets, val_targets)


def _require_training_memory(
    model_config: ModelConfig, train_config: TrainConfig, data_bytes: int
) -> None:
    """Refuse a network the machine cannot hold (`--hidden 10000000` aborted in XLA):
    the parameters about 8 times over (gradients, Adam's two moments, the best and
    the anchor epochs, host copies), a batch's activations, and the data twice."""
    hidden, layers = model_config.hidden, model_config.layers
    features, latent_dim = model_config.size  # set by _prepare
    per_net = features * hidden + (layers - 2) * hidden * hidden + hidden * features
    params = 2 * per_net + hidden * (latent_dim + model_config.encoder_outputs)
    activations = train_config.batch_size * hidden * layers * 2 * 3
    require_memory(
        FLOAT * (8 * params + activations) + 2 * data_bytes,
        f"--hidden {hidden} with --layers {layers} ({params:,} parameters)",
        "use a smaller --hidden or fewer --layers",
    )


def _as_training_set(data: TrainingSet | AlignedData | np.ndarray) -> TrainingSet:
    if isinstance(data, AlignedData):
        return TrainingSet.from_aligned(data, "aligned data")
    if isinstance(data, TrainingSet):
        return data
    return TrainingSet.from_array(np.asarray(data))


def _model_record(
    data: TrainingSet, prepared: Prepared, train_config: TrainConfig, point: Point
) -> ModelRecord:
    """The model file's record of the kept parameters (before its diagnostics)."""
    keep_best = train_config.keep == "best" and point.best_epoch > 0
    atoms, dims = data.model_shape
    return ModelRecord(
        model_config=prepared.model_config,
        params=jax.tree.map(np.asarray, point.best_params if keep_best else point.state.params),
        normalization_mean=prepared.normalization.mean,
        normalization_std=prepared.normalization.std,
        alignment=data.alignment,
        atom_indices=data.atom_indices,
        atoms=atoms,
        dims=dims,
        units=data.units,
        reference=data.reference,
        masses=data.masses,
        topology=data.topology,
        train_config=train_config,
        history=history_arrays(point.history),
    )


@dataclass(frozen=True)
class _Outcome:
    """What the fit phase leaves for the report."""

    run: Run
    timing: Timing
    resumed_from: int | None
    devices: int
    started: float  # perf_counter at the start of `train`


def _report(
    data: TrainingSet,
    prepared: Prepared,
    train_config: TrainConfig,
    outcome: _Outcome,
    quality: Quality,
    notes: list[str],
) -> TrainReport:
    point, timing = outcome.run.point, outcome.timing
    history = point.history
    keep_best = train_config.keep == "best" and point.best_epoch > 0
    kept_epoch = point.best_epoch if keep_best else point.epoch
    frames, features = data.xyz.shape[0], prepared.model_config.size[0]
    atoms, dims = data.model_shape
    has_val = len(prepared.val_index) > 0
    return TrainReport(
        frames=frames,
        train_frames=len(prepared.train_index),
        val_frames=len(prepared.val_index),
        trajectories=len(data.trajectory_lengths),
        atoms=atoms,
        dims=dims,
        latent_dim=prepared.model_config.size[1],
        epochs_run=point.epoch,
        best_epoch=point.best_epoch,
        kept_epoch=kept_epoch,
        stopped_early=timing.stopped_early,
        resumed_from_epoch=outcome.resumed_from,
        train_loss=_at_epoch(history, "loss", kept_epoch),
        val_loss=_at_epoch(history, "val_loss", kept_epoch) if has_val else None,
        **quality.fields,
        recoveries=list(outcome.run.recoveries),
        final_lr=train_config.lr * float(point.state.lr_scale),
        status="failed" if quality.failure else "ok",
        units=data.units,
        devices=outcome.devices,
        processes=current().count,
        frames_per_s=len(prepared.train_index) * timing.epochs / timing.seconds
        if timing.seconds
        else math.nan,
        wall_time_s=time.perf_counter() - outcome.started,
        streamed=isinstance(data.xyz, FrameFile),
        lag=train_config.lag,
        frame_time_ps=data.frame_time_ps,
        representation=data.representation.kind,
        features=features,
        featurizer=data.representation.featurizer_kind,
        notes=notes + quality.notes,
    )


def _provenance(
    data: TrainingSet, prepared: Prepared, train_config: TrainConfig, data_sha256: str
) -> dict[str, Any]:
    return {
        "sources": data.sources,
        "origin": data.origin,
        "data_sha256": data_sha256,
        "seed": train_config.seed,
        "train_frames": len(prepared.train_index),
        "val_frames": len(prepared.val_index),
        "val_blocks": _blocks(prepared.val_index),
        "frame_time_ps": data.frame_time_ps,
        "weights": data.weights_source,  # frames drawn by these weights (biased frames)
        "vaetraj_version": __version__,
        "jax_version": jax.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def train(
    data: TrainingSet | AlignedData | np.ndarray,
    model_config: ModelConfig = ModelConfig(features=None),
    train_config: TrainConfig = TrainConfig(),
    *,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    memory_budget: int | None = None,
) -> tuple[Model, TrainReport]:
    """Train a (beta-)VAE on aligned frames.

    Frames left on disk (`AlignedData` from `open_aligned`) are streamed from the file
    a window of batches at a time within `memory_budget`; frames in memory are put on
    the devices once.

    Args:
        data: frames (frames, atoms, dims) as a `TrainingSet`, `AlignedData` or array.
        model_config: the network; its `features` is set from the data.
        train_config: the optimization.
        checkpoint: a file written every `train_config.checkpoint_every` epochs and on
            interrupt (then InterruptedRunError).
        resume: continue exactly from `checkpoint`.
        progress: called as progress(epoch, epochs, phase, detail) after each epoch.
        memory_budget: bytes a streamed epoch may hold (default: half of the memory
            available).

    Returns:
        The model and the report of the run.

    Raises:
        NumericalError: training diverged beyond recovery.
        TrainingFailedError: the model (which it holds, with the report) explains almost
            none of the data.
    """
    started = time.perf_counter()
    data = _as_training_set(data)
    with collecting() as notes:
        prepared = _prepare(data, model_config, train_config)
        budget = least(resolve_memory_budget(memory_budget), current())  # one layout for all
        _require_training_memory(prepared.model_config, train_config, held_bytes(data.xyz, budget))
        checkpoint = Path(checkpoint) if checkpoint is not None else None
        session, run, resumed_from = start(
            data.xyz, prepared, train_config, checkpoint, resume, budget
        )
        with peers_watched(current(), None if checkpoint is None else str(checkpoint)):
            timing = fit(run, session, train_config, checkpoint=checkpoint, progress=progress)
    return_freed_memory()  # the epochs' reads: the assessment's peak is then its own
    record, quality = _assess_kept(data, prepared, train_config, run, session)
    outcome = _Outcome(run, timing, resumed_from, session.devices, started)
    report = _report(data, prepared, train_config, outcome, quality, notes)
    model = Model(dataclasses.replace(  # complete: the model is made once, here
        record, density=quality.density, data_stats=quality.data_stats,
        summary=training_summary(report.to_dict()),
        provenance=_provenance(data, prepared, train_config, session.fields["data_sha256"]),
    ))  # fmt: skip
    if quality.failure:
        raise TrainingFailedError(quality.failure, model=model, report=report)
    return model, report


def _assess_kept(
    data: TrainingSet, prepared: Prepared, train_config: TrainConfig, run: Run, session: Session
) -> tuple[ModelRecord, Quality]:
    """The record of the kept parameters (before its assessment's findings), and what a
    model of them is worth."""
    record = _model_record(data, prepared, train_config, run.point)
    quality = assess(
        Model(record), data, prepared.train_index, prepared.val_index, train_config,
        key=session.density_key, moments=prepared.moments,
    )  # fmt: skip
    return record, quality


def _at_epoch(history: dict[str, list], name: str, epoch: int) -> float:
    """history[name] of 1-based `epoch` (nan when there is none)."""
    values = history.get(name, [])
    return float(values[epoch - 1]) if 0 < epoch <= len(values) else math.nan


def _blocks(index: np.ndarray) -> list[list[int]]:
    """[first, last + 1) of each run of consecutive frames in a sorted index."""
    if len(index) == 0:
        return []
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    return [[int(run[0]), int(run[-1]) + 1] for run in np.split(index, breaks)]


def train_features(
    table: np.ndarray,
    model_config: ModelConfig = ModelConfig(features=None),
    train_config: TrainConfig = TrainConfig(),
    **options: Any,
) -> tuple[Model, TrainReport]:
    """Train on a plain table, with no alignment.

    One-hot classes (`likelihood="categorical"`), dihedral features, curves, any
    vectors: the model's encode takes such tables and its decode gives them.

    Args:
        table: (frames, features).
        model_config: the network.
        train_config: the optimization.
        **options: as for `train` (checkpoint, resume, progress).

    Returns:
        The model and the report.
    """
    return train(TrainingSet.from_features(table), model_config, train_config, **options)


def train_file(
    inputs: Sequence[str | os.PathLike] | None,
    output: str | os.PathLike = "model.h5",
    model_config: ModelConfig = ModelConfig(features=None),
    train_config: TrainConfig = TrainConfig(),
    *,
    align_config: AlignConfig = AlignConfig(),
    read_options: ReadOptions = ReadOptions(),
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    features: bool = False,
    featurize: FeaturizeConfig | None = None,
    progress: Progress | None = None,
    memory_budget: int | None = None,
    weights: str | os.PathLike | None = None,
) -> TrainReport:
    """Train on an aligned `.h5` or raw inputs and write the model atomically. An
    aligned file whose frames exceed `memory_budget` bytes (default: half of the memory
    available) is streamed from disk; otherwise it is read. The checkpoint is removed
    once the model is safely written. A model that does not work is written all the
    same, for inspection, and then TrainingFailedError names the file.

    Args:
        inputs: an aligned `.h5`, trajectory files (aligned first with
            `align_config`), or with `features` one table; None: ./aligned.h5.
        output: the model `.h5`.
        model_config: the network.
        train_config: the optimization.
        align_config: the alignment of raw inputs.
        read_options: how raw inputs are read.
        checkpoint: the checkpoint file (default: MODEL.ckpt.h5 beside the model).
        resume: continue from the checkpoint.
        overwrite: replace an existing model (and a stale checkpoint).
        features: the input is a plain table (.npy, .npz or .csv) trained on as is;
        featurize: or train on features of the raw inputs (torsions, distances...).
        progress: called after each epoch.
        memory_budget: bytes the frames may hold in memory; above it they stream.
        weights: a file of per-frame weights of biased frames: frames drawn by them.

    Returns the report, with the model's and checkpoint's paths.
    """
    output, checkpoint = _outputs(output, checkpoint, inputs, read_options, overwrite)
    with _locked(output, checkpoint):
        _check_checkpoint(checkpoint, resume=resume, overwrite=overwrite)
        budget = resolve_memory_budget(memory_budget)
        data = _with_weights(read_training_set(
            inputs, (features, featurize), align_config, read_options, progress, budget
        ), weights)  # fmt: skip
        report = _train_and_write(data, output, checkpoint, model_config, train_config,
                                  resume=resume, overwrite=overwrite, progress=progress,
                                  budget=budget)  # fmt: skip
        report.output, report.checkpoint = str(output), str(checkpoint)
        return report


@contextlib.contextmanager
def _locked(output: Path, checkpoint: Path) -> Iterator[None]:
    """One run at a time per model and checkpoint (a second is refused, naming the
    first): their run locks, taken by process 0 alone."""
    if not current().primary:
        yield
        return
    with run_lock(output), run_lock(checkpoint):
        yield


@contextlib.contextmanager
def _closing(data: TrainingSet) -> Iterator[None]:
    """Close the file of frames left on disk, whatever happens."""
    try:
        yield
    finally:
        if isinstance(data.xyz, FrameFile):
            data.xyz.close()


def _outputs(
    output: str | os.PathLike,
    checkpoint: str | os.PathLike | None,
    inputs: Sequence[str | os.PathLike] | None,
    read_options: ReadOptions,
    overwrite: bool,
) -> tuple[Path, Path]:
    """The model's and the checkpoint's paths, checked before any work."""
    output = Path(output)
    if output.suffix.lower() not in (".h5", ".hdf5"):
        raise UsageError(f"a model file must be .h5, got '{output.suffix}'", path=output)
    given = [*(inputs or [DEFAULT_DATA]), read_options.top, checkpoint]
    check_output(output, overwrite=overwrite, inputs=given)
    return output, Path(checkpoint) if checkpoint is not None else default_checkpoint(output)


def _keep_for_inspection(
    failure: TrainingFailedError,
    output: Path,
    checkpoint: Path,
    train_config: TrainConfig,
    overwrite: bool,
) -> NoReturn:
    """Write a model that does not work (for inspection), then raise its failure naming
    the file and the first thing to try (process 0 alone writes)."""
    if not current().primary:
        raise failure
    failure.model.save(output, overwrite=overwrite)
    checkpoint.unlink(missing_ok=True)
    failure.report.output, failure.report.checkpoint = str(output), str(checkpoint)
    raise TrainingFailedError(
        f"{failure.args[0]}; the model is written here for inspection only; "
        f"{_what_to_try(failure.report, train_config)}",
        model=failure.model,
        report=failure.report,
        path=output,
    ) from None


def _check_checkpoint(checkpoint: Path, *, resume: bool, overwrite: bool) -> None:
    if not resume and checkpoint.exists() and not overwrite:
        raise UsageError(
            "a checkpoint of an unfinished run exists; add --resume to continue it "
            "or --overwrite to start afresh",
            path=checkpoint,
        )
    if resume and not checkpoint.exists():
        raise InputMissingError("no checkpoint to resume from", path=checkpoint)


def _what_to_try(report: TrainReport, train_config: TrainConfig) -> str:
    """The first thing to change for a model that does not work, by what the run did."""
    lower = f"--lr {min(report.final_lr, train_config.lr) / 10:.1g}"
    if train_config.lag and nearly_independent(vars(report)):
        return "lower --lag"  # the judge's own reason (not a non-finite output, say)
    if report.recoveries or train_config.lr > 1e-2:
        return f"try {lower}, or --clip-norm 1"
    if report.epochs_run < 50:
        return f"try more --epochs (this run had {report.epochs_run})"
    if report.decoded_variance < 0.1 * report.pca_explained_variance:
        return f"try {lower}, a lower --beta (now {train_config.beta:g}) or --kl-warmup 20"
    return "try more --epochs or a larger --latent-dim"
