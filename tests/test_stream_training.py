"""Training fed from the host a window at a time (streaming): the windowed epoch is
the in-memory epoch when given the same order; the chunk-shuffled stream gives every
frame once, reads only contiguous runs, and follows its seed."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaetraj.model import ModelConfig, fit_normalization
from vaetraj.training import (
    Frames,
    TrainConfig,
    make_trainer,
    prefetch,
    run_streamed_epoch,
    seed_of,
    stream_batches,
    windows_of,
)
from vaetraj.training._trainer import _batch_layout


def _setup(polymer_2d, batch_size=32):
    flat = polymer_2d.reshape(len(polymer_2d), -1).astype(np.float32)
    members = np.setdiff1d(np.arange(len(flat)), np.arange(100, 140))
    mean, std = fit_normalization(flat, index=members)
    config = ModelConfig(features=flat.shape[1], hidden=16, layers=2)
    trainer = make_trainer(config, TrainConfig(batch_size=batch_size), frames=len(members))
    return flat, members, mean, std, trainer


@pytest.mark.slow
@pytest.mark.parametrize("steps", [7])
def test_a_windowed_epoch_in_the_in_memory_order_is_the_in_memory_epoch(polymer_2d, steps):
    flat, members, mean, std, trainer = _setup(polymer_2d)
    state = trainer.init(key=jax.random.key(0))
    key, beta = jax.random.key(3), jnp.float32(0.5)
    frames = Frames(jnp.asarray(flat), jnp.asarray(members), jnp.asarray(mean), jnp.asarray(std))
    frames_in, size = len(members), 32
    plan = SimpleNamespace(
        frames=frames_in, batches=-(-frames_in // size), batch_size=size, rows=trainer.rows
    )

    def in_memory_order(order_key):
        index, mask = (np.asarray(a) for a in _batch_layout(plan, order_key))
        batches = (flat[members[i[m > 0]]] for i, m in zip(index, mask, strict=True))
        return windows_of(batches, rows=plan.rows, steps=steps)

    for _ in range(2):  # two epochs: the state carries over alike
        expected, metrics = trainer.run_epoch(state, frames, beta, key=key)
        state, streamed = run_streamed_epoch(
            trainer, state, in_memory_order, beta, key=key, shift=mean, scale=std
        )
        for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(state), strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
        for a, b in zip(metrics, streamed, strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    assert int(state.epoch) == 2


class _Reads:
    """An array that records the slices read from it."""

    def __init__(self, array):
        self.array, self.reads = array, []

    def __getitem__(self, part):
        assert isinstance(part, slice)
        self.reads.append((part.start, part.stop))
        return self.array[part]


def test_the_stream_gives_every_member_once_from_contiguous_chunk_reads():
    frames = np.arange(1000, dtype=np.float32)[:, None, None] * np.ones((1, 2, 3), np.float32)
    members = np.setdiff1d(np.arange(1000), np.arange(300, 350))
    source = _Reads(frames)
    batches = list(
        stream_batches(source, members, batch_size=64, chunk_rows=100, buffer_frames=250, seed=1)
    )
    seen = np.concatenate([b[:, 0] for b in batches]).astype(int)
    assert sorted(seen.tolist()) == members.tolist()
    assert [len(b) for b in batches[:-1]] == [64] * (len(batches) - 1)
    assert len(batches) == -(-len(members) // 64)
    # each read is one file chunk's run of members, none spans two chunks
    for start, stop in source.reads:
        assert start // 100 == (stop - 1) // 100
    assert len(source.reads) == 10
    # shuffled beyond a chunk: a batch mixes frames of several chunks
    assert len(np.unique(seen[:64] // 100)) > 1
    # the same seed gives the same order; another seed another
    again = np.concatenate(
        [b[:, 0] for b in stream_batches(frames, members, batch_size=64, chunk_rows=100,
                                          buffer_frames=250, seed=1)]
    )  # fmt: skip
    other = np.concatenate(
        [b[:, 0] for b in stream_batches(frames, members, batch_size=64, chunk_rows=100,
                                          buffer_frames=250, seed=2)]
    )  # fmt: skip
    np.testing.assert_array_equal(again, seen)
    assert not np.array_equal(other, seen)


def test_windows_pad_with_masked_rows_and_steps():
    batches = [np.ones((4, 3), np.float32)] * 5 + [np.ones((2, 3), np.float32)]
    windows = list(windows_of(iter(batches), rows=4, steps=4))
    assert [w[0].shape for w in windows] == [(4, 4, 3), (4, 4, 3)]
    np.testing.assert_array_equal(windows[1][1], [[1, 1, 1, 1], [1, 1, 0, 0], [0] * 4, [0] * 4])
    assert windows[1][0][1, 2:].sum() == 0


def test_prefetch_keeps_order_and_raises_the_readers_error():
    assert list(prefetch(iter(range(10)), depth=2)) == list(range(10))

    def broken():
        yield 1
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        list(prefetch(broken()))


@pytest.mark.slow
def test_streamed_training_learns_like_in_memory_training(polymer_2d):
    """Several epochs from the chunk-shuffled stream reach the in-memory run's loss
    within noise (the orders differ; the distribution does not)."""
    flat, members, mean, std, trainer = _setup(polymer_2d)
    beta, key = jnp.float32(0.5), jax.random.key(4)
    frames = Frames(jnp.asarray(flat), jnp.asarray(members), jnp.asarray(mean), jnp.asarray(std))

    def stream(order_key):
        batches = stream_batches(
            flat.reshape(len(flat), -1, 2), members, batch_size=32, chunk_rows=16,
            buffer_frames=96, seed=seed_of(order_key),
        )  # fmt: skip
        return prefetch(windows_of(batches, rows=trainer.rows, steps=5))

    memory = streamed = trainer.init(key=jax.random.key(0))
    losses = {"memory": [], "streamed": []}
    for _ in range(12):
        memory, m = trainer.run_epoch(memory, frames, beta, key=key)
        streamed, s = run_streamed_epoch(
            trainer, streamed, stream, beta, key=key, shift=mean, scale=std
        )
        losses["memory"].append(float(m.loss))
        losses["streamed"].append(float(s.loss))
    first, last = losses["memory"][0], losses["memory"][-1]
    assert last < 0.8 * first  # it learns
    assert losses["streamed"][-1] == pytest.approx(last, rel=0.1)


# -- the pipeline: an aligned file over the memory budget is streamed ------------------

_SMALL = ModelConfig(hidden=32, layers=2, latent_dim=2)


@pytest.fixture(scope="module")
def aligned_file(tmp_path_factory, polymer_2d):
    from vaetraj.pipeline.align import align_file

    folder = tmp_path_factory.mktemp("streamed")
    np.save(folder / "raw.npy", polymer_2d)
    align_file([folder / "raw.npy"], folder / "aligned.h5")
    return folder / "aligned.h5"


def _config(**changes):
    settings = dict(epochs=6, batch_size=32, seed=0, checkpoint_every=0, min_explained=0)
    return TrainConfig(**{**settings, **changes})


@pytest.mark.slow
def test_a_file_over_the_budget_is_streamed_and_trains_like_in_memory(tmp_path, aligned_file):
    from vaetraj.pipeline.train import train_file

    budget = 8_000  # bytes: a fifth of the file's frames
    streamed = train_file([aligned_file], tmp_path / "s.h5", _SMALL, _config(),
                          memory_budget=budget)  # fmt: skip
    memory = train_file([aligned_file], tmp_path / "m.h5", _SMALL, _config())
    assert streamed.streamed and not memory.streamed
    assert any("streamed from" in note and "memory budget" in note for note in streamed.notes)
    assert (streamed.train_frames, streamed.val_frames) == (memory.train_frames, memory.val_frames)
    # the same frames and normalization, other batch orders: the same outcome within noise
    assert streamed.train_loss == pytest.approx(memory.train_loss, rel=0.1)
    assert streamed.val_loss == pytest.approx(memory.val_loss, rel=0.1)
    assert streamed.explained_variance_train == pytest.approx(
        memory.explained_variance_train, abs=0.05
    )


@pytest.mark.slow
def test_streamed_resume_is_exact_and_needs_the_same_budget(tmp_path, aligned_file):
    from vaetraj.errors import InterruptedRunError, UsageError
    from vaetraj.pipeline.model import load_model
    from vaetraj.pipeline.train import train_file

    budget = 8_000
    whole = tmp_path / "whole.h5"
    train_file([aligned_file], whole, _SMALL, _config(epochs=4), memory_budget=budget)

    def stop_after_two(done, total, phase, detail=""):
        if done == 2:
            raise KeyboardInterrupt

    resumed = tmp_path / "resumed.h5"
    with pytest.raises(InterruptedRunError):
        train_file([aligned_file], resumed, _SMALL, _config(epochs=4), memory_budget=budget,
                   progress=stop_after_two)  # fmt: skip
    with pytest.raises(UsageError, match="data layout.*memory_budget"):
        train_file([aligned_file], resumed, _SMALL, _config(epochs=4), memory_budget=2 * budget,
                   resume=True)  # fmt: skip
    train_file([aligned_file], resumed, _SMALL, _config(epochs=4), memory_budget=budget,
               resume=True)  # fmt: skip
    a, b = load_model(whole), load_model(resumed)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.history["loss"], b.history["loss"])


def test_frames_on_disk_read_as_the_array(aligned_file):
    from vaetraj.io.aligned import open_aligned, read_aligned

    whole = read_aligned(aligned_file).xyz
    frames = open_aligned(aligned_file).xyz
    try:
        frames.block_rows = 7  # many spans per read
        assert frames.shape == whole.shape and len(frames) == len(whole)
        np.testing.assert_array_equal(frames[3:40], whole[3:40])
        np.testing.assert_array_equal(frames[5], whole[5])
        for rows in (np.array([3, 4, 90, 91, 250]), np.array([250, 3, 91, 3])):
            np.testing.assert_array_equal(frames[rows], whole[rows])
        flat = frames.reshape(len(frames), -1)
        np.testing.assert_array_equal(flat[[1, 8]], whole.reshape(len(whole), -1)[[1, 8]])
        assert flat.nbytes == whole.nbytes
    finally:
        frames.close()


def test_a_non_finite_frame_on_disk_is_refused_naming_it(tmp_path, aligned_file):
    import shutil

    import h5py

    from vaetraj.errors import BadInputError
    from vaetraj.io.aligned import open_aligned

    damaged = tmp_path / "damaged.h5"
    shutil.copy(aligned_file, damaged)
    with h5py.File(damaged, "r+") as handle:
        handle["xyz"][123, 4, 1] = np.nan
    with pytest.raises(BadInputError, match=r"/xyz holds nan at index \[123, 4, 1\]"):
        open_aligned(damaged)


@pytest.mark.parametrize(
    ("budget", "fragment"),
    [("12XB", "cannot read '12XB' as a size"), ("10KB", "below the least budget of 1MB"),
     ("-5GB", "below the least budget"), ("nan", "cannot read"), ("inf", "cannot read")],
)  # fmt: skip
def test_a_bad_memory_budget_is_one_line_and_writes_nothing(tmp_path, aligned_file, budget,
                                                            fragment):  # fmt: skip
    from conftest import assert_error, run

    model = tmp_path / "model.h5"
    result = run("train", aligned_file, "-o", model, "--epochs", "1", "--memory-budget", budget)
    assert_error(result, 2, "--memory-budget", fragment)
    assert not model.exists()


def test_a_time_lagged_model_over_the_budget_is_refused(tmp_path, aligned_file):
    from vaetraj.errors import UsageError
    from vaetraj.pipeline.train import train_file

    model = tmp_path / "model.h5"
    with pytest.raises(UsageError, match="lag trains on frames held in memory") as refused:
        train_file([aligned_file], model, _SMALL, _config(lag=2), memory_budget=8_000)
    assert refused.value.path == str(aligned_file)
    assert not model.exists()


def test_sizes_read_as_decimal_and_binary_units():
    from vaetraj._memory import parse_size

    assert parse_size("64MB") == 64_000_000
    assert parse_size("2GB") == 2_000_000_000
    assert parse_size("512MiB") == 512 << 20
    assert parse_size(" 1.5 gb ") == 1_500_000_000
    assert parse_size("3000000") == 3_000_000
