"""The per-frame alignment kernels vmapped and jit-compiled over blocks of frames."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import NamedTuple

import jax
import jax.numpy as jnp

from vaetraj.geometry._frames import compute_center_of_mass, compute_weighted_rmsd
from vaetraj.geometry._kabsch import KabschTarget, superpose_frame
from vaetraj.geometry._principal import align_principal_frame, compare_axes

METHODS = ("principal", "kabsch", "none")


class BlockAlignment(NamedTuple):
    """For a block of frames: xyz (frames, atoms, dims); rotation (frames, dims, dims);
    rmsd (frames,) to the reference (fitted for kabsch, as aligned otherwise);
    ambiguous (frames,) nearly degenerate principal axes or sign (principal only)."""

    xyz: jax.Array
    rotation: jax.Array
    rmsd: jax.Array
    ambiguous: jax.Array


class AlignTarget(NamedTuple):
    """What every frame is aligned with: weights (atoms,) summing to one;
    index_weights (atoms,) for the principal sign convention; kabsch, the prepared
    reference (its .reference is also what RMSD is measured against)."""

    weights: jax.Array
    index_weights: jax.Array
    kabsch: KabschTarget


@cache
def make_frame_aligner(
    method: str, degeneracy_tol: float = 1e-2
) -> Callable[[jax.Array, AlignTarget], BlockAlignment]:
    """The per-frame kernel (xyz (atoms, dims), AlignTarget) -> BlockAlignment of one
    frame (differentiable: the OpenMM latent force takes its gradient)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")

    def align_frame(xyz, target: AlignTarget):
        dims = xyz.shape[-1]
        if method == "kabsch":
            fit = superpose_frame(xyz, target.kabsch)
            return BlockAlignment(fit.xyz, fit.rotation, fit.rmsd, jnp.array(False))
        if method == "principal":
            result = align_principal_frame(xyz, target.weights, target.index_weights)
            ambiguous = (result.relative_gap < degeneracy_tol) | (
                result.sign_strength < degeneracy_tol
            )
            aligned, rotation = result.xyz, result.rotation
        else:
            aligned = xyz - compute_center_of_mass(xyz, target.weights)[None, :]
            rotation, ambiguous = jnp.eye(dims, dtype=xyz.dtype), jnp.array(False)
        rmsd = compute_weighted_rmsd(aligned, target.kabsch.reference, target.weights)
        return BlockAlignment(aligned, rotation, rmsd, ambiguous)

    return align_frame


@cache
def make_block_aligner(method: str, degeneracy_tol: float = 1e-2) -> Callable[..., BlockAlignment]:
    """A jit-compiled function (xyz (frames, atoms, dims) float32, AlignTarget) ->
    BlockAlignment. Cached per (method, tolerance), so a block size compiles once."""
    return jax.jit(jax.vmap(make_frame_aligner(method, degeneracy_tol), in_axes=(0, None)))


@jax.jit
def count_axis_changes(rotations: jax.Array, previous: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Swaps and sign flips of the principal axes between consecutive frames.

    rotations: (frames, dims, dims); previous: (dims, dims), the frame before the first
    (pass rotations[0] when there is none). Returns (swaps, flips) as integer counts.
    """
    before = jnp.concatenate([previous[None], rotations[:-1]])
    change = jax.vmap(compare_axes)(before, rotations)
    return jnp.sum(change.swapped), jnp.sum(change.flipped)
