"""What training does outside its epochs is bounded: moments in float64 chunks, the
latent density on at most a capped number of draws, the geometry terms on an even
spread of frames (R_g over all). Each against the whole-array computation."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from vaetraj.model import _normalize, compute_moments, fit_normalization


def test_chunked_moments_match_numpy_across_chunks(monkeypatch):
    monkeypatch.setattr(_normalize, "_CHUNK", 37)  # many chunks of uneven sizes
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(1000, 6)) * [1, 10, 1e-3, 5, 0, 2] + [0, 1e4, 3, -2, 7, 0]).astype(
        np.float32
    )
    mean, std = compute_moments(x)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=0), rtol=1e-12, atol=1e-9)
    # squares rounded to float32 (the normalization is stored in float32 anyway)
    np.testing.assert_allclose(std, x.astype(np.float64).std(axis=0), rtol=1e-7, atol=1e-9)
    index = np.sort(rng.choice(1000, 333, replace=False))
    mean, std = compute_moments(x, index)
    np.testing.assert_allclose(mean, x[index].astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, x[index].astype(np.float64).std(axis=0), rtol=1e-7, atol=1e-9)
    # the constant column is only centred
    assert fit_normalization(x, index=index).std[4] == 1.0


def test_explained_variance_summed_in_chunks_matches_the_whole(monkeypatch):
    from vaetraj.model import _diagnostics, compute_explained_variance

    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 4, 3)).astype(np.float32)
    recon = x + 0.2 * rng.normal(size=x.shape).astype(np.float32)
    centre = x.mean(axis=0, dtype=np.float64)
    index = np.sort(rng.choice(500, 321, replace=False))
    whole = compute_explained_variance(x, recon, centre, index)
    monkeypatch.setattr(_diagnostics, "_CHUNK", 29)
    assert compute_explained_variance(x, recon, centre, index) == pytest.approx(whole, rel=1e-12)
    # squares in float32, sums in float64: within float32 rounding of a float64 pass
    x64, r64 = x[index].astype(np.float64), recon[index].astype(np.float64)
    expected = 1 - np.sum((x64 - r64) ** 2) / np.sum((x64 - centre) ** 2)
    assert whole == pytest.approx(expected, rel=1e-7)


def test_one_chunk_mean_is_bit_identical_to_numpy_and_std_within_float32_rounding():
    x = np.random.default_rng(1).normal(size=(500, 4)).astype(np.float32) + 100
    mean, std = compute_moments(x)
    assert np.array_equal(mean, x.astype(np.float64).mean(axis=0))
    np.testing.assert_allclose(std, x.astype(np.float64).std(axis=0), rtol=1e-7)
    # float64 rows take the float64 path: bit-identical
    x64 = x.astype(np.float64) + 1e-3 * np.arange(500)[:, None]
    assert np.array_equal(compute_moments(x64)[1], x64.std(axis=0))


def test_the_latent_density_is_fitted_to_a_capped_number_of_draws(monkeypatch):
    from vaetraj.pipeline import assess

    monkeypatch.setattr(assess, "_DENSITY_MAX_POINTS", 400)
    assert assess._density_sample(50) == (50, 4)
    assert assess._density_sample(150) == (150, 2)
    assert assess._density_sample(5000) == (400, 1)
    rng = np.random.default_rng(2)
    centres = np.array([[-4.0, 0.0], [4.0, 0.0]])
    mean = centres[rng.integers(0, 2, 5000)] + 0.1 * rng.normal(size=(5000, 2))
    std = np.full_like(mean, 0.1)
    density = assess.fit_density(mean, std, 2, key=jax.random.key(0))
    # the two clusters are found from 400 of the 5000 frames
    found = np.sort(density["means"][:, 0])
    np.testing.assert_allclose(found, [-4.0, 4.0], atol=0.1)
    np.testing.assert_allclose(density["weights"], [0.5, 0.5], atol=0.1)


def test_geometry_terms_on_a_spread_of_frames_keep_every_frames_rg_range(monkeypatch, polymer_2d):
    from vaetraj.pipeline import structure

    full = structure.compute_data_stats(polymer_2d, None, None)
    assert full.measured_frames == len(polymer_2d)
    monkeypatch.setattr(structure, "MAX_MEASURED_FRAMES", 50)
    spread = structure.compute_data_stats(polymer_2d, None, None)
    assert spread.measured_frames == 50
    # R_g is every frame's (cheap); bonds are measured on 50 frames spread evenly
    assert spread.rg_min == pytest.approx(full.rg_min, rel=1e-6)
    assert spread.rg_max == pytest.approx(full.rg_max, rel=1e-6)
    np.testing.assert_allclose(spread.bond_mean, full.bond_mean, rtol=0.05)
    assert structure.spread_frames(10, 50).tolist() == list(range(10))
    picked = structure.spread_frames(1000, 50)
    assert len(picked) == 50 and picked[0] == 0 and picked[-1] == 999


def test_an_aligned_file_is_trained_on_without_a_copy_on_the_cpu(tmp_path, polymer_2d):
    """read_aligned reads into a 64-byte aligned buffer, which place_rows gives JAX's
    CPU client as it is: the device array is the host's memory (held once)."""
    from vaetraj.io.aligned import read_aligned
    from vaetraj.pipeline.align import align_file
    from vaetraj.training import place_rows

    np.save(tmp_path / "raw.npy", polymer_2d)
    align_file([tmp_path / "raw.npy"], tmp_path / "aligned.h5")
    xyz = read_aligned(tmp_path / "aligned.h5").xyz
    flat = xyz.reshape(len(xyz), -1)
    rows = place_rows(flat)
    if jax.default_backend() == "cpu":
        assert rows.unsafe_buffer_pointer() == flat.ctypes.data
    np.testing.assert_array_equal(np.asarray(rows), flat)
    # a table off the 64-byte boundary is copied, with the same values
    buffer = np.zeros(flat.size * 4 + 128, np.uint8)
    start = (-buffer.ctypes.data % 64) + 4
    odd = buffer[start : start + flat.size * 4].view(np.float32).reshape(flat.shape)
    odd[:] = flat
    copied = place_rows(odd)
    assert copied.unsafe_buffer_pointer() != odd.ctypes.data
    np.testing.assert_array_equal(np.asarray(copied), flat)


