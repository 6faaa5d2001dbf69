"""A statistical potential of one structure, in kT, fitted to MD frames by Boltzmann
inversion: what the training frames say each bond, angle, torsion, contact and
stereocentre costs.

    U(x) = sum_bonds  1/2 ((d - mean_d) / std_d)^2                    Gaussian inversion
                      (a constrained bond: flat within 3 floored stds)
         + sum_angles  T_a(theta)                                     tabulated
         + sum_torsions T_t(phi)                                      tabulated, periodic
         + sum_pairs   T_class(r)      (graph distance >= 3, r < the class's cutoff)
         + sum_centres 1/2 (relu(floor_v - sign_v v) / std_v)^2   (stereocentres: a wall
                      short of the smallest signed volume the frames show, so a
                      mirror image costs much and the centre's angles nothing)

A tabulated term T is -log of a kernel density estimate of the term's values in the
frames, divided by the term's Jacobian (sin theta for a 3D angle, r^(dims-1) for a
distance) so that sampling U in Cartesian space gives back the frames' distribution.
It is stored on a grid (its own for each angle and pair class, one periodic grid for
torsions) and interpolated linearly; past a non-periodic grid's ends it rises as the
density estimate's Gaussian tail, 1/2 (distance past the end / bandwidth)^2. A pair
table is 0 at and past its cutoff: beyond a contact's first shell, the tether to the
decoded structure (vaetraj.refine) says where atoms are, not a pair potential.

Each kind's energy is returned apart (`TermEnergies`): a structure is judged by where
each of them and their sum fall among held-out MD frames' values.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj.metrics._plausibility import angle_jacobian, compute_signed_volumes
from vaetraj.metrics._structure import compute_pair_distances, distance_jacobian
from vaetraj.metrics._trig import arctan2
from vaetraj.metrics._vectors import (
    Coordinates,
    Jacobian,
    batch_shape_of,
    cross,
    dims_of,
    dot,
    sub,
    take,
)

KINDS = ("bonds", "angles", "torsions", "contacts", "chirality")
_TINY = 1e-12


class Table(NamedTuple):
    """Tabulated 1D energies, one row per term (or pair class), as arrays.

    lo (n,): the grid's first point; step (n,): its spacing; values (n, points) in kT;
    tail_low/tail_high (n,): the width of the quadratic rise before the first and past
    the last point (0: the end value holds on). A periodic table spans
    [lo, lo + points * step) and wraps; its tails are unused."""

    lo: jax.Array
    step: jax.Array
    values: jax.Array
    tail_low: jax.Array
    tail_high: jax.Array


class StatisticalPotential(NamedTuple):
    """Every term of the potential, as arrays (a pytree for jit).

    bonds (n, 2) with bond_mean/bond_std and bond_flat, the half-width in stds of a
    flat bottom (a bond constrained in MD: 0 kT within it); angles (n, 3) with angle_table (a row per
    angle); torsions (n, 4) with torsion_table (periodic, a row per torsion); pairs
    (n, 2) with pair_class (n,) into pair_table (a row per class, 0 past its last
    point); centres (n, 4) with volume_sign (+1/-1, 0: not a stereocentre),
    volume_floor (the smallest sign * volume in the frames) and volume_std."""

    bonds: jax.Array
    bond_mean: jax.Array
    bond_std: jax.Array
    bond_flat: jax.Array
    angles: jax.Array
    angle_table: Table
    torsions: jax.Array
    torsion_table: Table
    pairs: jax.Array
    pair_class: jax.Array
    pair_table: Table
    centres: jax.Array
    volume_sign: jax.Array
    volume_floor: jax.Array
    volume_std: jax.Array


class TermEnergies(NamedTuple):
    """One structure's energy per kind of term, in kT (scalars)."""

    bonds: jax.Array
    angles: jax.Array
    torsions: jax.Array
    contacts: jax.Array
    chirality: jax.Array

    @property
    def total(self) -> jax.Array:
        return self.bonds + self.angles + self.torsions + self.contacts + self.chirality


