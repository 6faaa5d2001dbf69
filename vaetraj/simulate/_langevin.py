"""BAOAB Langevin integrator (Leimkuhler & Matthews) as an init/step pair of pure
functions, in the style of jax-md's `simulate.nvt_langevin`."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class LangevinState(NamedTuple):
    """position, momentum, force: (particles, dims)."""

    position: jax.Array
    momentum: jax.Array
    force: jax.Array


InitFn = Callable[..., LangevinState]
StepFn = Callable[..., LangevinState]


def langevin_baoab(
    energy_fn: Callable[[jax.Array], jax.Array],
    *,
    dt: float,
    friction: float,
    kT: float,
    mass: jax.Array | float = 1.0,
) -> tuple[InitFn, StepFn]:
    """Return `(init_fn, step_fn)` for Langevin dynamics on `energy_fn`.

    init_fn(position, *, key) -> LangevinState, momenta drawn at temperature kT.
    step_fn(state, *, key) -> LangevinState, one time step of length dt.
    mass: a scalar, per-particle (particles, 1) masses, or a per-particle mass matrix
    (particles, dims, dims, *batch), symmetric positive definite (a batch of systems
    laid out (particles, dims, *batch) has one per system); the positions' equilibrium
    distribution, exp(-energy / kT), does not depend on them, so a sampler may choose
    them to even out the system's frequencies.
    """
    force_fn = jax.grad(lambda x: -energy_fn(x))
    damping = jnp.exp(-friction * dt)
    velocity, spread = _mass_maps(mass, kT)
    _, kick = _mass_maps(mass, (1.0 - damping**2) * kT)

    def init_fn(position: jax.Array, *, key: jax.Array) -> LangevinState:
        noise = jax.random.normal(key, position.shape, position.dtype)
        return LangevinState(position, spread(noise), force_fn(position))

    def step_fn(state: LangevinState, *, key: jax.Array) -> LangevinState:
        momentum = state.momentum + 0.5 * dt * state.force
        position = state.position + 0.5 * dt * velocity(momentum)
        noise = jax.random.normal(key, momentum.shape, momentum.dtype)
        momentum = damping * momentum + kick(noise)
        position = position + 0.5 * dt * velocity(momentum)
        force = force_fn(position)
        momentum = momentum + 0.5 * dt * force
        return LangevinState(position, momentum, force)

    return init_fn, step_fn


def mass_factors(mass: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-particle mass matrices (n, d, d, *batch): their inverses and lower Cholesky
    factors, both (n, d, d, *batch): velocity = M^-1 p, noise of covariance M = L xi."""
    return _small_inverse(mass), _small_cholesky(mass)


def apply_per_particle(m: jax.Array, v: jax.Array) -> jax.Array:
    """Per-particle matrices (n, d, d, *batch) times vectors (n, d, *batch)."""
    return _apply(m, v)


def _mass_maps(mass, variance):
    """(momentum -> velocity, unit noise -> noise of covariance `variance` M): M^-1 p and
    sqrt(variance) L xi for M = L L^T per particle. A scalar or per-particle mass keeps
    the plain arithmetic (the built-in polymer's trajectories stay bit for bit)."""
    if jnp.ndim(mass) < 3:
        scale = jnp.sqrt(variance * mass)
        return (lambda p: p / mass), (lambda xi: scale * xi)
    inverse = _small_inverse(mass)
    lower = jnp.sqrt(variance) * _small_cholesky(mass)
    return (lambda p: _apply(inverse, p)), (lambda xi: _apply(lower, xi))


def _apply(m: jax.Array, v: jax.Array) -> jax.Array:
    """Per-particle matrices (n, d, d, *batch) times vectors (n, d, *batch), the sums
    written out (an einsum became batched dots with transposes around them)."""
    d = m.shape[1]
    rows = [sum(m[:, i, j] * v[:, j] for j in range(d)) for i in range(d)]
    return jnp.stack(rows, axis=1)


# Per-particle 2 x 2 and 3 x 3 matrices in closed form, elementwise. Batched LAPACK calls
# (jnp.linalg.inv, cholesky) split their batch over XLA's CPU thread pool and wait on it
# from a pool thread: two of them running at once on a 2-thread pool waited on each other
# for good (a refinement that never returned). These use no LAPACK and no pool.


def _small_cholesky(m: jax.Array) -> jax.Array:
    """The lower Cholesky factors of symmetric positive-definite (n, d, d, *batch),
    d = 2 or 3."""
    d = m.shape[1]
    if d not in (2, 3):
        return _per_matrix(jnp.linalg.cholesky, m)
    l00 = jnp.sqrt(m[:, 0, 0])
    l10 = m[:, 1, 0] / l00
    l11 = jnp.sqrt(m[:, 1, 1] - l10**2)
    zero = jnp.zeros_like(l00)
    if d == 2:
        return _matrix([[l00, zero], [l10, l11]])
    l20 = m[:, 2, 0] / l00
    l21 = (m[:, 2, 1] - l20 * l10) / l11
    l22 = jnp.sqrt(m[:, 2, 2] - l20**2 - l21**2)
    return _matrix([[l00, zero, zero], [l10, l11, zero], [l20, l21, l22]])


def _small_inverse(m: jax.Array) -> jax.Array:
    """The inverses of (n, d, d, *batch), d = 2 or 3, by the adjugate."""
    d = m.shape[1]
    if d not in (2, 3):
        return _per_matrix(jnp.linalg.inv, m)
    a = [[m[:, i, j] for j in range(d)] for i in range(d)]
    if d == 2:
        det = a[0][0] * a[1][1] - a[0][1] * a[1][0]
        rows = [[a[1][1], -a[0][1]], [-a[1][0], a[0][0]]]
    else:

        def cofactor(i, j):
            r, c = [k for k in range(3) if k != i], [k for k in range(3) if k != j]
            minor = a[r[0]][c[0]] * a[r[1]][c[1]] - a[r[0]][c[1]] * a[r[1]][c[0]]
            return minor if (i + j) % 2 == 0 else -minor

        det = sum(a[0][j] * cofactor(0, j) for j in range(3))
        rows = [[cofactor(j, i) for j in range(3)] for i in range(3)]  # the adjugate
    return _matrix(rows) / jnp.expand_dims(det, (1, 2))


def _matrix(rows: list[list[jax.Array]]) -> jax.Array:
    """(n, d, d, *batch) from d x d entries (n, *batch)."""
    return jnp.stack([jnp.stack(row, axis=1) for row in rows], axis=1)


def _per_matrix(function, m: jax.Array) -> jax.Array:
    """A LAPACK-backed function of (..., d, d) applied to (n, d, d, *batch)."""
    moved = jnp.moveaxis(m, (1, 2), (-2, -1))
    return jnp.moveaxis(function(moved), (-2, -1), (1, 2))
