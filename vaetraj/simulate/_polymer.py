"""The built-in bead-spring polymer: harmonic bonds, harmonic angles and a truncated,
shifted Lennard-Jones potential between beads that are not bonded, in 2D or 3D, in
reduced units (bead mass 1, kT = temperature)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj.configs import PolymerConfig
from vaetraj.simulate._langevin import langevin_baoab


def _bond_vectors(position: jax.Array) -> jax.Array:
    return position[1:] - position[:-1]


def make_polymer_energy(config: PolymerConfig):
    """Potential energy of one conformation (beads, dim) -> scalar."""
    first, second = np.triu_indices(config.beads, k=2)  # every pair not bonded
    cutoff = config.lj_cutoff * config.lj_sigma
    shift = (
        4 * config.lj_epsilon * ((config.lj_sigma / cutoff) ** 12 - (config.lj_sigma / cutoff) ** 6)
    )

    def energy(position: jax.Array) -> jax.Array:
        bonds = _bond_vectors(position)
        length = jnp.sqrt(jnp.sum(bonds**2, axis=-1))
        e_bond = 0.5 * config.bond_k * jnp.sum((length - config.bond_length) ** 2)

        a, b = -bonds[:-1], bonds[1:]
        dot = jnp.sum(a * b, axis=-1)
        if config.dim == 2:
            cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
        else:
            cross = jnp.sqrt(jnp.sum(jnp.cross(a, b) ** 2, axis=-1) + 1e-12)
        # atan2 keeps the gradient finite at a straight angle, where arccos would not
        theta = jnp.abs(jnp.arctan2(cross, dot))
        e_angle = 0.5 * config.angle_k * jnp.sum((theta - config.angle) ** 2)

        r2 = jnp.sum((position[first] - position[second]) ** 2, axis=-1)
        inv6 = (config.lj_sigma**2 / r2) ** 3
        lj = 4 * config.lj_epsilon * (inv6**2 - inv6) - shift
        e_lj = jnp.sum(jnp.where(r2 < cutoff**2, lj, 0.0))
        return e_bond + e_angle + e_lj

    return energy


def initial_conformation(config: PolymerConfig) -> np.ndarray:
    """A zig-zag chain at rest bond length, with no two beads closer than a bond."""
    x = np.arange(config.beads) * config.bond_length * math.cos(math.radians(30))
    y = np.where(np.arange(config.beads) % 2 == 0, 0.0, config.bond_length * 0.5)
    position = np.zeros((config.beads, config.dim))
    position[:, 0], position[:, 1] = x, y
    return position.astype(np.float32)


def simulate_polymer_kernel(config: PolymerConfig, *, key: jax.Array) -> jax.Array:
    """Run the simulation: equilibrate, then record `frames` frames `stride` steps apart.

    Returns (frames, beads, dim) float32. Deterministic for a key.
    """
    energy = make_polymer_energy(config)
    init_fn, step_fn = langevin_baoab(
        energy, dt=config.dt, friction=config.friction, kT=config.temperature
    )

    def advance(state, key, steps):
        def body(i, state):
            return step_fn(state, key=jax.random.fold_in(key, i))

        return jax.lax.fori_loop(0, steps, body, state)

    @jax.jit
    def run(key):
        init_key, equilibrate_key, production_key = jax.random.split(key, 3)
        state = init_fn(jnp.asarray(initial_conformation(config)), key=init_key)
        state = advance(state, equilibrate_key, config.equilibration)

        def record(state, frame_key):
            state = advance(state, frame_key, config.stride)
            return state, state.position

        _, frames = jax.lax.scan(record, state, jax.random.split(production_key, config.frames))
        return frames

    return run(key)
