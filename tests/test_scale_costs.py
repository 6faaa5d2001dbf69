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
    np.testing.assert_allclose(std, x.astype(np.float64).std(axis=0), rtol=1e-9, atol=1e-9)
    index = np.sort(rng.choice(1000, 333, replace=False))
    mean, std = compute_moments(x, index)
    np.testing.assert_allclose(mean, x[index].astype(np.float64).mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, x[index].astype(np.float64).std(axis=0), rtol=1e-9, atol=1e-9)
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
    x64, r64 = x[index].astype(np.float64), recon[index].astype(np.float64)
    expected = 1 - np.sum((x64 - r64) ** 2) / np.sum((x64 - centre) ** 2)
    assert whole == pytest.approx(expected, rel=1e-12)


def test_one_chunk_is_bit_identical_to_numpy():
    x = np.random.default_rng(1).normal(size=(500, 4)).astype(np.float32)
    mean, std = compute_moments(x)
    assert np.array_equal(mean, x.astype(np.float64).mean(axis=0))
    assert np.array_equal(std, x.astype(np.float64).std(axis=0))


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
    assert structure._spread(10, 50).tolist() == list(range(10))
    picked = structure._spread(1000, 50)
    assert len(picked) == 50 and picked[0] == 0 and picked[-1] == 999