def compute_dihedrals(xyz: Coordinates, torsions: jax.Array) -> jax.Array:
    """(torsions,) dihedral angles in radians, in (-pi, pi], of one 3D frame (atoms,
    3), or (torsions, *batch) of a batch's columns (`vaetraj.metrics._vectors`); the
    IUPAC sign convention (mdtraj's `compute_dihedrals`)."""
    return dihedral_jacobian(xyz, torsions)[0]


def _column(v: jax.Array, like: jax.Array) -> jax.Array:
    """A per-term (n,) array shaped to broadcast against per-term values (n, *batch)."""
    return v.reshape(v.shape + (1,) * (like.ndim - 1))


def _lookup(table: Table, row: jax.Array, index: jax.Array, after: jax.Array):
    """The table's values at `index` and at `after` (n, *batch), rows `row` (n,):
    gathered from the flattened table (one index per value, not two)."""
    points = table.values.shape[1]
    flat = table.values.reshape(-1)
    start = _column(row * points, index)
    return flat[start + index], flat[start + after]


def evaluate_table(table: Table, row: jax.Array, x: jax.Array) -> jax.Array:
    """Energies (n, *batch) of values x (n, *batch) on table rows `row` (n,),
    interpolated linearly; the quadratic tail past an end where its width is > 0, the
    end value where it is 0."""
    return _table_with_slope(table, row, x)[0]


def _table_with_slope(table: Table, row: jax.Array, x: jax.Array):
    """`evaluate_table`'s energies and their derivatives by x, the slope of the
    segment or of the tail x is on (0 past an end without a tail)."""
    points = table.values.shape[1]
    lo, step = _column(table.lo[row], x), _column(table.step[row], x)
    tail = jnp.where(x < lo, _column(table.tail_low[row], x), _column(table.tail_high[row], x))
    u = (x - lo) / step
    inside = jnp.clip(u, 0.0, points - 1.0)
    index = jnp.minimum(jnp.floor(inside).astype(jnp.int32), points - 2)
    frac = inside - index
    low, high = _lookup(table, row, index, index + 1)
    past = (u - inside) * step  # signed: < 0 before the first point, > 0 after the last
    width = jnp.where(tail > 0, tail, 1.0)
    rise = jnp.where(tail > 0, 0.5 * (past / width) ** 2, 0.0)
    on_grid = (u > 0.0) & (u < points - 1.0)
    slope = jnp.where(on_grid, (high - low) / step, jnp.where(tail > 0, past / width**2, 0.0))
    return low + frac * (high - low) + rise, slope


def evaluate_periodic_table(table: Table, row: jax.Array, x: jax.Array) -> jax.Array:
    """Energies (n, *batch) of angles x (n, *batch) on periodic table rows `row` (n,),
    interpolated linearly."""
    return _periodic_with_slope(table, row, x)[0]


def _periodic_with_slope(table: Table, row: jax.Array, x: jax.Array):
    """`evaluate_periodic_table`'s energies and their derivatives by x."""
    points = table.values.shape[1]
    step = _column(table.step[row], x)
    u = jnp.mod((x - _column(table.lo[row], x)) / step, points)
    index = jnp.minimum(jnp.floor(u).astype(jnp.int32), points - 1)
    frac = u - index
    low, high = _lookup(table, row, index, (index + 1) % points)
    return low + frac * (high - low), (high - low) / step


# -- tabulated terms with their gradients written out ---------------------------------
#
# Left to autodiff, a tabulated term's gradient is one chain (the table's slope, then
# the geometry's derivatives) that ends in one array per atom of the term and per
# coordinate; XLA's CPU backend fused that whole chain into each of those arrays and
# computed it again for each (6 times for a contact, 12 for a torsion): about two
# thirds of a protein refiner step. Here each term's value comes with its derivatives
# by each atom's coordinates (the textbook formulas), and the backward pass only scales
# them by the table's slope and adds them into the atoms.


