"""Structural descriptors of one frame (atoms, dims); vmap over frames.

`compute_pair_distances` also takes a batch as columns (`vaetraj.metrics._vectors`),
as the refiner's kernels do."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj.metrics._vectors import Coordinates, Jacobian, norm, sub, take


def compute_rg(xyz: jax.Array, weights: jax.Array) -> jax.Array:
    """Radius of gyration; weights (atoms,) sum to one (masses / total mass)."""
    centred = xyz - (weights @ xyz)[None, :]
    return jnp.sqrt(weights @ jnp.sum(centred**2, axis=-1))


def compute_pair_distances(xyz: Coordinates, pairs: jax.Array) -> jax.Array:
    """Distances of the given atom pairs (pairs, 2): (pairs,) of a frame (atoms, dims),
    (pairs, *batch) of a batch's columns (`vaetraj.metrics._vectors`). A 1e-12 under
    the root gives a finite gradient at zero distance (refinement pulls overlapping
    atoms apart)."""
    return distance_jacobian(xyz, pairs)[0]


def distance_jacobian(xyz: Coordinates, pairs: jax.Array) -> tuple[jax.Array, Jacobian]:
    """`compute_pair_distances` of columns, with the derivatives by both atoms."""
    d = sub(take(xyz, pairs[:, 0]), take(xyz, pairs[:, 1]))
    r = norm(d)
    unit = tuple(component / r for component in d)
    return r, [unit, tuple(-component for component in unit)]


def all_pairs(atoms: int) -> np.ndarray:
    """Every atom pair i < j, row by row: (atoms (atoms - 1) / 2, 2)."""
    first, second = np.triu_indices(atoms, k=1)
    return np.stack([first, second], axis=1)


def compute_chain_bond_lengths(xyz: jax.Array) -> jax.Array:
    """Distances between consecutive atoms of a chain: (atoms - 1,)."""
    return jnp.sqrt(jnp.sum((xyz[1:] - xyz[:-1]) ** 2, axis=-1))


def compute_nonbonded_distances(xyz: jax.Array) -> jax.Array:
    """Distances between chain atoms that are not consecutive: (pairs,)."""
    first, second = np.triu_indices(xyz.shape[0], k=2)
    return jnp.sqrt(jnp.sum((xyz[first] - xyz[second]) ** 2, axis=-1))


def compute_end_to_end(xyz: jax.Array) -> jax.Array:
    """Distance between the first and the last atom."""
    return jnp.sqrt(jnp.sum((xyz[-1] - xyz[0]) ** 2))


@jax.jit
def summarize_chain(xyz: jax.Array) -> dict[str, jax.Array]:
    """Mean bond length, closest non-bonded pair and mean R_g (equal masses) of a chain
    trajectory (frames, atoms, dims)."""
    atoms = xyz.shape[1]
    weights = jnp.full((atoms,), 1.0 / atoms, dtype=xyz.dtype)
    return {
        "mean_bond": jnp.mean(jax.vmap(compute_chain_bond_lengths)(xyz)),
        "min_nonbonded_distance": jnp.min(jax.vmap(compute_nonbonded_distances)(xyz)),
        "mean_rg": jnp.mean(jax.vmap(compute_rg, in_axes=(0, None))(xyz, weights)),
    }
