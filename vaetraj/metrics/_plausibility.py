"""Is a structure physically plausible? Bond lengths and close contacts of one frame,
compared with limits taken from the training data.

A frame is described by its shortest and longest bond, its closest non-bonded pair and
its R_g (`measure_frame`); the limits are percentiles of every bond length and every
non-bonded distance in the training frames (`fit_structure_limits`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from vaetraj.metrics._structure import compute_pair_distances, compute_rg


class FrameGeometry(NamedTuple):
    """Per-frame extremes: shortest and longest bond, closest non-bonded pair, R_g."""

    min_bond: jnp.ndarray
    max_bond: jnp.ndarray
    min_nonbonded: jnp.ndarray
    rg: jnp.ndarray


class StructureLimits(NamedTuple):
    """A frame is plausible when every bond lies in [bond_min, bond_max] and no
    non-bonded pair is closer than nonbonded_min."""

    bond_min: float
    bond_max: float
    nonbonded_min: float


def split_pairs(atoms: int, bonds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bonded, non-bonded) atom pairs i < j; bonds (n, 2) in any order."""
    bonded = np.sort(np.asarray(bonds, dtype=np.int32).reshape(-1, 2), axis=1)
    is_bond = np.zeros((atoms, atoms), dtype=bool)
    is_bond[bonded[:, 0], bonded[:, 1]] = True
    first, second = np.triu_indices(atoms, k=1)
    keep = ~is_bond[first, second]
    nonbonded = np.stack([first[keep], second[keep]], axis=1).astype(np.int32)
    return np.unique(bonded, axis=0), nonbonded


def measure_frame(
    xyz: jnp.ndarray, bonds: jnp.ndarray, nonbonded: jnp.ndarray, weights: jnp.ndarray
) -> FrameGeometry:
    """Extremes of one frame (atoms, dims); an empty pair list gives +-inf."""
    bond = compute_pair_distances(xyz, bonds)
    contact = compute_pair_distances(xyz, nonbonded)
    return FrameGeometry(
        min_bond=jnp.min(bond, initial=jnp.inf),
        max_bond=jnp.max(bond, initial=-jnp.inf),
        min_nonbonded=jnp.min(contact, initial=jnp.inf),
        rg=compute_rg(xyz, weights),
    )


def is_plausible(geometry: FrameGeometry, limits: StructureLimits) -> jnp.ndarray:
    """True where every bond is in range and no non-bonded pair is too close."""
    return (
        (geometry.min_bond >= limits.bond_min)
        & (geometry.max_bond <= limits.bond_max)
        & (geometry.min_nonbonded >= limits.nonbonded_min)
    )


def fit_structure_limits(
    bond_lengths: np.ndarray, nonbonded_distances: np.ndarray, quantile: float = 0.001
) -> StructureLimits:
    """Limits from the training frames' bond lengths and non-bonded distances (any
    shape): bonds within their [quantile, 1 - quantile] range, contacts above their
    `quantile`. No non-bonded pair at all gives a limit of 0."""
    nonbonded = np.ravel(nonbonded_distances)
    return StructureLimits(
        bond_min=float(np.quantile(bond_lengths, quantile)),
        bond_max=float(np.quantile(bond_lengths, 1 - quantile)),
        nonbonded_min=float(np.quantile(nonbonded, quantile)) if nonbonded.size else 0.0,
    )
