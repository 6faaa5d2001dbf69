"""Kabsch superposition of one frame onto a reference: the proper rotation that
minimizes the weighted RMSD after both are centred on their centres of mass.

The only O(atoms) work that depends on the reference is linear in the frame, so it is
done as one matrix-vector product with a precomputed *moment matrix*; under `vmap` over
frames this becomes a single GEMM, which is what makes the batched kernel faster than
`mdtraj.superpose`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj._device import to_device
from vaetraj.geometry._frames import compute_weighted_rmsd, rotate_frame


class KabschTarget(NamedTuple):
    """A reference structure prepared for `superpose_frame`.

    reference: (atoms, dims), centred on its centre of mass. weights: (atoms,), summing
    to one. moments: (atoms * dims, dims + dims * dims), see `make_kabsch_target`.
    """

    reference: jax.Array
    weights: jax.Array
    moments: jax.Array


class Superposition(NamedTuple):
    """xyz: (atoms, dims) the superposed frame; rotation: (dims, dims); rmsd: ()."""

    xyz: jax.Array
    rotation: jax.Array
    rmsd: jax.Array


def make_kabsch_target(reference: np.ndarray, weights: np.ndarray) -> KabschTarget:
    """Centre `reference` (atoms, dims) and build its moment matrix.

    For a frame x, `x.reshape(-1) @ moments` gives its centre of mass (first `dims`
    entries) followed by the correlation matrix H_ij = sum_a w_a x_ai y_aj (row-major),
    where y is the centred reference. Because y is centred, H needs no centring of x.
    """
    reference = np.asarray(reference, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    atoms, dims = reference.shape
    centred = reference - weights @ reference
    moments = np.zeros((atoms, dims, dims + dims * dims))
    for i in range(dims):
        moments[:, i, i] = weights
        for j in range(dims):
            moments[:, i, dims + dims * i + j] = weights * centred[:, j]
    return KabschTarget(
        reference=to_device(centred, np.float32),
        weights=to_device(weights, np.float32),
        moments=to_device(moments.reshape(atoms * dims, -1), np.float32),
    )


def _optimal_rotation_2d(correlation: jax.Array) -> jax.Array:
    angle = jnp.arctan2(
        correlation[0, 1] - correlation[1, 0], correlation[0, 0] + correlation[1, 1]
    )
    c, s = jnp.cos(angle), jnp.sin(angle)
    return jnp.array([[c, -s], [s, c]])


def _optimal_rotation_3d(correlation: jax.Array) -> jax.Array:
    u, _, vt = jnp.linalg.svd(correlation)
    # a reflection would fit better when det(V U^T) < 0: flip the weakest direction
    # (one determinant, of the product: two batched LAPACK calls at once can deadlock
    # XLA's CPU thread pool, see vaetraj.simulate._langevin)
    sign = jnp.sign(jnp.linalg.det(u @ vt))
    vt = vt.at[2].multiply(jnp.where(sign == 0, 1.0, sign))
    return vt.T @ u.T


def superpose_frame(xyz: jax.Array, target: KabschTarget) -> Superposition:
    """Superpose one frame (atoms, dims) onto `target`; dims 2 or 3."""
    atoms, dims = xyz.shape
    moments = xyz.reshape(-1) @ target.moments
    center = moments[:dims]
    correlation = moments[dims:].reshape(dims, dims)
    if dims == 2:
        rotation = _optimal_rotation_2d(correlation)
    elif dims == 3:
        rotation = _optimal_rotation_3d(correlation)
    else:
        raise ValueError(f"frames must be 2D or 3D, got {dims} dimensions")
    aligned = rotate_frame(xyz - center[None, :], rotation)
    rmsd = compute_weighted_rmsd(aligned, target.reference, target.weights)
    return Superposition(xyz=aligned, rotation=rotation, rmsd=rmsd)
