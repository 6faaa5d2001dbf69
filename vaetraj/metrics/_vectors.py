"""Coordinates as columns: how the geometry kernels read a frame and a batch.

A frame is an array (atoms, dims); a batch of structures is passed as its columns
(x, y[, z]), each (atoms, *batch), so that one gather of a term's atoms reads every
structure of the batch. Vectors between atoms are tuples of per-coordinate arrays
(terms, *batch), and every product, sum and cross product over coordinates is written
out: XLA's CPU backend then emits each kernel as elementwise loops over (terms,
*batch), with no reduction over a size-3 axis and no slices whose gradients are pads
added back together (on a protein's refiner step, reductions and pads took half the
time when the batch was laid out (atoms, dims, batch)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Columns = tuple[jax.Array, ...]
Coordinates = jax.Array | Columns
# a term's derivatives by its atoms' coordinates: per atom, per coordinate (terms, *batch)
Jacobian = list[Columns]

_TINY = 1e-12


def frames_as_columns(xyz: jax.Array) -> Columns:
    """Frames (frames, atoms, dims) as a batch's columns, each (atoms, frames)."""
    return tuple(xyz[:, :, k].T for k in range(xyz.shape[-1]))


def dims_of(xyz: Coordinates) -> int:
    """2 or 3: the coordinates' dimensions."""
    return len(xyz) if isinstance(xyz, tuple) else xyz.shape[-1]


def batch_shape_of(xyz: Coordinates) -> tuple[int, ...]:
    """() for a frame, the batch's shape for columns."""
    return xyz[0].shape[1:] if isinstance(xyz, tuple) else ()


def take(xyz: Coordinates, atoms: jax.Array) -> Columns:
    """The coordinates of `atoms` (terms,) as columns: (terms,) each from a frame,
    (terms, *batch) each from columns. A frame's atoms are read as rows (one gather),
    then split."""
    if isinstance(xyz, tuple):
        return tuple(column[atoms] for column in xyz)
    rows = xyz[atoms]
    return tuple(rows[:, k] for k in range(xyz.shape[-1]))


def sub(a: Columns, b: Columns) -> Columns:
    return tuple(p - q for p, q in zip(a, b, strict=True))


def dot(a: Columns, b: Columns) -> jax.Array:
    total = a[0] * b[0]
    for p, q in zip(a[1:], b[1:], strict=True):
        total = total + p * q
    return total


def norm(a: Columns) -> jax.Array:
    """Lengths, with a 1e-12 under the root: finite gradients at zero length."""
    return jnp.sqrt(dot(a, a) + _TINY)


def cross(a: Columns, b: Columns) -> Columns:
    """The cross product of 3D vectors."""
    return (
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    )


def bond_vectors(xyz: Coordinates, index: jax.Array, start: int, ends: tuple[int, ...]) -> list:
    """From atom index[:, start] to each index[:, end], as columns."""
    origin = take(xyz, index[:, start])
    return [sub(take(xyz, index[:, end]), origin) for end in ends]
