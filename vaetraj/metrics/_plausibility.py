"""Is a structure one that could exist? The local geometry of one frame (every bond,
every bond angle, the closest non-bonded contact, the handedness of stereocentres),
judged against windows taken from the training frames.

The terms come from the bond graph (`geometry_terms`): bonds, the angles of bonds that
share an atom, non-bonded pairs at graph distance 3 or more (1-2 and 1-3 pairs are held
by the bond and angle windows), and stereocentres: atoms with three or more bonded
neighbours whose signed volume keeps one sign in every training frame (a C-alpha keeps
its L form; a planar carbonyl carbon does not qualify). `fit_geometry_limits` turns
`term_windows` turns the training frames' per-term statistics into per-bond and
per-angle windows; `check_frame` judges one frame (vmap over frames).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj.metrics._structure import compute_pair_distances, compute_rg
from vaetraj.metrics._trig import arctan2
from vaetraj.metrics._vectors import (
    Coordinates,
    Jacobian,
    bond_vectors,
    cross,
    dims_of,
    dot,
    norm,
)

# Windows hold the data's whole range and at least mean +- WINDOW_SIGMAS std; std is at
# least MIN_RELATIVE_STD of the mean (constrained bonds, float32 rounding).
WINDOW_SIGMAS = 5.0
MIN_RELATIVE_STD = 0.005
MIN_ANGLE_STD = 0.01  # radians
CONTACT_TOLERANCE = 0.05  # a contact may come this fraction closer than the data's closest
_TINY = 1e-12


class GeometryTerms(NamedTuple):
    """Index arrays of the terms a structure is judged on (NumPy, int32).

    bonds (n, 2); angles (n, 3) as (end, vertex, end); pairs (n, 2) non-bonded at graph
    distance >= 3; centres (n, 4) as (centre, three neighbours), candidates for
    stereocentres (which of them keep a handedness is the data's to say); torsions
    (n, 4), every proper dihedral along a bond (3D only); separation (pairs,): each
    pair's graph distance, 3 or 4 for 4 and more; one_three (n, 2): the end atoms of
    each angle (graph distance 2), each pair once."""

    bonds: np.ndarray
    angles: np.ndarray
    pairs: np.ndarray
    centres: np.ndarray
    torsions: np.ndarray
    separation: np.ndarray
    one_three: np.ndarray


class GeometryLimits(NamedTuple):
    """Windows a plausible frame lies in, as arrays (a pytree for jit).

    bond_lo/bond_hi per bond, angle_lo/angle_hi per angle (radians), contact_min one
    distance for every non-bonded pair, handedness +1/-1 per kept stereocentre (its
    signed volume's sign) and 0 for a candidate that is not one."""

    bonds: jax.Array
    bond_lo: jax.Array
    bond_hi: jax.Array
    angles: jax.Array
    angle_lo: jax.Array
    angle_hi: jax.Array
    pairs: jax.Array
    contact_min: jax.Array
    centres: jax.Array
    handedness: jax.Array


class FrameCheck(NamedTuple):
    """One frame's verdict per kind of term, and its extremes."""

    bonds_ok: jax.Array
    angles_ok: jax.Array
    contacts_ok: jax.Array
    chirality_ok: jax.Array
    min_bond: jax.Array
    max_bond: jax.Array
    mean_bond: jax.Array  # nan without bonds
    min_nonbonded: jax.Array
    rg: jax.Array

    @property
    def plausible(self) -> jax.Array:
        return self.bonds_ok & self.angles_ok & self.contacts_ok & self.chirality_ok


def geometry_terms(atoms: int, bonds: np.ndarray, dims: int = 3) -> GeometryTerms:
    """Bonds, angles, non-bonded pairs (graph distance >= 3) and stereocentre candidates
    (3D only) of `atoms` atoms with bonds (n, 2) in any order."""
    bonds = np.unique(np.sort(np.asarray(bonds, dtype=np.int64).reshape(-1, 2), axis=1), axis=0)
    bonds = bonds[bonds[:, 0] != bonds[:, 1]]
    neighbours: list[list[int]] = [[] for _ in range(atoms)]
    for first, second in bonds:
        neighbours[first].append(int(second))
        neighbours[second].append(int(first))
    angles = [
        (ends[i], vertex, ends[k])
        for vertex, ends in enumerate(map(sorted, neighbours))
        for i in range(len(ends))
        for k in range(i + 1, len(ends))
    ]
    angles_array = np.asarray(angles, dtype=np.int64).reshape(-1, 3)
    near = np.concatenate([bonds, np.sort(angles_array[:, [0, 2]], axis=1)])
    first, second = np.triu_indices(atoms, k=1)
    excluded = np.isin(first * atoms + second, near[:, 0] * atoms + near[:, 1])
    pairs = np.stack([first[~excluded], second[~excluded]], axis=1)
    centres = (
        [(atom, *sorted(ends)[:3]) for atom, ends in enumerate(neighbours) if len(ends) >= 3]
        if dims == 3
        else []
    )
    torsions = _torsions(bonds, neighbours)
    ends = np.sort(torsions[:, [0, 3]], axis=1)
    one_four = np.isin(pairs[:, 0] * atoms + pairs[:, 1], ends[:, 0] * atoms + ends[:, 1])
    return GeometryTerms(
        bonds=bonds.astype(np.int32),
        angles=angles_array.astype(np.int32),
        pairs=pairs.astype(np.int32),
        centres=np.asarray(centres, dtype=np.int32).reshape(-1, 4),
        torsions=(torsions if dims == 3 else torsions[:0]).astype(np.int32),
        separation=np.where(one_four, 3, 4).astype(np.int32),
        one_three=np.unique(near[len(bonds) :], axis=0).reshape(-1, 2).astype(np.int32),
    )


def _torsions(bonds: np.ndarray, neighbours: list[list[int]]) -> np.ndarray:
    """(n, 4) proper dihedrals i-j-k-l of every bond j-k, with i and l distinct atoms
    (a three-membered ring has none)."""
    found = [
        (i, int(j), int(k), l)
        for j, k in bonds
        for i in sorted(neighbours[j])
        if i != k
        for l in sorted(neighbours[k])  # noqa: E741
        if l not in (j, i)
    ]
    return np.asarray(found, dtype=np.int64).reshape(-1, 4)


def compute_angles(xyz: Coordinates, angles: jax.Array) -> jax.Array:
    """(angles,) bond angles in radians of one frame (atoms, dims), or (angles, *batch)
    of a batch's columns (`vaetraj.metrics._vectors`), 2D or 3D, atan2 form."""
    return angle_jacobian(xyz, angles)[0]


def angle_jacobian(xyz: Coordinates, angles: jax.Array) -> tuple[jax.Array, Jacobian]:
    """`compute_angles` of columns, with the derivatives by the three atoms: theta =
    atan2(|u x v|, u . v) for u and v from the middle atom, d theta / d u =
    (u . v / |u|^2 u - v) / |u x v| (u and v swapped for the other end), and the
    middle atom the opposite of their sum."""
    u, v = bond_vectors(xyz, angles, 1, (0, 2))
    if dims_of(xyz) == 2:
        sine = jnp.sqrt((u[0] * v[1] - u[1] * v[0]) ** 2 + _TINY)
    else:
        sine = norm(cross(u, v))
    cosine = dot(u, v)
    along_u, along_v = cosine / dot(u, u), cosine / dot(v, v)
    end_u = tuple((along_u * a - b) / sine for a, b in zip(u, v, strict=True))
    end_v = tuple((along_v * b - a) / sine for a, b in zip(u, v, strict=True))
    middle = tuple(-(a + b) for a, b in zip(end_u, end_v, strict=True))
    return arctan2(sine, cosine), [end_u, middle, end_v]


def compute_signed_volumes(xyz: Coordinates, centres: jax.Array) -> jax.Array:
    """(centres,) signed volume a . (b x c) of the bond vectors from each centre to its
    three listed neighbours, of a 3D frame (atoms, 3), or (centres, *batch) of a
    batch's columns."""
    a, b, c = bond_vectors(xyz, centres, 0, (1, 2, 3))
    return dot(a, cross(b, c))


def check_frame(xyz: jax.Array, limits: GeometryLimits, weights: jax.Array) -> FrameCheck:
    """Judge one frame (atoms, dims) against the windows; empty term lists pass."""
    bond = compute_pair_distances(xyz, limits.bonds)
    angle = compute_angles(xyz, limits.angles)
    contact = compute_pair_distances(xyz, limits.pairs)
    if xyz.shape[-1] == 3 and limits.centres.shape[0]:
        volume = compute_signed_volumes(xyz, limits.centres)
        chirality_ok = jnp.all(limits.handedness * volume >= 0)
    else:
        chirality_ok = jnp.bool_(True)
    min_contact = jnp.min(contact, initial=jnp.inf)
    return FrameCheck(
        bonds_ok=jnp.all((bond >= limits.bond_lo) & (bond <= limits.bond_hi)),
        angles_ok=jnp.all((angle >= limits.angle_lo) & (angle <= limits.angle_hi)),
        contacts_ok=min_contact >= limits.contact_min,
        chirality_ok=chirality_ok,
        min_bond=jnp.min(bond, initial=jnp.inf),
        max_bond=jnp.max(bond, initial=-jnp.inf),
        mean_bond=jnp.mean(bond) if bond.size else jnp.float32(jnp.nan),
        min_nonbonded=min_contact,
        rg=compute_rg(xyz, weights),
    )


class TermStats(NamedTuple):
    """Per-term summary of the training frames (NumPy, float64): min, max, mean, std."""

    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def term_windows(
    stats: TermStats,
    min_std: np.ndarray | float,
    *,
    lower: float = -np.inf,
    upper: float = np.inf,
) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi] per term: the data's range, widened to at least mean +- WINDOW_SIGMAS
    std (std at least `min_std`), clipped to [lower, upper]."""
    std = np.maximum(stats.std, min_std)
    lo = np.minimum(stats.min, stats.mean - WINDOW_SIGMAS * std)
    hi = np.maximum(stats.max, stats.mean + WINDOW_SIGMAS * std)
    return np.clip(lo, lower, upper), np.clip(hi, lower, upper)


def stereocentre_handedness(volume: TermStats) -> np.ndarray:
    """+1/-1 per candidate centre whose signed volume keeps one sign in every training
    frame and stays clear of zero (|mean| > 3 std: not a planar centre that happened to
    keep its sign), 0 for the rest."""
    same = (volume.min > 0) | (volume.max < 0)
    clear = np.abs(volume.mean) > 3 * volume.std
    return np.where(same & clear, np.sign(volume.mean), 0.0).astype(np.float32)
