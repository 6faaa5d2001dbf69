"""An epoch fed from the host a window of batches at a time: training on data larger
than memory (issue 15).

`stream_batches` gives an epoch's batches read from a frame source (an aligned file's
/xyz, or an array) in an order shuffled by chunk and then within a buffer of chunks:
each read is a contiguous run of frames (the file's chunks, cheap to read), and memory
holds one buffer whatever the data's size. `prefetch` reads ahead in a thread, so the
device does not wait on the file. `run_streamed_epoch` runs the trainer's compiled window
over them with the same guarded step as the in-memory epoch.

The order is a function of the epoch's key alone, so an epoch (and a resumed run) is
reproducible; it is not the in-memory epoch's order, so the two agree in distribution.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj.training._trainer import EpochMetrics, Trainer, TrainState

Window = tuple[np.ndarray, np.ndarray]  # (steps, rows, features) raw frames; (steps, rows) masks


def _runs(members: np.ndarray, chunk_rows: int) -> list[np.ndarray]:
    """`members` (sorted frame indices) split by the file chunk each falls in."""
    chunk = members // chunk_rows
    return np.split(members, np.flatnonzero(np.diff(chunk)) + 1)


def _read(source: Any, run: np.ndarray) -> np.ndarray:
    """The frames of one run, flat (frames, features): one contiguous read."""
    block = np.asarray(source[int(run[0]) : int(run[-1]) + 1], np.float32)
    return block.reshape(len(block), -1)[run - run[0]]


def _fill(
    source: Any, runs: list[np.ndarray], position: int, buffer_frames: int
) -> tuple[np.ndarray, int]:
    """A buffer read from runs[position:]: at least one run, then as many more as fit in
    `buffer_frames`; and the position after it."""
    parts: list[np.ndarray] = []
    held = 0
    while position < len(runs) and (not parts or held + len(runs[position]) <= buffer_frames):
        parts.append(_read(source, runs[position]))
        held += len(parts[-1])
        position += 1
    return np.concatenate(parts), position


def stream_batches(
    source: Any,
    members: np.ndarray,
    *,
    batch_size: int,
    chunk_rows: int,
    buffer_frames: int,
    seed: np.random.SeedSequence | int,
) -> Iterator[np.ndarray]:
    """An epoch's batches (batch_size, features) of the `members` frames of `source`,
    each frame once; the last batch may be short.

    The file's chunks are visited in a random order; consecutive chunks fill a buffer
    of at most `buffer_frames` frames (at least one chunk), which is shuffled and cut
    into batches; frames left over from one buffer open the next."""
    rng = np.random.default_rng(seed)
    runs = _runs(np.asarray(members), chunk_rows)
    shuffled = [runs[i] for i in rng.permutation(len(runs))]
    pending = np.zeros((0, 0), np.float32)
    position = 0
    while position < len(shuffled):
        frames, position = _fill(source, shuffled, position, buffer_frames)
        frames = frames[rng.permutation(len(frames))]
        if len(pending):
            frames = np.concatenate([pending, frames])
        full = len(frames) // batch_size * batch_size
        yield from (frames[start : start + batch_size] for start in range(0, full, batch_size))
        pending = frames[full:]
    if len(pending):
        yield pending


def windows_of(batches: Iterator[np.ndarray], *, rows: int, steps: int) -> Iterator[Window]:
    """Batches grouped `steps` at a time into (steps, rows, features) blocks with their
    masks; short batches and the last window are padded with masked rows and steps."""
    block: np.ndarray | None = None
    masks = np.zeros((steps, rows), np.float32)
    filled = 0
    for batch in batches:
        if block is None:
            block = np.zeros((steps, rows, batch.shape[1]), np.float32)
        block[filled, : len(batch)] = batch
        masks[filled, : len(batch)] = 1.0
        filled += 1
        if filled == steps:
            yield block, masks
            block, masks, filled = None, np.zeros((steps, rows), np.float32), 0
    if filled and block is not None:
        yield block, masks


def prefetch(items: Iterator[Window], depth: int = 2) -> Iterator[Window]:
    """`items` read ahead by up to `depth` in a thread (reads overlap the device's
    work); an error in the reader is raised here."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def read() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                slots.put(item)
        except BaseException as error:  # noqa: BLE001 (handed to the consumer)
            slots.put(error)
            return
        slots.put(done)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        while (item := slots.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while reader.is_alive():  # let a blocked put finish
            try:
                slots.get_nowait()
            except queue.Empty:
                reader.join(0.01)


def run_streamed_epoch(
    trainer: Trainer,
    state: TrainState,
    windows: Callable[[jax.Array], Iterator[Window]],
    beta: jax.Array,
    *,
    key: jax.Array,
    shift: jax.Array | np.ndarray,
    scale: jax.Array | np.ndarray,
) -> tuple[TrainState, EpochMetrics]:
    """One epoch from `windows(order_key)`, the epoch's windows of raw frames in the
    order the key gives; normalized on the device by (shift, scale). Returns what
    `trainer.run_epoch` returns."""
    carry, order_key, step_keys = trainer.start(state, key)
    batches = trainer.batches_per_epoch
    sums = None
    done = 0
    for block, masks in windows(order_key):
        steps = np.arange(done, done + len(block))
        keys = step_keys[np.minimum(steps, batches - 1)]  # padding steps do nothing
        carry, part = trainer.run_window(
            carry, block, masks, keys, np.asarray(steps, np.int32), beta, state.lr_scale,
            shift, scale,
        )  # fmt: skip
        sums = part if sums is None else jax.tree.map(jnp.add, sums, part)
        done += len(block)
    if done < batches:
        raise RuntimeError(f"the stream ended after {done} of {batches} batches")
    return trainer.finish(state, carry, sums)


def seed_of(order_key: jax.Array) -> np.random.SeedSequence:
    """A NumPy seed from an epoch's order key (the host's shuffles follow the key)."""
    return np.random.SeedSequence(np.asarray(jax.random.key_data(order_key)).tolist())
