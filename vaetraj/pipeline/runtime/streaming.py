"""Training on an aligned file larger than memory: `StreamedSet` is a training or
validation set left on disk, and `run_epoch` / `evaluate` run the trainer on it a
window of batches at a time (`vaetraj.training.run_streamed_epoch`), within a memory
budget.

The budget is shared out as: a quarter to the shuffle buffer (consecutive file chunks
in a random order, shuffled together), a sixteenth to each window of batches (two read
ahead, one on the device, one being filled), and an eighth to a chunk of validation
frames. The rest covers the copies a shuffle makes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from vaetraj.io.aligned import FrameFile
from vaetraj.pipeline.runtime.processes import Processes, local_copy, summed, to_global
from vaetraj.training import (
    EpochMetrics,
    Frames,
    Trainer,
    TrainState,
    prefetch,
    run_streamed_epoch,
    seed_of,
    stream_batches,
    windows_of,
)

_SHARES = {"buffer": 4, "window": 16, "validation": 8}  # budget / share


@dataclass(frozen=True)
class StreamedSet:
    """Frames of a source (`members`, sorted) and their normalization, read as the
    budget allows. The source is a `FrameFile`, or an array: a process's shard of a run
    over several processes (`sharding` set), each of whose batches is this process's
    rows of the global batch."""

    source: FrameFile | np.ndarray
    members: np.ndarray
    shift: jax.Array | np.ndarray  # NumPy over several processes: the same in each
    scale: jax.Array | np.ndarray
    budget: int  # bytes
    # several processes: the windows' sharding over all of their devices, and the
    # batches of an epoch (every process runs as many, padding with empty ones)
    sharding: NamedSharding | None = None
    processes: Processes = Processes()
    batches: int | None = None

    @property
    def size(self) -> int:
        return len(self.members)

    # the `data.DataSet` interface, as `data.InMemory` has it
    def run_epoch(self, trainer, state, beta, batch_size: int, *, key):
        """One epoch in global batches of `batch_size` (this process reads its share)."""
        return run_epoch(trainer, state, self, beta, batch_size // self.processes.count, key=key)

    def evaluate(self, trainer, params, beta, *, key):
        return evaluate(trainer, params, self, beta, key=key)

    def _frames_in(self, share: str) -> int:
        frame_bytes = int(np.prod(self.source.shape[1:])) * 4
        return max(1, self.budget // _SHARES[share] // frame_bytes)

    def windows(self, trainer: Trainer, batch_size: int):
        """What `run_streamed_epoch` reads: the epoch's windows for an order key."""
        rows = trainer.rows // self.processes.count
        batches = self.batches or -(-self.size // batch_size)
        steps = max(1, min(self._frames_in("window") // trainer.rows, batches))  # no idle steps
        buffer_frames = max(batch_size, self._frames_in("buffer"))
        chunk_rows = getattr(self.source, "chunk_rows", 4096)

        def of(order_key: jax.Array) -> Iterator:
            batches = stream_batches(
                self.source, self.members, batch_size=batch_size, chunk_rows=chunk_rows,
                buffer_frames=buffer_frames, seed=seed_of(order_key),
            )  # fmt: skip
            if self.batches is not None:
                batches = _padded(batches, self.batches, int(np.prod(self.source.shape[1:])))
            windows = prefetch(windows_of(batches, rows=rows, steps=steps))
            if self.sharding is None:
                return windows
            sharding = self.sharding
            return ((to_global(block, sharding), to_global(masks, sharding))
                    for block, masks in windows)  # fmt: skip

        return of


def _padded(batches: Iterator[np.ndarray], count: int, features: int) -> Iterator[np.ndarray]:
    """`batches`, then empty ones up to `count` in all (a process whose shard is a
    frame short runs as many steps as the others)."""
    given = 0
    for batch in batches:
        given += 1
        yield batch
    if given > count:
        raise RuntimeError(f"{given} batches for an epoch of {count}")
    for _ in range(count - given):
        yield np.zeros((0, features), np.float32)


def run_epoch(
    trainer: Trainer, state: TrainState, data: StreamedSet, beta: jax.Array, batch_size: int,
    *, key: jax.Array,
) -> tuple[TrainState, EpochMetrics]:  # fmt: skip
    """One epoch streamed from the file; as `trainer.run_epoch`."""
    windows = data.windows(trainer, batch_size)
    return run_streamed_epoch(
        trainer, state, windows, beta, key=key, shift=data.shift, scale=data.scale
    )


def evaluate(
    trainer: Trainer, params: dict, data: StreamedSet, beta: jax.Array, *, key: jax.Array
) -> EpochMetrics:
    """The loss terms on every frame of `data`, a chunk at a time (each chunk's draws
    from `key` folded with its number): frame-weighted means, as `trainer.evaluate`.
    Over several processes, each evaluates its shard on its own devices and the sums
    are added up."""
    processes = data.processes
    if processes.count > 1:
        params = local_copy(params)
        key = jax.random.fold_in(local_copy(key), processes.index)
    chunk = data._frames_in("validation")
    totals = np.zeros(3 + trainer.latent, np.float64)  # frames, loss, reconstruction, KL
    for number, start in enumerate(range(0, data.size, chunk)):
        members = data.members[start : start + chunk]
        frames = Frames(jnp.asarray(data.source[members]), None, data.shift, data.scale)
        part = trainer.evaluate(params, frames, beta, key=jax.random.fold_in(key, number))
        totals += len(members) * np.concatenate(
            [[1.0, float(part.loss), float(part.reconstruction)], np.asarray(part.kl)]
        )
    totals = summed(totals, processes)
    count, loss, reconstruction, *kl = totals
    assert count > 0, "no frames to evaluate"
    none = jnp.array(-1, jnp.int32)
    return EpochMetrics(
        jnp.float32(loss / count), jnp.float32(reconstruction / count),
        jnp.asarray(np.asarray(kl) / count, jnp.float32), none, none, none + 1,
    )  # fmt: skip
