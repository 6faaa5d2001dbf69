"""A local-geometry term for the training loss: the decoder's mean is scored on the
distances of bonded and angle-closing (1-3) atom pairs as well as on coordinates.

A Cartesian decoder returns the average of the frames that share a latent point, and
averaging shortens bonds; squared error on coordinates barely notices (a 30% short bond
is a small coordinate error), so the decoded structures of diverse conformations come out
shrunken. This term compares each pair's decoded length with the same pair's length in
the frame being reconstructed, in units of that pair's spread over the training frames,
so a bond 3 std short costs 9 whatever the molecule's units (molearn answers the same
problem with force-field terms on decoded structures).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class GeometryLoss(NamedTuple):
    """pairs (pairs, 2) atom indices; scale (pairs,) each pair's distance spread in data
    units; mean, std (features,) the normalization that maps data to the decoder's units;
    dims is the number of coordinates per atom."""

    pairs: jax.Array
    scale: jax.Array
    mean: jax.Array
    std: jax.Array
    dims: int


def _pair_lengths(flat: jax.Array, geometry: GeometryLoss) -> jax.Array:
    xyz = (flat * geometry.std + geometry.mean).reshape(-1, geometry.dims)
    delta = xyz[geometry.pairs[:, 0]] - xyz[geometry.pairs[:, 1]]
    return jnp.sqrt(jnp.sum(delta**2, axis=-1) + 1e-12)


def compute_geometry_penalty(
    x: jax.Array, decoded: jax.Array, geometry: GeometryLoss
) -> jax.Array:
    """sum over pairs of ((d_decoded - d_x) / scale)^2 for one normalized frame x and
    the decoder's mean for it, both (features,)."""
    error = (_pair_lengths(decoded, geometry) - _pair_lengths(x, geometry)) / geometry.scale
    return jnp.sum(error**2)