def dihedral_jacobian(xyz: Coordinates, index: jax.Array) -> tuple[jax.Array, Jacobian]:
    """The dihedral (`compute_dihedrals`) and its derivatives: the end atoms move it
    along their planes' normals, |b2| n / |n|^2; the middle two share the rest
    (Blondel & Karplus 1996)."""
    ends = [take(xyz, index[:, k]) for k in range(4)]
    b1, b2, b3 = (sub(ends[k + 1], ends[k]) for k in range(3))
    n1, n2 = cross(b1, b2), cross(b2, b3)
    length2 = dot(b2, b2)
    length = jnp.sqrt(length2 + _TINY)
    phi = arctan2(length * dot(b1, n2), dot(n1, n2) + _TINY)
    first_scale, last_scale = -length / (dot(n1, n1) + _TINY), length / (dot(n2, n2) + _TINY)
    first = tuple(first_scale * c for c in n1)
    last = tuple(last_scale * c for c in n2)
    p, q = dot(b1, b2) / (length2 + _TINY), dot(b3, b2) / (length2 + _TINY)
    second = tuple(q * g - (1 + p) * f for f, g in zip(first, last, strict=True))
    third = tuple(p * f - (1 + q) * g for f, g in zip(first, last, strict=True))
    return phi, [first, second, third, last]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _tabled_energies(geometry, periodic, xyz: Coordinates, index, table: Table, rows) -> jax.Array:
    """Energies (n, *batch) of the terms on atoms `index` (n, k): the table's rows
    `rows` (n,) at the value `geometry` gives them, gradient by hand (see above)."""
    return _tabled_forward(geometry, periodic, xyz, index, table, rows)[0]


def _tabled_forward(geometry, periodic, xyz, index, table, rows):
    value, jacobian = geometry(xyz, index)
    evaluate = _periodic_with_slope if periodic else _table_with_slope
    energy, slope = evaluate(table, rows, value)
    return energy, (xyz, index, slope, jacobian)


def _tabled_backward(geometry, periodic, residuals, cotangent):
    xyz, index, slope, jacobian = residuals
    scale = cotangent * slope
    if not isinstance(xyz, tuple):  # a frame (atoms, dims)
        grad = jnp.zeros_like(xyz)
        for atom, parts in enumerate(jacobian):
            grad = grad.at[index[:, atom]].add(jnp.stack([scale * part for part in parts], -1))
        return grad, None, None, None
    columns = [jnp.zeros_like(column) for column in xyz]
    for atom, parts in enumerate(jacobian):
        for k, part in enumerate(parts):
            columns[k] = columns[k].at[index[:, atom]].add(scale * part)
    return tuple(columns), None, None, None


_tabled_energies.defvjp(_tabled_forward, _tabled_backward)


def _bond_energies(xyz: Coordinates, p: StatisticalPotential) -> jax.Array:
    bond = compute_pair_distances(xyz, p.bonds)
    deviation = jnp.abs(bond - _column(p.bond_mean, bond)) / _column(p.bond_std, bond)
    return 0.5 * jax.nn.relu(deviation - _column(p.bond_flat, bond)) ** 2


def _chirality_energies(xyz: Coordinates, p: StatisticalPotential) -> jax.Array:
    volume = compute_signed_volumes(xyz, p.centres)
    sign = _column(p.volume_sign, volume)
    short = jax.nn.relu(_column(p.volume_floor, volume) - sign * volume)
    return jnp.where(sign != 0, 0.5 * (short / _column(p.volume_std, volume)) ** 2, 0.0)


def compute_term_energies(
    xyz: Coordinates,
    potential: StatisticalPotential,
    pairs: jax.Array | None = None,
    mask: jax.Array | None = None,
) -> TermEnergies:
    """U(x) by kind of term, in kT, of one structure (atoms, dims): scalars; or of a
    batch's columns (`vaetraj.metrics._vectors`), each (atoms, *batch): each (*batch).
    `pairs` (n, 3), two atoms and their class's row, replaces the potential's pair
    list (a neighbour list: pairs past every cutoff contribute nothing); `mask` (n,)
    bool leaves out the rows that are False (a list's unused slots)."""
    p = potential
    three_d = dims_of(xyz) == 3
    energies = dict.fromkeys(KINDS, jnp.zeros(batch_shape_of(xyz), jnp.float32))
    if len(p.bonds):
        energies["bonds"] = jnp.sum(_bond_energies(xyz, p), axis=0)
    if len(p.angles):
        rows = jnp.arange(len(p.angles))
        angle = _tabled_energies(angle_jacobian, False, xyz, p.angles, p.angle_table, rows)
        energies["angles"] = jnp.sum(angle, axis=0)
    if three_d and len(p.torsions):
        rows = jnp.arange(len(p.torsions))
        torsion = _tabled_energies(dihedral_jacobian, True, xyz, p.torsions, p.torsion_table, rows)
        energies["torsions"] = jnp.sum(torsion, axis=0)
    listed = jnp.concatenate([p.pairs, p.pair_class[:, None]], axis=1) if pairs is None else pairs
    if len(listed):
        energy = _tabled_energies(
            distance_jacobian, False, xyz, listed[:, :2], p.pair_table, listed[:, 2]
        )
        if mask is not None:
            energy = jnp.where(_column(mask, energy), energy, 0.0)
        energies["contacts"] = jnp.sum(energy, axis=0)
    if three_d and len(p.centres):
        energies["chirality"] = jnp.sum(_chirality_energies(xyz, p), axis=0)
    return TermEnergies(**energies)


