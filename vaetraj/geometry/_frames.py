"""Small per-frame helpers shared by the alignment kernels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def centred_float32(xyz: np.ndarray) -> np.ndarray:
    """Frames (frames, atoms, dims) as float32, each moved near the origin in the input
    precision first, so a far-away molecule does not lose digits (every kernel that
    takes them ignores a shift)."""
    if xyz.dtype == np.float32:
        return np.ascontiguousarray(xyz)
    xyz = np.asarray(xyz, dtype=np.float64)
    return (xyz - xyz.mean(axis=1, keepdims=True)).astype(np.float32)


def compute_center_of_mass(xyz: jax.Array, weights: jax.Array) -> jax.Array:
    """Weighted centre of one frame.

    xyz: (atoms, dims); weights: (atoms,), summing to one. Returns (dims,).
    """
    return weights @ xyz


def rotate_frame(xyz: jax.Array, rotation: jax.Array) -> jax.Array:
    """Apply `rotation` (dims, dims) to every row of `xyz` (atoms, dims): `xyz @ rotation.T`.

    Written as one column per output axis so that, under `vmap`, XLA fuses it into a
    single elementwise pass instead of many tiny batched matrix products.
    """
    dims = xyz.shape[-1]
    columns = [sum(xyz[:, i] * rotation[j, i] for i in range(dims)) for j in range(dims)]
    return jnp.stack(columns, axis=-1)


def compute_weighted_rmsd(xyz: jax.Array, reference: jax.Array, weights: jax.Array) -> jax.Array:
    """Weighted root-mean-square deviation of two frames, without any fitting."""
    return jnp.sqrt(weights @ jnp.sum((xyz - reference) ** 2, axis=-1))
