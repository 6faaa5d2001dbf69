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

from vaetraj.io.aligned import FrameFile
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
    """Frames of a `FrameFile` (`members`, sorted) and their normalization, read as
    the budget allows."""

    source: FrameFile
    members: np.ndarray
    shift: jax.Array
    scale: jax.Array
    budget: int  # bytes

    @property
    def size(self) -> int:
        return len(self.members)

    def _frames_in(self, share: str) -> int:
        frame_bytes = int(np.prod(self.source.shape[1:])) * 4
        return max(1, self.budget // _SHARES[share] // frame_bytes)

    def windows(self, trainer: Trainer, batch_size: int):
        """What `run_streamed_epoch` reads: the epoch's windows for an order key."""
        steps = max(1, self._frames_in("window") // trainer.rows)
        buffer_frames = max(batch_size, self._frames_in("buffer"))

        def of(order_key: jax.Array) -> Iterator:
            batches = stream_batches(
                self.source, self.members, batch_size=batch_size,
                chunk_rows=self.source.chunk_rows, buffer_frames=buffer_frames,
                seed=seed_of(order_key),
            )  # fmt: skip
            return prefetch(windows_of(batches, rows=trainer.rows, steps=steps))

        return of


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
    from `key` folded with its number): frame-weighted means, as `trainer.evaluate`."""
    chunk = data._frames_in("validation")
    totals = None
    for number, start in enumerate(range(0, data.size, chunk)):
        members = data.members[start : start + chunk]
        frames = Frames(jnp.asarray(data.source[members]), None, data.shift, data.scale)
        part = trainer.evaluate(params, frames, beta, key=jax.random.fold_in(key, number))
        weighted = (part.loss * len(members), part.reconstruction * len(members),
                    part.kl * len(members))  # fmt: skip
        totals = weighted if totals is None else jax.tree.map(jnp.add, totals, weighted)
    assert totals is not None, "no frames to evaluate"
    loss, reconstruction, kl = (total / data.size for total in totals)
    none = jnp.array(-1, jnp.int32)
    return EpochMetrics(loss, reconstruction, kl, none, none, none + 1)
