"""Which frames train and which validate: contiguous blocks within each trajectory.

Frames of a trajectory are correlated in time, so a validation frame picked at random
has near-copies among the training frames and the validation loss flatters the model.
Holding out whole blocks of consecutive frames measures what the model does on frames
it has not seen the like of. The blocks are spread over each trajectory (one per equal
segment, at a seeded offset inside it) so that every region a trajectory visits, say
both ends of a transition path, is trained on and validated on alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def split_blocks(
    lengths: Sequence[int], val_fraction: float, *, blocks: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) frame indices, sorted, into the concatenated trajectories.

    lengths: frames of each trajectory in order; no block crosses from one to the next.
    Each trajectory holds out round(val_fraction * length) frames in `blocks` contiguous
    blocks (fewer when it has fewer validation frames than that). At least one frame
    validates when val_fraction > 0, and at least one trains.
    """
    lengths = [int(n) for n in lengths]
    total = sum(lengths)
    if total < 2 or val_fraction <= 0:
        return np.arange(total), np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    counts = [int(round(n * val_fraction)) for n in lengths]
    if sum(counts) == 0:  # every trajectory too short for its share: the longest gives one
        counts[int(np.argmax(lengths))] = 1
    held = np.zeros(total, bool)
    start = 0
    for length, count in zip(lengths, counts, strict=True):
        count = min(count, length - 1) if len(lengths) == 1 else min(count, length)
        for first, size in _blocks_in(length, count, min(blocks, count), rng):
            held[start + first : start + first + size] = True
        start += length
    if held.all():  # several trajectories, each wholly held out: train on the first frame
        held[0] = False
    return np.flatnonzero(~held), np.flatnonzero(held)


def _blocks_in(length: int, count: int, blocks: int, rng: np.random.Generator):
    """`blocks` runs totalling `count` frames in a trajectory of `length`: one per equal
    segment, at a random place inside it."""
    if count <= 0 or blocks <= 0:
        return
    edges = np.linspace(0, length, blocks + 1).round().astype(int)
    sizes = np.full(blocks, count // blocks)
    sizes[: count % blocks] += 1
    for (low, high), size in zip(zip(edges[:-1], edges[1:], strict=True), sizes, strict=True):
        room = max(high - low - size, 0)
        yield low + int(rng.integers(room + 1)), int(min(size, high - low))


def lagged_pairs(
    lengths: Sequence[int], members: np.ndarray, lag: int
) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets): the frames t of `members` (sorted indices into the
    concatenated trajectories) whose frame t + lag is a member too and lies in the same
    trajectory, and those frames t + lag. A pair never crosses from one trajectory to
    the next, nor from a training block to a validation block. lag 0: every member,
    paired with itself."""
    members = np.asarray(members, np.int64)
    if lag < 0:
        raise ValueError(f"lag must be >= 0, got {lag}")
    if lag == 0:
        return members, members
    sizes = np.asarray([int(n) for n in lengths], np.int64)
    trajectory = np.repeat(np.arange(len(sizes)), sizes)
    member = np.zeros(len(trajectory), bool)
    member[members] = True
    targets = members + lag
    inside = targets < len(trajectory)
    ok = np.zeros(len(members), bool)
    ok[inside] = member[targets[inside]] & (
        trajectory[targets[inside]] == trajectory[members[inside]]
    )
    return members[ok], targets[ok]
