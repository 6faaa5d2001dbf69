"""A training run's session: the compiled trainer and the data on the devices (`start`),
then the epochs (`fit`): validation, the epoch kept, progress, checkpoints, signals
and the divergence guard (a bad epoch is rolled back and run again at half the rate,
up to `max_recoveries` times)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from vaetraj._interrupt import check_stop, deferred, request_stop, stop_requested
from vaetraj._remarks import remark
from vaetraj.errors import InterruptedRunError, NumericalError, UsageError
from vaetraj.io.aligned import FrameFile
from vaetraj.pipeline.runtime.data import DataSet, Prepared, data_sets, fingerprint
from vaetraj.pipeline.runtime.processes import current, global_mesh, replicated, summed
from vaetraj.pipeline.runtime.run_state import (
    HISTORY_METRICS,
    Point,
    Run,
    replicate_run,
    restore_run,
    write_run_checkpoint,
)
from vaetraj.training import NON_FINITE, TrainConfig, Trainer, TrainState, make_trainer

Progress = Callable[..., None]
_RATE_BACKOFF = 0.5  # the divergence guard's factor on the rate at each recovery


def check_for_processes(train_config: TrainConfig, processes: int) -> None:
    """What a run over `processes` processes refuses: a global batch that does not
    divide among them, and a time-lagged model (one process only). The CLI calls it
    before the processes join (after the join, a refused process left the others
    waiting); training calls it again for Python callers."""
    if processes <= 1:
        return
    if train_config.lag:
        raise UsageError(f"lag trains in one process, not {processes}: run one", fields=("lag",))
    if train_config.batch_size % processes:
        raise UsageError(
            f"batch_size {train_config.batch_size} must be a multiple of the "
            f"{processes} processes (it is the global batch)",
            fields=("batch_size",),
        )


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
class Timing:
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
            + f"{where_saved}; try a lower lr (below {rate:.2g}), clip_norm 1 or kl_warmup 20",
            fields=("lr", "clip_norm", "kl_warmup"),
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
    remark(
        f"epoch {epoch}: {what} at step {step}; rolled back to the end of epoch {anchor.epoch} "
        f"and halved the learning rate to {train_config.lr * scale:.2g}"
    )


@dataclass(frozen=True)
class Session:
    """Phase 2's set-up: the compiled trainer, the data on the devices, the keys, and
    the fields a checkpoint must share with a resumed run."""

    trainer: Trainer
    # the data's frames on the devices, held once for both sets; or streamed from disk
    train_data: DataSet
    val_data: DataSet | None
    keys: tuple[jax.Array, jax.Array]  # the epochs' and validation's
    density_key: jax.Array
    devices: int
    fields: dict[str, Any]
    train_frames: int  # over all processes (train_data holds this process's shard)


def start(
    xyz: np.ndarray | FrameFile,
    prepared: Prepared,
    train_config: TrainConfig,
    checkpoint: Path | None,
    resume: bool,
    budget: int,
) -> tuple[Session, Run, int | None]:
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
    train_data, val_data, layout = data_sets(
        xyz, prepared, everywhere, budget, trainer.batches_per_epoch
    )
    _, atoms, dims = xyz.shape
    fields = {
        "model_config": model_config.to_json(),
        "train_config": train_config.to_json(),
        "data_sha256": fingerprint(xyz),
        "atoms": atoms,
        "dims": dims,
        "data_layout": layout,
    }
    session = Session(
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
    remark(f"resumed from {checkpoint} after epoch {resumed_from}")
    for r in run.recoveries:
        remark(
            f"epoch {r['epoch']}: {r['kind']} at step {r['step']}; recovered at rate {r['lr']:.2g}"
        )
    return session, run, resumed_from


def _validate(session: Session, params: dict, beta: jax.Array) -> Any:
    data = session.val_data
    if data is None:
        return None
    return data.evaluate(session.trainer, params, beta, key=session.keys[1])


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
    run: Run, session: Session, train_config: TrainConfig, checkpoint: Path | None
) -> dict[str, Any] | None:
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
    state, metrics = session.train_data.run_epoch(
        session.trainer, before, beta, train_config.batch_size, key=session.keys[0]
    )
    if int(metrics.bad_step) >= 0:
        _recover(run, before, metrics, train_config, checkpoint, session.fields)
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
    session: Session,
    train_config: TrainConfig,
    *,
    checkpoint: Path | None,
    progress: Progress | None,
) -> Timing:
    """Run the epochs left; `run` holds the outcome. The epoch kept as best is judged by
    its loss at the final beta, so a KL warm-up does not favour its own early epochs."""
    timing = Timing()
    compiled = False
    frames = session.train_frames  # of every process
    while run.epoch() < train_config.epochs:
        _stop_point()  # a signal before the epoch (during start-up, say): no epoch more
        record = _epoch(run, session, train_config, checkpoint)
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
            remark(
                f"stopped early after epoch {epoch}: no validation gain in "
                f"{train_config.patience} epochs"
            )
            break
    return timing


def fit(
    run: Run,
    session: Session,
    train_config: TrainConfig,
    *,
    checkpoint: Path | None,
    progress: Progress | None,
) -> Timing:
    """`_fit` with signals deferred to the end of an epoch; an interrupted run leaves
    its checkpoint (when it has done an epoch) and raises InterruptedRunError."""
    try:
        with deferred():  # a signal stops the run at the end of its epoch (see _interrupt)
            return _fit(run, session, train_config, checkpoint=checkpoint, progress=progress)
    except KeyboardInterrupt:
        if checkpoint is None or run.epoch() == 0:  # no epoch done: nothing to keep
            raise
        _save(checkpoint, run, session.fields)
        raise InterruptedRunError(
            f"interrupted after epoch {run.epoch()}; checkpoint written, "
            "run the same command with --resume to continue",
            path=checkpoint,
        ) from None
