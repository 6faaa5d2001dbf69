"""The validation split: contiguous blocks inside each trajectory, never across two."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from vaetraj.training import split_blocks


def _runs(index: np.ndarray) -> list[tuple[int, int]]:
    """[first, last + 1) of each run of consecutive values."""
    if len(index) == 0:
        return []
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    return [(int(r[0]), int(r[-1]) + 1) for r in np.split(index, breaks)]


def test_one_trajectory_holds_out_contiguous_blocks_spread_over_it():
    train, val = split_blocks([2000], 0.1, blocks=5, seed=0)
    assert len(val) == 200 and len(train) == 1800
    runs = _runs(val)
    assert len(runs) == 5 and all(b - a == 40 for a, b in runs)
    # one block in each fifth of the trajectory: both ends of a path are validated
    assert [a // 400 for a, _ in runs] == [0, 1, 2, 3, 4]
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(2000))


def test_blocks_stay_inside_their_trajectory_and_each_gives_its_share():
    lengths = [300, 50, 1000]
    train, val = split_blocks(lengths, 0.2, blocks=4, seed=3)
    edges = np.cumsum([0, *lengths])
    for first, stop in zip(edges[:-1], edges[1:], strict=True):
        inside = val[(val >= first) & (val < stop)]
        assert len(inside) == round(0.2 * (stop - first))
        for a, b in _runs(inside):
            assert first <= a and b <= stop
    # a block never runs from one trajectory into the next, even when both touch the edge
    for a, b in _runs(val):
        assert not any(a < e < b for e in edges)


def test_the_split_is_seeded_and_a_seed_changes_it():
    a = split_blocks([500], 0.1, blocks=3, seed=1)
    b = split_blocks([500], 0.1, blocks=3, seed=1)
    c = split_blocks([500], 0.1, blocks=3, seed=2)
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])


def test_tiny_and_empty_validation():
    assert [len(part) for part in split_blocks([2], 0.1, blocks=5, seed=0)] == [1, 1]
    train, val = split_blocks([100], 0.0, blocks=5, seed=0)
    assert len(val) == 0 and len(train) == 100
    # many short trajectories, each too short for its share: still one validation frame
    train, val = split_blocks([3] * 4, 0.1, blocks=5, seed=0)
    assert len(val) == 1 and len(train) == 11


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 300), min_size=1, max_size=6),
    fraction=st.floats(0.01, 0.9),
    blocks=st.integers(1, 8),
    seed=st.integers(0, 5),
)
def test_split_is_a_partition_with_at_most_blocks_runs_per_trajectory(
    lengths, fraction, blocks, seed
):
    total = sum(lengths)
    train, val = split_blocks(lengths, fraction, blocks=blocks, seed=seed)
    assert len(np.intersect1d(train, val)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(total))
    if total >= 2:
        assert len(train) >= 1 and len(val) >= 1
    edges = np.cumsum([0, *lengths])
    for first, stop in zip(edges[:-1], edges[1:], strict=True):
        inside = val[(val >= first) & (val < stop)]
        assert len(_runs(inside)) <= blocks