def compute_statistical_energy(
    xyz: jax.Array, potential: StatisticalPotential, pairs: jax.Array | None = None
) -> jax.Array:
    """U(x) of one structure, in kT (see `compute_term_energies`)."""
    return compute_term_energies(xyz, potential, pairs).total


# -- fitting: NumPy, from histograms the caller accumulated over frames ---------------


def silverman_bandwidth(std: np.ndarray, count: int) -> np.ndarray:
    """Silverman's rule of thumb for a Gaussian kernel: 1.06 std n^(-1/5)."""
    return 1.06 * np.asarray(std, np.float64) * max(count, 1) ** -0.2


def deposit(values: np.ndarray, rows: np.ndarray, lo: np.ndarray, step: np.ndarray,
            points: int, periodic: bool = False) -> np.ndarray:  # fmt: skip
    """Counts (len(lo), points): each of the flat `values` (n,) on the grid of its row
    `rows` (n,), shared linearly between the two nearest points (cloud in cell);
    values off a non-periodic grid are left out."""
    values, rows = np.ravel(values).astype(np.float64), np.ravel(rows)
    u = (values - lo[rows]) / step[rows]
    if periodic:
        u = np.mod(u, points)
    index = np.floor(u).astype(np.int64)
    frac = u - index
    upper = (index + 1) % points if periodic else index + 1
    counts = np.zeros(len(lo) * points)
    for at, weight in ((index, 1 - frac), (upper, frac)):
        ok = (at >= 0) & (at < points)
        counts += np.bincount((rows * points + at)[ok], weight[ok], minlength=counts.size)
    return counts.reshape(len(lo), points)


def log_density(counts: np.ndarray, width: np.ndarray, periodic: bool = False) -> np.ndarray:
    """log of each row of counts (n, points) convolved with a Gaussian of `width` (n,)
    grid steps: the log kernel density estimate on the grid (unnormalized), computed in
    log space so that far from every count it falls as the kernel's quadratic tail
    instead of underflowing."""
    points = counts.shape[1]
    offset = np.arange(points)[None, :] - np.arange(points)[:, None]  # [from, to]
    if periodic:
        offset = (offset + points // 2) % points - points // 2
    width = np.maximum(np.asarray(width, np.float64), 0.5)
    with np.errstate(divide="ignore"):
        log_counts = np.log(np.asarray(counts, np.float64))
    terms = log_counts[:, :, None] - 0.5 * (offset[None] / width[:, None, None]) ** 2
    peak = terms.max(axis=1, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(terms - peak).sum(axis=1)) + peak[:, 0]


def invert_density(log_density: np.ndarray, jacobian: np.ndarray | None = None) -> np.ndarray:
    """-log(density / jacobian) per row (n, points), shifted to a minimum of 0. A row
    with no counts at all is flat (0)."""
    energy = -np.asarray(log_density, np.float64)
    if jacobian is not None:
        energy = energy + np.log(np.maximum(jacobian, _TINY))
    finite = np.isfinite(energy)
    energy = np.where(finite, energy, 0.0)
    low = np.where(finite, energy, np.inf).min(axis=1, keepdims=True)
    return np.where(np.isfinite(low), energy - low, 0.0)