@pytest.mark.slow
def test_batches_normalized_in_the_epoch_match_a_normalized_copy(polymer_2d):
    """Frames(rows, members, shift, scale) trains as the normalized copy of its members
    does (the data are not copied to be normalized)."""
    import jax.numpy as jnp

    from vaetraj.model import ModelConfig, fit_normalization
    from vaetraj.training import Frames, TrainConfig, make_trainer

    flat = polymer_2d.reshape(len(polymer_2d), -1).astype(np.float32)
    members = np.arange(0, len(flat), 3)
    mean, std = fit_normalization(flat, index=members)
    config = ModelConfig(features=flat.shape[1], hidden=16, layers=2)
    trainer = make_trainer(config, TrainConfig(batch_size=32), frames=len(members))
    state = trainer.init(key=jax.random.key(0))
    frames = Frames(jnp.asarray(flat), jnp.asarray(members), jnp.asarray(mean), jnp.asarray(std))
    copy = jnp.asarray((flat[members] - mean) / std)
    beta, key = jnp.float32(0.5), jax.random.key(1)
    (a, metrics_a), (b, metrics_b) = (
        trainer.run_epoch(state, data, beta, key=key) for data in (frames, copy)
    )
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert float(metrics_a.loss) == pytest.approx(float(metrics_b.loss), rel=1e-5)
    val_a = trainer.evaluate(a.params, frames, beta, key=key)
    val_b = trainer.evaluate(a.params, copy, beta, key=key)
    assert float(val_a.loss) == pytest.approx(float(val_b.loss), rel=1e-5)


def test_assessment_in_small_chunks_matches_one_chunk(monkeypatch, model_2d, polymer_2d):
    """The figures summed chunk by chunk (no decoded copy held) do not depend on the
    chunk size."""
    from vaetraj.model import compute_explained_variance
    from vaetraj.pipeline import assess
    from vaetraj.pipeline.model import load_model

    model = load_model(model_2d)
    frames = polymer_2d.astype(np.float32)
    cut = 3 * len(frames) // 4
    train_index, val_index = np.arange(cut), np.arange(cut, len(frames))
    sample = np.arange(1, len(frames), 3)  # the frames whose std is kept
    whole = assess._reconstruct(model, frames, train_index, val_index, None, sample)
    monkeypatch.setattr(assess, "_CHUNK", 37)
    parts = assess._reconstruct(model, frames, train_index, val_index, None, sample)
    for name, value in whole.fields.items():
        if isinstance(value, float):
            assert parts.fields[name] == pytest.approx(value, rel=1e-6), name
    np.testing.assert_allclose(parts.per_atom, whole.per_atom, rtol=1e-6)
    # within float32's rounding: on some CPUs XLA picks another matrix kernel for
    # another number of rows, and the last bit of an encoded mean moves
    np.testing.assert_allclose(parts.density_mean, whole.density_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(parts.fields["kl_per_dim"], whole.fields["kl_per_dim"], rtol=1e-6)
    mean, std = model.encode(frames)
    np.testing.assert_array_equal(whole.density_mean, mean[sample])
    np.testing.assert_array_equal(whole.density_std, std[sample])
    np.testing.assert_allclose(parts.density_std, std[sample], rtol=1e-5, atol=1e-6)
    # the KL per dimension against its closed form over the training frames
    m, v = mean[train_index].astype(np.float64), std[train_index].astype(np.float64)
    kl = np.mean(0.5 * (m**2 + v**2 - 1) - np.log(v), axis=0)
    np.testing.assert_allclose(whole.fields["kl_per_dim"], kl, rtol=1e-5)
    # against the whole decoded copy, summed by the reference definition
    flat = frames.reshape(len(frames), -1)
    decoded = model.decode(model.encode(frames)[0]).reshape(len(frames), -1)
    centre = flat[train_index].astype(np.float64).mean(axis=0)
    expected = compute_explained_variance(
        flat.astype(np.float64), decoded.astype(np.float64), centre, train_index
    )
    assert whole.fields["explained_variance_train"] == pytest.approx(expected, rel=1e-6)
    rmsd = np.sqrt(np.mean(np.sum((decoded - flat).reshape(frames.shape) ** 2, -1), 1))
    assert whole.fields["recon_rmsd_val"] == pytest.approx(rmsd[val_index].mean(), rel=1e-6)


def test_anchor_frames_by_partition_match_the_sorted_order():
    """The R_g anchors are found by a partition (no index array as long as the frames):
    the same frames as ranking a stable sort."""
    from vaetraj.pipeline.structure import _rank_frames

    rng = np.random.default_rng(0)
    for frames in (1, 2, 7, 300, 20_000):
        rg = rng.random(frames).astype(np.float32)
        count = min(256, frames)
        order = np.argsort(rg, kind="stable")
        expected = order[np.unique(np.linspace(0, frames - 1, count).round().astype(int))]
        np.testing.assert_array_equal(_rank_frames(rg, count), expected)
    # equal values: the first of them
    np.testing.assert_array_equal(_rank_frames(np.ones(10, np.float32), 3), [0, 0, 0])
