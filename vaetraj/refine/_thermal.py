"""Thermal refinement: a decoded structure made into one conformation of the data's
ensemble, at the data's temperature.

A decoder returns the mean of the conformations that share a latent point: short
bonds, overlapping atoms. Minimizing an energy from there gives the opposite fault, a
structure colder than any MD frame (every bond at its mean, contacts piled on the wall
of the closest approach). Instead each structure x0 is

1. relaxed: `relax_steps` Adam steps down U(x) (the statistical potential,
   `vaetraj.metrics.compute_statistical_energy`) plus the tether
   1/2 sum_atoms |x - x0|^2 / tether_std^2, which takes it out of overlaps, then
2. sampled: `sample_steps` BAOAB Langevin steps at kT = 1 on the same energy, and the
   last position kept. Its distribution is exp(-U - tether): thermal in every term the
   potential holds, and near x0 where the tether (the decoder's own error) says.

Masses only set the sampler's time scales, not its distribution: each atom's mass is
the stiffness of its bonds and tether, so every atom's fastest motion has about the
same period and one step size serves them all.

With more pairs than `max_pairs`, the contact term runs over a neighbour list: the
pairs nearest their class's cutoff, chosen again every `rebuild_every` steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from vaetraj.metrics import StatisticalPotential, compute_pair_distances, compute_term_energies
from vaetraj.simulate import langevin_baoab


class Refined(NamedTuple):
    """Refined structures (n, atoms, dims), each one's RMSD from its decoded start (n,)
    and its statistical energy (with the tether) before and after (n,)."""

    xyz: jax.Array
    moved: jax.Array
    energy_start: jax.Array
    energy: jax.Array


class ThermalSettings(NamedTuple):
    """Step counts and sizes (hashable: closed over at compile time).

    relax_steps Adam steps from `relax_step` (a share of the mean bond length), then
    sample_steps Langevin steps of `dt` (in units where the stiffest bond's period is
    about 2 pi / sqrt(2)) with `friction`; contacts over a neighbour list of
    `max_pairs` pairs rebuilt every `rebuild_every` steps."""

    relax_steps: int = 200
    sample_steps: int = 800
    dt: float = 0.05
    friction: float = 2.0
    relax_step: float = 0.02
    max_pairs: int = 4096
    rebuild_every: int = 25


def _cutoffs(potential: StatisticalPotential) -> jax.Array:
    """Each pair's distance past which its class's table is 0."""
    table = potential.pair_table
    last = table.lo + (table.values.shape[1] - 1) * table.step
    return last[potential.pair_class]


def _atom_masses(potential: StatisticalPotential, atoms: int, tether_std: jax.Array):
    """(atoms, 1): each atom's bond stiffness plus its tether's, in kT / length^2."""
    stiffness = 1.0 / potential.bond_std**2
    mass = jnp.zeros(atoms).at[potential.bonds[:, 0]].add(stiffness)
    mass = mass.at[potential.bonds[:, 1]].add(stiffness) + 1.0 / tether_std**2
    return jnp.maximum(mass, jnp.min(mass) + 1e-6)[:, None]


class _Energy(NamedTuple):
    """One structure's energy with its tether, and its neighbour list."""

    x0: jax.Array
    potential: StatisticalPotential
    tether_std: jax.Array
    pairs: jax.Array  # (n, 3): atom, atom, class row
    cutoff: jax.Array  # (n,)
    listed: int

    def __call__(self, x: jax.Array, near: jax.Array) -> jax.Array:
        tether = 0.5 * jnp.sum(jnp.sum((x - self.x0) ** 2, axis=-1) / self.tether_std**2)
        return compute_term_energies(x, self.potential, near).total + tether

    def nearest(self, x: jax.Array) -> jax.Array:
        """The `listed` pairs nearest their cutoff (all of them when that is every pair)."""
        if self.listed == len(self.pairs):
            return self.pairs
        gap = self.cutoff - compute_pair_distances(x, self.pairs[:, :2])
        return self.pairs[jax.lax.top_k(gap, self.listed)[1]]


def _relax(energy: _Energy, mean_bond: jax.Array, settings: ThermalSettings) -> jax.Array:
    """Adam down the energy from x0, the neighbour list rebuilt every block."""
    solver = optax.adam(
        optax.cosine_decay_schedule(settings.relax_step * mean_bond, max(settings.relax_steps, 1))
    )

    def step(carry, _):
        x, state, near = carry
        updates, state = solver.update(jax.grad(energy)(x, near), state, x)
        return (optax.apply_updates(x, updates), state, near), None

    x, state = energy.x0, solver.init(energy.x0)
    for _ in range(-(-settings.relax_steps // settings.rebuild_every)):
        (x, state, _), _ = jax.lax.scan(
            step, (x, state, energy.nearest(x)), None, length=settings.rebuild_every
        )
    return x


def _sample(energy: _Energy, x: jax.Array, key: jax.Array, settings: ThermalSettings):
    """BAOAB at kT = 1 from x; the last position."""
    mass = _atom_masses(energy.potential, x.shape[0], energy.tether_std)
    langevin = functools.partial(
        langevin_baoab, dt=settings.dt, friction=settings.friction, kT=1.0, mass=mass
    )

    def block(state, block_key):
        near = energy.nearest(state.position)
        init_fn, step_fn = langevin(lambda y: energy(y, near))
        # the force on the new list; the momentum carries on
        state = init_fn(state.position, key=block_key)._replace(momentum=state.momentum)
        keys = jax.random.split(block_key, settings.rebuild_every)
        state, _ = jax.lax.scan(lambda s, k: (step_fn(s, key=k), None), state, keys)
        return state, None

    init_key, run_key = jax.random.split(key)
    start = langevin(lambda y: energy(y, energy.pairs))[0](x, key=init_key)
    blocks = max(1, -(-settings.sample_steps // settings.rebuild_every))
    final, _ = jax.lax.scan(block, start, jax.random.split(run_key, blocks))
    return final.position


def _refine_one(x0, key, potential, tether_std, mean_bond, *, settings: ThermalSettings):
    pairs = jnp.concatenate([potential.pairs, potential.pair_class[:, None]], axis=1)
    energy = _Energy(
        x0, potential, tether_std, pairs, _cutoffs(potential), min(len(pairs), settings.max_pairs)
    )
    relaxed = _relax(energy, mean_bond, settings)
    sampled = _sample(energy, relaxed, key, settings)
    x = jnp.where(jnp.all(jnp.isfinite(sampled)), sampled, relaxed)
    moved = jnp.sqrt(jnp.mean(jnp.sum((x - x0) ** 2, axis=-1)))
    return x, moved, energy(x0, pairs), energy(x, pairs)


def make_thermal_refiner(
    settings: ThermalSettings = ThermalSettings(),
) -> Callable[..., Refined]:
    """A jit-compiled (structures (n, atoms, dims), potential, tether_std (atoms,),
    mean_bond, *, key) -> Refined (see the module doc)."""
    if settings.relax_steps < 0 or settings.sample_steps < 1 or settings.rebuild_every < 1:
        raise ValueError("relax_steps must be >= 0, sample_steps and rebuild_every >= 1")
    one = functools.partial(_refine_one, settings=settings)

    @jax.jit
    def refine(xyz, potential, tether_std, mean_bond, *, key) -> Refined:
        keys = jax.random.split(key, xyz.shape[0])
        return Refined(
            *jax.vmap(one, in_axes=(0, 0, None, None, None))(
                xyz, keys, potential, tether_std, mean_bond
            )
        )

    return refine
