"""The built-in polymer simulator: physics checks and determinism."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaetraj import PolymerConfig, simulate_polymer
from vaetraj.simulate import make_polymer_energy


@pytest.mark.parametrize("dims", [2, 3])
def test_polymer_is_physical_and_moves(dims, polymer_2d, polymer_3d):
    xyz = (polymer_2d if dims == 2 else polymer_3d).astype(np.float64)
    config = PolymerConfig(dim=dims)
    assert np.isfinite(xyz).all()
    bonds = np.linalg.norm(np.diff(xyz, axis=1), axis=-1)
    # bond lengths near the rest length: mean within 10 %, never collapsed or torn
    assert abs(bonds.mean() - config.bond_length) < 0.1 * config.bond_length
    assert bonds.min() > 0.2 * config.bond_length and bonds.max() < 2.5 * config.bond_length
    # no overlapping beads: non-bonded pairs stay outside the Lennard-Jones core
    first, second = np.triu_indices(xyz.shape[1], k=2)
    nonbonded = np.linalg.norm(xyz[:, first] - xyz[:, second], axis=-1)
    assert nonbonded.min() > 0.75 * config.lj_sigma
    # it moves between conformations: R_g varies and decorrelates
    centred = xyz - xyz.mean(axis=1, keepdims=True)
    rg = np.sqrt(np.mean(np.sum(centred**2, -1), -1))
    assert rg.std() / rg.mean() > 0.1
    assert np.corrcoef(rg[20:], rg[:-20])[0, 1] < 0.5
    from vaetraj import align

    aligned = align(xyz).xyz
    assert np.sqrt(np.mean(np.sum((aligned[0] - aligned[-1]) ** 2, -1))) > 0.3


@pytest.mark.slow
def test_same_seed_same_trajectory_other_seed_differs():
    config = PolymerConfig(frames=20, stride=10, equilibration=100)
    a = simulate_polymer(config, seed=5)
    b = simulate_polymer(config, seed=5)
    c = simulate_polymer(config, seed=6)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


# 2D in the slow run (3.6 s): the force kernel is the same code in both dimensions
@pytest.mark.parametrize("dims", [pytest.param(2, marks=pytest.mark.slow), 3])
def test_forces_match_finite_differences(dims):
    config = PolymerConfig(dim=dims, beads=6)
    energy = make_polymer_energy(config)
    rng = np.random.default_rng(0)
    position = np.cumsum(
        rng.normal(scale=0.4, size=(6, dims)) + np.array([0.6] + [0.0] * (dims - 1)), axis=0
    )
    with jax.enable_x64(True):
        x = jnp.asarray(position, dtype=jnp.float64)
        gradient = np.asarray(jax.grad(energy)(x))
        energy = jax.jit(energy)  # one compile for the finite differences, not op by op
        step = 1e-6
        numeric = np.zeros_like(position)
        for index in np.ndindex(position.shape):
            plus, minus = position.copy(), position.copy()
            plus[index] += step
            minus[index] -= step
            numeric[index] = (
                float(energy(jnp.asarray(plus))) - float(energy(jnp.asarray(minus)))
            ) / (2 * step)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_equilibrium_temperature():
    """Langevin dynamics keeps the kinetic temperature at kT (equipartition)."""
    from vaetraj.simulate import langevin_baoab

    config = PolymerConfig(beads=8, dim=3)
    init_fn, step_fn = langevin_baoab(make_polymer_energy(config), dt=0.005, friction=1.0, kT=1.5)
    from vaetraj.simulate import initial_conformation

    state = init_fn(jnp.asarray(initial_conformation(config)), key=jax.random.key(0))

    @jax.jit
    def run(state, key):
        def body(state, key):
            state = step_fn(state, key=key)
            return state, jnp.mean(state.momentum**2)

        return jax.lax.scan(body, state, jax.random.split(key, 40_000))

    _, kinetic = run(state, jax.random.key(1))
    assert abs(float(jnp.mean(kinetic[5000:])) - 1.5) < 0.1


def test_invalid_config_names_the_field():
    with pytest.raises(ValueError, match="PolymerConfig.dim"):
        PolymerConfig(dim=4)
    with pytest.raises(ValueError, match="PolymerConfig.beads"):
        PolymerConfig(beads=2)
    config = PolymerConfig(beads=7)
    assert PolymerConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize("dims", [2, 3])
def test_small_matrix_factors_match_numpy(dims):
    """The sampler's per-particle mass matrices are factored and inverted in closed
    form (no LAPACK call, which deadlocked XLA's thread pool): equal to NumPy's."""
    from vaetraj.simulate._langevin import _small_cholesky, _small_inverse

    a = np.random.default_rng(dims).normal(size=(40, dims, dims))
    mass = a @ np.swapaxes(a, 1, 2) + 0.2 * np.eye(dims)
    lower = np.asarray(_small_cholesky(jnp.asarray(mass)))
    np.testing.assert_allclose(lower, np.linalg.cholesky(mass), rtol=1e-4, atol=1e-5)
    inverse = np.asarray(_small_inverse(jnp.asarray(mass)))
    np.testing.assert_allclose(inverse @ mass, np.broadcast_to(np.eye(dims), mass.shape), atol=1e-4)


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_small_matrices_of_a_batch_laid_out_last(dims):
    """The refiner keeps a batch of systems on the last axis: particles' matrices
    (n, d, d, batch) are factored, inverted and applied one system at a time, as if
    each were alone (d = 4 takes the LAPACK route)."""
    from vaetraj.simulate._langevin import _apply, _small_cholesky, _small_inverse

    a = np.random.default_rng(dims).normal(size=(5, 30, dims, dims))
    mass = a @ np.swapaxes(a, -1, -2) + 0.2 * np.eye(dims)  # (batch, n, d, d)
    laid_out = jnp.asarray(np.moveaxis(mass, 0, -1))  # (n, d, d, batch)
    lower = np.moveaxis(np.asarray(_small_cholesky(laid_out)), -1, 0)
    np.testing.assert_allclose(lower, np.linalg.cholesky(mass), rtol=1e-4, atol=1e-5)
    inverse = np.moveaxis(np.asarray(_small_inverse(laid_out)), -1, 0)
    np.testing.assert_allclose(inverse, np.linalg.inv(mass), rtol=1e-3, atol=1e-4)
    v = np.random.default_rng(1).normal(size=(5, 30, dims))
    applied = np.moveaxis(np.asarray(_apply(laid_out, jnp.asarray(np.moveaxis(v, 0, -1)))), -1, 0)
    np.testing.assert_allclose(applied, np.einsum("bnij,bnj->bni", mass, v), rtol=1e-4, atol=1e-4)
