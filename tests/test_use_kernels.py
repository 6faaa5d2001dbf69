"""Kernels behind encode/sample/optimize/evaluate, against independent references."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import mdtraj as md
import numpy as np
import pytest
from conftest import random_rotation
from scipy.stats import norm, wasserstein_distance

from vaetraj.io.topology import polymer_topology
from vaetraj.metrics import compute_wasserstein_1d
from vaetraj.model import (
    ModelConfig,
    compute_aggregate_log_density,
    compute_elbo_terms,
    compute_importance_weighted_bound,
    compute_log_likelihood,
    decode_frame,
    init_vae,
)
from vaetraj.optim import LatentGoal, make_latent_optimizer, make_objective


@pytest.mark.parametrize("sizes", [(50, 50), (100, 37), (3, 200)])
def test_wasserstein_matches_scipy(sizes):
    rng = np.random.default_rng(sum(sizes))
    a, b = rng.normal(size=sizes[0]), rng.gamma(2.0, size=sizes[1])
    ours = float(compute_wasserstein_1d(jnp.asarray(a), jnp.asarray(b)))
    assert ours == pytest.approx(wasserstein_distance(a, b), rel=1e-5)


def test_wasserstein_of_a_shift_is_the_shift():
    a = np.random.default_rng(0).normal(size=500)
    assert float(compute_wasserstein_1d(jnp.asarray(a), jnp.asarray(a + 0.3))) == pytest.approx(
        0.3, rel=1e-5
    )


def test_rg_objective_matches_mdtraj():
    """Equal masses: mdtraj.compute_rg exactly. With masses, mdtraj centres on the
    geometric centre, not the centre of mass; by the parallel-axis theorem
    R_g(com)^2 = R_g(mdtraj)^2 - |com - centre|^2."""
    rng = np.random.default_rng(2)
    xyz = rng.normal(size=(7, 3)).astype(np.float32)
    trajectory = md.Trajectory(xyz[None], polymer_topology(7))
    equal = make_objective("rg", weights=np.full(7, 1 / 7))
    assert float(equal(jnp.asarray(xyz))) == pytest.approx(md.compute_rg(trajectory)[0], rel=1e-5)
    masses = rng.uniform(1, 16, size=7)
    weights = masses / masses.sum()
    weighted = make_objective("rg", weights=weights)
    shift = np.sum((weights @ xyz - xyz.mean(0)) ** 2)
    expected = np.sqrt(md.compute_rg(trajectory, masses=masses)[0] ** 2 - shift)
    assert float(weighted(jnp.asarray(xyz))) == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
def test_distance_end_to_end_and_rmsd_objectives():
    rng = np.random.default_rng(3)
    xyz = rng.normal(size=(8, 3)).astype(np.float32)
    weights = np.full(8, 1 / 8)
    end = make_objective("end-to-end", weights=weights)
    assert float(end(jnp.asarray(xyz))) == pytest.approx(np.linalg.norm(xyz[7] - xyz[0]), rel=1e-5)
    groups = (np.array([0, 1]), np.array([5, 6, 7]))
    distance = make_objective("distance", weights=weights, groups=groups)
    expected = np.linalg.norm(xyz[:2].mean(0) - xyz[5:].mean(0))
    assert float(distance(jnp.asarray(xyz))) == pytest.approx(expected, rel=1e-5)
    # rmsd to a rotated, shifted, slightly perturbed copy: the superposed RMSD is the noise
    rotation = random_rotation(rng, 3)
    noise = rng.normal(scale=0.01, size=xyz.shape)
    target = (xyz + noise) @ rotation.T + 5.0
    rmsd = make_objective("rmsd", weights=weights, target=target)
    mobile = md.Trajectory(xyz[None], polymer_topology(8))
    reference = md.Trajectory(target[None].astype(np.float32), polymer_topology(8))
    assert float(rmsd(jnp.asarray(xyz))) == pytest.approx(md.rmsd(mobile, reference)[0], abs=1e-4)


def test_latent_optimizer_finds_known_minimum_and_respects_trust_region():
    # decode(z) = a chain whose size grows with |z - c|: R_g is smallest at z = c
    c = jnp.array([1.5, -0.5])
    base = jnp.asarray(np.stack([np.arange(5.0), np.zeros(5)], 1), dtype=jnp.float32)

    def decode(z):
        return base * (0.2 + jnp.sum((z - c) ** 2))

    objective = make_objective("rg", weights=np.full(5, 0.2))

    def log_density(z):  # N(0, I)
        return -0.5 * jnp.sum(z**2) - math.log(2 * math.pi)

    run = make_latent_optimizer(decode, objective, log_density, steps=400, learning_rate=0.05)
    start = 0.3 * jax.random.normal(jax.random.key(0), (16, 2))  # inside the trust region
    free = LatentGoal(*(jnp.float32(v) for v in (1.0, 0.0, 0.0, 1.0, 0.0, -100.0)))
    free = free._replace(has_target=jnp.bool_(False))
    result = run(start, free)
    assert np.allclose(np.asarray(result.z), np.asarray(c), atol=1e-2)
    assert result.path.shape == (41, 16, 2) and result.value.shape == (400, 16)
    # a trust region log p >= -2.2 (|z| <= ~0.94) stops short of c, on its boundary
    bounded = free._replace(trust_weight=jnp.float32(100.0), threshold=jnp.float32(-2.2))
    result = run(start, bounded)
    radius = np.linalg.norm(np.asarray(result.z), axis=1)
    boundary = math.sqrt(2 * (2.2 - math.log(2 * math.pi)))
    assert np.all(radius < boundary + 0.05) and np.all(radius > boundary - 0.1)
    # a target value is reached
    aimed = free._replace(has_target=jnp.bool_(True), target=jnp.float32(2.0))
    values = np.asarray(run(start, aimed).value[-1])
    assert np.allclose(values, 2.0, atol=1e-3)


@pytest.mark.parametrize("likelihood", ["mse", "gaussian"])
def test_log_likelihood_is_a_normalized_gaussian(likelihood):
    config = ModelConfig(features=5, likelihood=likelihood, decoder_std=0.7)
    rng = np.random.default_rng(4)
    x, mean = rng.normal(size=5), rng.normal(size=5)
    std = 0.7 if likelihood == "gaussian" else math.sqrt(0.5)
    expected = norm.logpdf(x, mean, std).sum()
    ours = compute_log_likelihood(jnp.asarray(x), jnp.asarray(mean), jnp.full(5, std), config)
    assert float(ours) == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_importance_weighted_bound_converges_to_the_marginal_likelihood():
    """In 1D latent, log p(x) = log E_{z ~ N(0,1)} p(x|z) by quadrature is the answer;
    the IWAE bound rises with K towards it and stays below it."""
    config = ModelConfig(
        features=3, latent_dim=1, hidden=16, likelihood="gaussian", decoder_std=0.5
    )
    params = init_vae(config, key=jax.random.key(5))
    x = jnp.asarray([0.3, -0.2, 0.1])
    grid = jnp.linspace(-8, 8, 20_001)[:, None]

    def joint(z):
        mean, std = decode_frame(params, z, config)
        log_prior = -0.5 * jnp.sum(z**2) - 0.5 * math.log(2 * math.pi)
        return compute_log_likelihood(x, mean, std, config) + log_prior

    log_joint = jax.vmap(joint)(grid)
    exact = float(jax.scipy.special.logsumexp(log_joint) + math.log(float(grid[1, 0] - grid[0, 0])))
    bounds = []
    for k in (1, 16, 1024):
        noise = jax.random.normal(jax.random.key(k), (200 if k < 1024 else 50, k, 1))
        values = jax.vmap(lambda n: compute_importance_weighted_bound(params, x, n, config))(noise)
        bounds.append(float(jnp.mean(values)))
    assert bounds[0] < bounds[1] < bounds[2] <= exact + 0.01
    assert bounds[2] == pytest.approx(exact, abs=0.05)
    one_draw = jax.vmap(lambda n: compute_importance_weighted_bound(params, x, n, config))(
        jax.random.normal(jax.random.key(8), (4096, 1, 1))
    )
    log_likelihood, kl = compute_elbo_terms(
        params, x, jax.random.normal(jax.random.key(9), (4096, 1)), config
    )
    assert float(log_likelihood - kl) == pytest.approx(float(jnp.mean(one_draw)), abs=0.03)


def test_aggregate_log_density_matches_numpy():
    rng = np.random.default_rng(6)
    means, stds, z = rng.normal(size=(5, 2)), rng.uniform(0.3, 1, size=(5, 2)), rng.normal(size=2)
    density = np.mean([np.prod(norm.pdf(z, m, s)) for m, s in zip(means, stds, strict=True)])
    ours = compute_aggregate_log_density(jnp.asarray(means), jnp.asarray(stds), jnp.asarray(z))
    assert float(ours) == pytest.approx(math.log(density), rel=1e-5)
