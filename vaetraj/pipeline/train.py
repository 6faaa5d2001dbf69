"""`train` and `train_file`: aligned frames in, a `Model` (and model file) out.

`train` runs in phases, each a function with a small record out:

1. `_prepare`: checks, the split into training and validation blocks, normalization
   (`_Prepared`).
2. `_start`: the compiled trainer, the data on the devices, a fresh or restored run
   (`_Session`, `run_state.Run`).
3. `_fit_or_checkpoint` / `_fit` / `_epoch`: the Python loop around the jit-compiled
   epoch: validation, the epoch kept, progress, checkpoints, interrupts, and the
   divergence guard (a bad epoch is rolled back and run again at half the rate, up to
   `max_recoveries` times, `_recover`).
4. `_model_record`, then `assess.assess`: what the kept parameters are worth (explained
   variance against PCA's, the validation gap, the latent density); a model that
   explains almost nothing is a failed training (`TrainingFailedError`), not a file
   that looks normal.
5. `_report`, `_provenance`: the report and what the model file records of the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from vaetraj._interrupt import check_stop, deferred, request_stop, stop_requested
from vaetraj._memory import FLOAT, require_memory, resolve_memory_budget, return_freed_memory
from vaetraj._version import __version__
from vaetraj.configs import FeaturizeConfig
from vaetraj.errors import (
    BadInputError,
    InputMissingError,
    InterruptedRunError,
    NumericalError,
    TrainingFailedError,
    UsageError,
)
from vaetraj.io._atomic import check_output, run_lock
from vaetraj.io.aligned import AlignedData, FrameFile
from vaetraj.io.features import describe_table, read_features
from vaetraj.io.model_file import ModelRecord
from vaetraj.io.trajectory import ReadOptions
from vaetraj.model import (
    ModelConfig,
    Normalization,
    compute_moments,
    normalization_from_moments,
)
from vaetraj.pipeline import streaming
from vaetraj.pipeline.align import AlignConfig
from vaetraj.pipeline.assess import Quality, assess, nearly_independent
from vaetraj.pipeline.model import Model
from vaetraj.pipeline.processes import (
    current,
    global_mesh,
    least,
    peers_watched,
    replicated,
    shard_of,
    summed,
)
from vaetraj.pipeline.run_state import (
    HISTORY_METRICS,
    Point,
    Run,
    default_checkpoint,
    history_arrays,
    replicate_run,
    restore_run,
    write_run_checkpoint,
)
from vaetraj.pipeline.streaming import StreamedSet
from vaetraj.pipeline.train_report import TrainReport
from vaetraj.pipeline.training_set import (
    DEFAULT_DATA,
    TrainingSet,
    check_frames,
    featurized_training_set,
    load_training_set,
)
from vaetraj.training import (
    NON_FINITE,
    Frames,
    TrainConfig,
    Trainer,
    TrainState,
    lagged_pairs,
    make_trainer,
    place_rows,
    split_blocks,
)

Progress = Callable[..., None]
_RATE_BACKOFF = 0.5  # the divergence guard's factor on the rate at each recovery


@dataclass(frozen=True)
class _Prepared:
    """Phase 1's result: normalized frames split into training and validation."""

    model_config: ModelConfig
    normalization: Normalization
    train_index: np.ndarray  # with a lag: the first frame of each pair
    val_index: np.ndarray
    # with a lag, the frames each one's reconstruction is scored against (lag later)
    targets: tuple[np.ndarray, np.ndarray] | None
    feature_std: np.ndarray | None  # spread of each feature of the data; None: 1
    moments: tuple[np.ndarray, np.ndarray]  # the training frames' mean and std, float64
    notes: list[str]


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


def _prepare(data: TrainingSet, model_config: ModelConfig, train_config: TrainConfig) -> _Prepared:
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
    notes: list[str] = []
    targets = None
    if train_config.lag:
        train_index, val_index, targets = _pairs(
            data, train_index, val_index, train_config.lag, where
        )
        apart = f"{train_config.lag}" + (
            f" ({train_config.lag * data.frame_time_ps:.4g} ps)" if data.frame_time_ps else ""
        )
        notes.append(
            f"time-lagged: {len(train_index)} training and {len(val_index)} validation pairs "
            f"of frames {apart} apart, none across trajectories"
        )
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
        notes.append(f"{int(constant.sum())} feature(s) are constant; they are only centred")
    return _Prepared(
        model_config=model_config,
        normalization=normalization,
        train_index=train_index,
        val_index=val_index,
        targets=targets,
        feature_std=feature_std,
        moments=moments,
        notes=notes,
    )


