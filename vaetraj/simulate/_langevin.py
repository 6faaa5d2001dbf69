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
    (particles, dims, dims), symmetric positive definite; the positions' equilibrium
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


def _mass_maps(mass, variance):
    """(momentum -> velocity, unit noise -> noise of covariance `variance` M): M^-1 p and
    sqrt(variance) L xi for M = L L^T per particle. A scalar or per-particle mass keeps
    the plain arithmetic (the built-in polymer's trajectories stay bit for bit)."""
    if jnp.ndim(mass) < 3:
        scale = jnp.sqrt(variance * mass)
        return (lambda p: p / mass), (lambda xi: scale * xi)
    inverse = jnp.linalg.inv(mass)
    lower = jnp.sqrt(variance) * jnp.linalg.cholesky(mass)
    return (
        lambda p: jnp.einsum("nij,nj->ni", inverse, p),
        lambda xi: jnp.einsum("nij,nj->ni", lower, xi),
    )
