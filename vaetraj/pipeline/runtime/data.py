"""The frames a training run reads: one interface (`DataSet`: run an epoch, evaluate)
over frames held on the devices (`InMemory`) and frames streamed from disk within a
memory budget (`streaming.StreamedSet`), over one process or several (`_shards`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from vaetraj._memory import FLOAT
from vaetraj._remarks import remark
from vaetraj.errors import UsageError
from vaetraj.io.aligned import FrameFile
from vaetraj.model import ModelConfig, Normalization
from vaetraj.pipeline.runtime.processes import current, least, shard_of
from vaetraj.pipeline.runtime.streaming import StreamedSet
from vaetraj.training import Frames, Trainer, TrainState, place_rows


class DataSet(Protocol):
    """Training or validation frames, wherever they are."""

    def run_epoch(
        self, trainer: Trainer, state: TrainState, beta: jax.Array, batch_size: int, *, key
    ) -> tuple[TrainState, Any]:
        """One epoch over the frames in batches of `batch_size` (the global batch)."""
        ...

    def evaluate(self, trainer: Trainer, params: dict, beta: jax.Array, *, key) -> Any:
        """The loss terms of the frames under `params`."""
        ...


@dataclass(frozen=True)
class InMemory:
    """Frames on the devices (one copy for the training and validation views)."""

    frames: Frames

    def run_epoch(self, trainer, state, beta, batch_size, *, key):
        return trainer.run_epoch(state, self.frames, beta, key=key)

    def evaluate(self, trainer, params, beta, *, key):
        return trainer.evaluate(params, self.frames, beta, key=key)


@dataclass(frozen=True)
class Prepared:
    """Training's first phase's result: the frames' split into training and validation,
    and their normalization."""

    model_config: ModelConfig
    normalization: Normalization
    train_index: np.ndarray  # with a lag: the first frame of each pair
    val_index: np.ndarray
    # with a lag, the frames each one's reconstruction is scored against (lag later)
    targets: tuple[np.ndarray, np.ndarray] | None
    feature_std: np.ndarray | None  # spread of each feature of the data; None: 1
    moments: tuple[np.ndarray, np.ndarray]  # the training frames' mean and std, float64


def fingerprint(xyz: np.ndarray | FrameFile) -> str:
    """SHA-256 of the frames as float32 bytes and their shape, chunk by chunk (no
    whole copy)."""
    digest = hashlib.sha256()
    step = max(1, (64 << 20) // max(1, xyz[:1].nbytes))
    for start in range(0, len(xyz), step):
        digest.update(np.ascontiguousarray(xyz[start : start + step], np.float32).data)
    digest.update(repr(xyz.shape).encode())
    return digest.hexdigest()


def data_sets(
    xyz: np.ndarray | FrameFile,
    prepared: Prepared,
    sharding: NamedSharding | None,
    budget: int,
    batches: int,
) -> tuple[DataSet, DataSet | None, str]:
    """The training and validation sets and which layout they have ("data_layout": a
    streamed epoch's order follows its budget): views of one copy of the frames on the
    devices (none on the CPU, where the aligned file's buffer is used as it is), or
    frames left on disk, read within `budget` bytes; over several processes, this
    process's shards (`_shards`)."""
    flat = xyz.reshape(len(xyz), -1)
    if current().count > 1:
        return _shards(flat, prepared, sharding, budget, batches)
    shift, scale = (jnp.asarray(v) for v in prepared.normalization)
    make: Callable[[np.ndarray, np.ndarray | None], DataSet]
    if isinstance(flat, FrameFile):
        layout = f"streamed within {budget} bytes"
        remark(
            f"streamed from {flat.path}: {flat.nbytes / 1e6:,.0f} MB of frames, "
            f"over the memory budget of {budget / 1e6:,.0f} MB"
        )
        make = lambda index, _: StreamedSet(flat, np.asarray(index), shift, scale, budget)  # noqa: E731
    else:
        layout, rows = "in memory", place_rows(flat, sharding)

        def make(index: np.ndarray, targets: np.ndarray | None) -> DataSet:
            lagged = None if targets is None else jnp.asarray(targets, jnp.int32)
            return InMemory(Frames(rows, jnp.asarray(index, jnp.int32), shift, scale, lagged))

    train_targets, val_targets = prepared.targets or (None, None)
    val_index = prepared.val_index
    val = make(val_index, val_targets) if len(val_index) else None
    return make(prepared.train_index, train_targets), val, layout


def refuse_lag_unless_in_memory(xyz: np.ndarray | FrameFile) -> None:
    """A time-lagged model trains on frames held in memory (its pairs would cross the
    chunks of a streamed file); in one process, which `session.check_for_processes` saw to
    first. Checked before the normalization pass."""
    if isinstance(xyz, FrameFile):
        raise UsageError(
            f"lag trains on frames held in memory, and {xyz.nbytes / 1e6:,.0f} MB of "
            f"frames exceed the memory budget: raise memory_budget",
            fields=("lag", "memory_budget"),
            path=xyz.path,
        )


def _shards(
    flat: np.ndarray | FrameFile, prepared: Prepared, sharding: NamedSharding | None, budget: int,
    batches: int,
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

    remark(
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


def held_bytes(xyz: np.ndarray | FrameFile, budget: int) -> int:
    """The bytes of frames training holds: frames left on disk within the budget, and
    never more than the file holds (over several processes a small aligned file is left
    on disk too: counting the whole default budget, half the free memory, as data
    refused every such run)."""
    return min(budget, xyz.nbytes) if isinstance(xyz, FrameFile) else xyz.nbytes