def _pairs(
    data: TrainingSet, train_index: np.ndarray, val_index: np.ndarray, lag: int,
    where: str | None,
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:  # fmt: skip
    """The time-lagged pairs (t, t + lag) within the training and the validation
    frames: (training inputs, validation inputs, (their targets))."""
    _refuse_lag_unless_in_memory(data.xyz)
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


def _fingerprint(xyz: np.ndarray) -> str:
    """SHA-256 of the frames as float32 bytes and their shape, chunk by chunk (no
    whole copy)."""
    digest = hashlib.sha256()
    step = max(1, (64 << 20) // max(1, xyz[:1].nbytes))
    for start in range(0, len(xyz), step):
        digest.update(np.ascontiguousarray(xyz[start : start + step], np.float32).data)
    digest.update(repr(xyz.shape).encode())
    return digest.hexdigest()


def _stop_point() -> None:
    """Stop here (KeyboardInterrupt) when a signal asked to: over several processes,
    when any of them got one, so that all stop after the same epoch."""
    processes = current()
    if processes.count > 1 and summed(np.array([float(stop_requested())]), processes)[0] > 0:
        request_stop()
    check_stop()


def _save(checkpoint: Path, run: Run, fields: dict[str, Any]) -> None:
    """Write the run's checkpoint (process 0 alone, over several processes)."""
    if current().primary:
        write_run_checkpoint(checkpoint, run, fields)


@dataclass
class _Timing:
    seconds: float = 0.0  # in epochs after the first of the process (which compiles)
    epochs: int = 0
    stopped_early: bool = False


def _recover(
    run: Run,
    failed: TrainState,
    metrics: Any,
    train_config: TrainConfig,
    checkpoint: Path | None,
    fields: dict[str, Any],
    notes: list[str],
) -> None:
    """A bad epoch (run from the state `failed`): roll back to the anchor, the end of
    the last clean epoch, at half the rate; or stop (exit 3) when the recoveries are
    spent. Deterministic, so a resumed run recovers alike."""
    epoch = int(failed.epoch) + 1
    step = int(metrics.bad_step) + 1
    what = (
        "a non-finite loss or gradient" if int(metrics.bad_kind) == NON_FINITE else "a loss spike"
    )
    rate = train_config.lr * float(failed.lr_scale)
    if len(run.recoveries) >= train_config.max_recoveries:
        run.point = run.anchor  # the last good state
        where_saved = ""
        if checkpoint is not None:
            _save(checkpoint, run, fields)
            where_saved = f"; the last good state (epoch {run.anchor.epoch}) is in {checkpoint}"
        tries = len(run.recoveries)
        raise NumericalError(
            f"training diverged: {what} at epoch {epoch}, step {step}"
            + (f", after {tries} recoveries that lowered the rate to {rate:.2g}" if tries else "")
            + f"{where_saved}; try a lower --lr (below {rate:.2g}), --clip-norm 1 or --kl-warmup 20"
        )
    scale = float(failed.lr_scale) * _RATE_BACKOFF
    anchor = run.anchor
    state = anchor.state._replace(
        lr_scale=jnp.asarray(scale, jnp.float32), over=anchor.state.over * 0
    )
    run.point = run.anchor = dataclasses.replace(anchor, state=state)
    run.recoveries.append(
        {"epoch": epoch, "step": step, "kind": what, "lr": train_config.lr * scale}
    )
    notes.append(
        f"epoch {epoch}: {what} at step {step}; rolled back to the end of epoch {anchor.epoch} "
        f"and halved the learning rate to {train_config.lr * scale:.2g}"
    )


@dataclass(frozen=True)
class _Session:
    """Phase 2's set-up: the compiled trainer, the data on the devices, the keys, and
    the fields a checkpoint must share with a resumed run."""

    trainer: Trainer
    # the data's frames on the devices, held once for both sets; or streamed from disk
    train_data: Frames | StreamedSet
    val_data: Frames | StreamedSet | None
    keys: tuple[jax.Array, jax.Array]  # the epochs' and validation's
    density_key: jax.Array
    devices: int
    fields: dict[str, Any]
    train_frames: int  # over all processes (train_data holds this process's shard)


def _start(
    data: TrainingSet,
    prepared: _Prepared,
    train_config: TrainConfig,
    checkpoint: Path | None,
    resume: bool,
    notes: list[str],
    budget: int,
) -> tuple[_Session, Run, int | None]:
    """Build the trainer, put the data on the devices (or stream them from disk within
    `budget` bytes), and start a run: afresh, or from the checkpoint (then also the
    epoch it was at)."""
    model_config = prepared.model_config
    mesh = global_mesh()
    trainer = make_trainer(
        model_config,
        train_config,
        frames=len(prepared.train_index),
        mesh=mesh,
        feature_std=prepared.feature_std,
    )
    key = jax.random.key(train_config.seed)
    init_key, epoch_key, val_key, density_key = (jax.random.fold_in(key, i) for i in range(4))
    state = trainer.init(key=init_key)
    everywhere = None if mesh is None else NamedSharding(mesh, PartitionSpec())
    if everywhere is not None:
        state = replicated(state, everywhere)
    train_data, val_data, layout = _data_sets(
        data, prepared, everywhere, budget, trainer.batches_per_epoch, notes
    )
    _, atoms, dims = data.xyz.shape
    fields = {
        "model_config": model_config.to_json(),
        "train_config": train_config.to_json(),
        "data_sha256": _fingerprint(data.xyz),
        "atoms": atoms,
        "dims": dims,
        "data_layout": layout,
    }
    session = _Session(
        trainer, train_data, val_data, (epoch_key, val_key), density_key,
        1 if mesh is None else mesh.size, fields, len(prepared.train_index),
    )  # fmt: skip
    run = Run(Point(state, jax.device_get(state.params)))
    if not resume:
        return session, run, None
    if checkpoint is None:
        raise UsageError("resume needs a checkpoint file")
    resumed_from = restore_run(checkpoint, run, fields)
    if mesh is not None:
        replicate_run(run, NamedSharding(mesh, PartitionSpec()))
    notes.append(f"resumed from {checkpoint} after epoch {resumed_from}")
    notes.extend(
        f"epoch {r['epoch']}: {r['kind']} at step {r['step']}; recovered at rate {r['lr']:.2g}"
        for r in run.recoveries
    )
    return session, run, resumed_from


def _data_sets(
    data: TrainingSet,
    prepared: _Prepared,
    sharding: NamedSharding | None,
    budget: int,
    batches: int,
    notes: list[str],
) -> tuple[Frames | StreamedSet, Frames | StreamedSet | None, str]:
    """The training and validation sets and which layout they have ("data_layout": a
    streamed epoch's order follows its budget): views of one copy of the frames on the
    devices (none on the CPU, where the aligned file's buffer is used as it is), or
    frames left on disk, read within `budget` bytes; over several processes, this
    process's shards (`_shards`)."""
    flat = data.xyz.reshape(len(data.xyz), -1)
    if current().count > 1:
        return _shards(flat, prepared, sharding, budget, batches, notes)
    shift, scale = (jnp.asarray(v) for v in prepared.normalization)
    make: Callable[[np.ndarray, np.ndarray | None], Frames | StreamedSet]
    if isinstance(flat, FrameFile):
        layout = f"streamed within {budget} bytes"
        notes.append(
            f"streamed from {flat.path}: {flat.nbytes / 1e6:,.0f} MB of frames, "
            f"over the memory budget of {budget / 1e6:,.0f} MB"
        )
        make = lambda index, _: StreamedSet(flat, np.asarray(index), shift, scale, budget)  # noqa: E731
    else:
        layout, rows = "in memory", place_rows(flat, sharding)

        def make(index: np.ndarray, targets: np.ndarray | None) -> Frames:
            lagged = None if targets is None else jnp.asarray(targets, jnp.int32)
            return Frames(rows, jnp.asarray(index, jnp.int32), shift, scale, lagged)

    train_targets, val_targets = prepared.targets or (None, None)
    val_index = prepared.val_index
    val = make(val_index, val_targets) if len(val_index) else None
    return make(prepared.train_index, train_targets), val, layout


def check_for_processes(train_config: TrainConfig, processes: int) -> None:
    """What a run over `processes` processes refuses: a global batch that does not
    divide among them, and a time-lagged model (one process only). The CLI calls it
    before the processes join (after the join, a refused process left the others
    waiting); training calls it again for Python callers."""
    if processes <= 1:
        return
    if train_config.lag:
        raise UsageError(f"--lag trains in one process, not {processes}: run one")
    if train_config.batch_size % processes:
        raise UsageError(
            f"--batch-size {train_config.batch_size} must be a multiple of the "
            f"{processes} processes (it is the global batch)"
        )


def _refuse_lag_unless_in_memory(xyz: np.ndarray | FrameFile) -> None:
    """A time-lagged model trains on frames held in memory (its pairs would cross the
    chunks of a streamed file); in one process, which `check_for_processes` saw to
    first. Checked before the normalization pass."""
    if isinstance(xyz, FrameFile):
        raise UsageError(
            f"--lag trains on frames held in memory, and {xyz.nbytes / 1e6:,.0f} MB of "
            f"frames exceed the memory budget: raise --memory-budget",
            path=xyz.path,
        )


def _shards(
    flat: np.ndarray, prepared: _Prepared, sharding: NamedSharding | None, budget: int,
    batches: int, notes: list[str],
) -> tuple[StreamedSet, StreamedSet | None, str]:  # fmt: skip
    """This process's shards of the training and validation frames: read into memory
    when the training shard fits in a quarter of the budget, else streamed from the file. Each batch is its
    rows of the global batch, placed over the devices of all processes."""
    processes = current()
    assert sharding is not None
    # NumPy arrays: jit takes them as the same on every process
    shift, scale = (np.asarray(v) for v in prepared.normalization)
    train_shard = shard_of(prepared.train_index, processes)
    val_shard = shard_of(prepared.val_index, processes)
    window = NamedSharding(sharding.mesh, PartitionSpec(None, "batch"))

    # a shard within a quarter of the budget is held, and shuffled whole each epoch (in
    # one buffer: an order that does not depend on the budget)
    fits = len(train_shard) * flat.shape[1] * FLOAT <= budget // 4
    held = least(int(fits or not isinstance(flat, FrameFile)), processes) == 1  # alike in all

    def make(members: np.ndarray, epoch_batches: int | None) -> StreamedSet:
        source: FrameFile | np.ndarray = flat
        if held:
            source, members = np.asarray(flat[members], np.float32), np.arange(len(members))
        return StreamedSet(source, members, shift, scale, budget, window, processes, epoch_batches)

    notes.append(
        f"trained over {processes.count} processes and {sharding.mesh.size} devices "
        f"({len(train_shard)} training frames on process {processes.index})"
    )
    layout = f"sharded over {processes.count} processes, " + (
        "in memory" if held else f"streamed within {budget} bytes"
    )
    return (
        make(train_shard, batches),
        make(val_shard, None) if len(prepared.val_index) else None,
        layout,
    )


def _run_epoch(session: _Session, state: TrainState, beta: jax.Array, batch_size: int):
    """The epoch, on the devices' frames or streamed from disk."""
    key, data = session.keys[0], session.train_data
    if isinstance(data, StreamedSet):
        local_batch = batch_size // data.processes.count
        return streaming.run_epoch(session.trainer, state, data, beta, local_batch, key=key)
    return session.trainer.run_epoch(state, data, beta, key=key)


def _validate(session: _Session, params: dict, beta: jax.Array) -> Any:
    key, data = session.keys[1], session.val_data
    if data is None:
        return None
    if isinstance(data, StreamedSet):
        return streaming.evaluate(session.trainer, params, data, beta, key=key)
    return session.trainer.evaluate(params, data, beta, key=key)


def _epoch_record(metrics: Any, val: Any, beta: jax.Array, state: TrainState) -> dict[str, Any]:
    """An epoch's entry in the history (all of HISTORY_METRICS but its seconds)."""
    kl = np.asarray(metrics.kl).tolist()
    return {
        "loss": float(metrics.loss),
        "reconstruction": float(metrics.reconstruction),
        "kl": kl,
        "beta": float(beta),
        "val_loss": math.nan if val is None else float(val.loss),
        "val_reconstruction": math.nan if val is None else float(val.reconstruction),
        "val_kl": [math.nan] * len(kl) if val is None else np.asarray(val.kl).tolist(),
        "lr_scale": float(state.lr_scale),
    }


def _commit(run: Run, state: TrainState, record: dict[str, Any], watched: float) -> None:
    """Replace the run's point by the one after this epoch (the best kept by `watched`,
    the loss at the final beta)."""
    point = run.point
    history = {name: [*point.history.get(name, []), value] for name, value in record.items()}
    if watched < point.best_loss:
        best = {"best_params": jax.device_get(state.params), "best_loss": watched,
                "best_epoch": point.epoch + 1, "since_best": 0}  # fmt: skip
    else:
        best = {"since_best": point.since_best + 1}
    run.point = dataclasses.replace(point, state=state, history=history, **best)


def _show_progress(
    progress: Progress, epoch: int, epochs: int, record: dict[str, Any], frames_per_s: float,
    validated: bool,
) -> None:  # fmt: skip
    detail = f"loss {record['loss']:.4g}"
    if validated:
        detail += f"  val {record['val_loss']:.4g}"
    detail += f"  KL {sum(record['kl']):.3g}  {frames_per_s:,.0f} frames/s"
    progress(epoch, epochs, "training", detail)


def _epoch(
    run: Run, session: _Session, train_config: TrainConfig, checkpoint: Path | None,
    notes: list[str],
) -> dict[str, Any] | None:  # fmt: skip
    """Run one epoch and commit it; returns its history record, or None when the epoch
    went bad and the run was rolled back (`_recover`)."""
    epoch = run.epoch()
    beta = jnp.float32(train_config.beta_at(epoch))
    tick = time.perf_counter()
    before = run.point.state
    if epoch > 0 and train_config.beta_at(epoch) != train_config.beta_at(epoch - 1):
        # a rising beta raises the reconstruction loss on purpose: judge spikes
        # against the level reached under this beta, not an earlier one
        before = before._replace(loss_floor=before.loss_level)
    state, metrics = _run_epoch(session, before, beta, train_config.batch_size)
    if int(metrics.bad_step) >= 0:
        _recover(run, before, metrics, train_config, checkpoint, session.fields, notes)
        return None
    val = _validate(session, state.params, beta)
    record = _epoch_record(metrics, val, beta, state)
    record["seconds"] = time.perf_counter() - tick
    assert set(record) == set(HISTORY_METRICS)
    watched_terms = metrics if val is None else val
    watched = float(watched_terms.reconstruction) + train_config.beta * float(
        jnp.sum(watched_terms.kl)
    )
    _commit(run, state, record, watched)
    if int(metrics.high_steps) == 0:
        run.anchor = run.point
    return record


def _fit(
    run: Run,
    session: _Session,
    train_config: TrainConfig,
    *,
    checkpoint: Path | None,
    progress: Progress | None,
    notes: list[str],
) -> _Timing:
    """Run the epochs left; `run` holds the outcome. The epoch kept as best is judged by
    its loss at the final beta, so a KL warm-up does not favour its own early epochs."""
    timing = _Timing()
    compiled = False
    frames = session.train_frames  # of every process
    while run.epoch() < train_config.epochs:
        _stop_point()  # a signal before the epoch (during start-up, say): no epoch more
        record = _epoch(run, session, train_config, checkpoint, notes)
        if record is None:
            continue
        elapsed, epoch = record["seconds"], run.epoch()
        if compiled:  # the first epoch of the process compiles: not counted
            timing.seconds += elapsed
            timing.epochs += 1
        compiled = True
        if progress is not None:
            rate = frames / elapsed if elapsed > 0 else math.nan
            validated = session.val_data is not None
            _show_progress(progress, epoch, train_config.epochs, record, rate, validated)
        every = train_config.checkpoint_every
        if checkpoint is not None and every and epoch % every == 0:
            _save(checkpoint, run, session.fields)
        _stop_point()  # a signal during the epoch (deferred) or one Python swallowed
        if train_config.patience is not None and run.point.since_best >= train_config.patience:
            timing.stopped_early = True
            notes.append(
                f"stopped early after epoch {epoch}: no validation gain in "
                f"{train_config.patience} epochs"
            )
            break
    return timing


def _fit_or_checkpoint(
    run: Run,
    session: _Session,
    train_config: TrainConfig,
    *,
    checkpoint: Path | None,
    progress: Progress | None,
    notes: list[str],
) -> _Timing:
    """`_fit` with signals deferred to the end of an epoch; an interrupted run leaves
    its checkpoint (when it has done an epoch) and raises InterruptedRunError."""
    try:
        with deferred():  # a signal stops the run at the end of its epoch (see _interrupt)
            return _fit(
                run, session, train_config, checkpoint=checkpoint, progress=progress, notes=notes
            )
    except KeyboardInterrupt:
        if checkpoint is None or run.epoch() == 0:  # no epoch done: nothing to keep
            raise
        _save(checkpoint, run, session.fields)
        raise InterruptedRunError(
            f"interrupted after epoch {run.epoch()}; checkpoint written, "
            "run the same command with --resume to continue",
            path=checkpoint,
        ) from None


def _held_bytes(xyz: np.ndarray | FrameFile, budget: int) -> int:
    """The bytes of frames training holds: frames left on disk within the budget, and
    never more than the file holds (over several processes a small aligned file is left
    on disk too: counting the whole default budget, half the free memory, as data
    refused every such run)."""
    return min(budget, xyz.nbytes) if isinstance(xyz, FrameFile) else xyz.nbytes


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
    data: TrainingSet, prepared: _Prepared, train_config: TrainConfig, point: Point
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
        train_config=train_config.to_json(),
        history=history_arrays(point.history),
    )


@dataclass(frozen=True)
class _Outcome:
    """What the fit phase leaves for the report."""

    run: Run
    timing: _Timing
    resumed_from: int | None
    devices: int
    started: float  # perf_counter at the start of `train`


def _report(
    data: TrainingSet,
    prepared: _Prepared,
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
    data: TrainingSet, prepared: _Prepared, train_config: TrainConfig, data_sha256: str
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
    prepared = _prepare(data, model_config, train_config)
    notes = list(prepared.notes)
    budget = least(resolve_memory_budget(memory_budget), current())  # one layout for all
    held = _held_bytes(data.xyz, budget)
    _require_training_memory(prepared.model_config, train_config, held)
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    session, run, resumed_from = _start(
        data, prepared, train_config, checkpoint, resume, notes, budget
    )
    with peers_watched(current(), None if checkpoint is None else str(checkpoint)):
        timing = _fit_or_checkpoint(
            run, session, train_config, checkpoint=checkpoint, progress=progress, notes=notes
        )
    return_freed_memory()  # the epochs' reads: the assessment's peak is then its own
    record, model, quality = _assess_kept(data, prepared, train_config, run, session)
    outcome = _Outcome(run, timing, resumed_from, session.devices, started)
    report = _report(data, prepared, train_config, outcome, quality, notes)
    record.density, record.data_stats = quality.density, quality.data_stats
    record.summary = {k: v for k, v in report.to_dict().items() if k not in ("notes",)}
    record.provenance = _provenance(data, prepared, train_config, session.fields["data_sha256"])
    if quality.failure:
        raise TrainingFailedError(quality.failure, model=model, report=report)
    return model, report


def _assess_kept(
    data: TrainingSet, prepared: _Prepared, train_config: TrainConfig, run: Run, session: _Session
) -> tuple[ModelRecord, Model, Quality]:
    """The model of the kept parameters, and what it is worth."""
    record = _model_record(data, prepared, train_config, run.point)
    model = Model(record)
    quality = assess(
        model, data, prepared.train_index, prepared.val_index, train_config,
        key=session.density_key, moments=prepared.moments,
    )  # fmt: skip
    return record, model, quality


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

    Returns the report, with the model's and checkpoint's paths.
    """
    output, checkpoint = _outputs(output, checkpoint, inputs, read_options, overwrite)
    with _locked(output, checkpoint):
        _check_checkpoint(checkpoint, resume=resume, overwrite=overwrite)
        budget = resolve_memory_budget(memory_budget)
        data = _read_training_set(
            inputs, (features, featurize), align_config, read_options, progress, budget
        )
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


def _read_training_set(
    inputs: Sequence[str | os.PathLike] | None,
    tabular: tuple[bool, FeaturizeConfig | None],
    align_config: AlignConfig,
    read_options: ReadOptions,
    progress: Progress | None,
    memory_budget: int,
) -> TrainingSet:
    """The frames `train_file` trains on: a feature table (`tabular`'s flag), the
    features of raw inputs (its FeaturizeConfig), an aligned file (left on disk when its
    frames exceed `memory_budget`), or inputs aligned first (no inputs: ./aligned.h5)."""
    features, featurize = tabular
    if featurize is not None:
        if features or not inputs:
            raise UsageError(
                "--featurize computes features from trajectories: name them, without --features"
            )
        return featurized_training_set(inputs, featurize, read_options, progress)
    if features:
        if not inputs or len(inputs) != 1:
            raise UsageError("--features trains on exactly one table (.npy, .npz or .csv)")
        table = read_features(inputs[0], key=read_options.key)
        data = TrainingSet.from_features(table, origin=str(inputs[0]))
        return dataclasses.replace(data, sources=[describe_table(inputs[0], table)])
    if not inputs:
        inputs = [DEFAULT_DATA]
        if not Path(DEFAULT_DATA).exists():
            raise InputMissingError(
                "no such file (run `vaetraj align` first, or name the data to train on)",
                path=DEFAULT_DATA,
            )
    return load_training_set(inputs, align_config, read_options, progress, memory_budget)


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
