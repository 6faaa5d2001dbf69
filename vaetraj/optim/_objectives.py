"""Objectives on one structure (atoms, dims) -> scalar, differentiable in the coordinates."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj.configs import OBJECTIVES
from vaetraj.geometry import make_kabsch_target, superpose_frame
from vaetraj.metrics import compute_end_to_end, compute_rg

Objective = Callable[[jax.Array], jax.Array]


def _centroid(xyz: jax.Array, group: jax.Array, weights: jax.Array) -> jax.Array:
    w = weights[group] / jnp.sum(weights[group])
    return w @ xyz[group]


def make_objective(
    name: str,
    *,
    weights: np.ndarray,
    groups: tuple[np.ndarray, np.ndarray] | None = None,
    target: np.ndarray | None = None,
) -> Objective:
    """The objective `name` as a function of one frame.

    rg: radius of gyration with `weights` (atoms,), summing to one (masses / total).
    end-to-end: distance from the first to the last atom.
    distance: distance between the weighted centroids of two atom groups (index arrays).
    rmsd: weighted RMSD to `target` (atoms, dims) after optimal superposition.
    """
    mass = jnp.asarray(weights, dtype=jnp.float32)
    if name == "rg":
        return lambda xyz: compute_rg(xyz, mass)
    if name == "end-to-end":
        return compute_end_to_end
    if name == "distance":
        if groups is None:
            raise ValueError("the distance objective needs two atom groups")
        first, second = (jnp.asarray(g, dtype=jnp.int32) for g in groups)

        def distance(xyz):
            delta = _centroid(xyz, first, mass) - _centroid(xyz, second, mass)
            return jnp.sqrt(jnp.sum(delta**2) + 1e-12)

        return distance
    if name == "rmsd":
        if target is None:
            raise ValueError("the rmsd objective needs a target structure")
        prepared = make_kabsch_target(np.asarray(target), np.asarray(mass))
        return lambda xyz: superpose_frame(xyz, prepared).rmsd
    raise ValueError(f"objective must be one of {OBJECTIVES}, got {name!r}")
