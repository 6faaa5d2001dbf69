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

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj.metrics._plausibility import compute_angles, compute_signed_volumes
from vaetraj.metrics._structure import compute_pair_distances
from vaetraj.metrics._trig import arctan2

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


def compute_dihedrals(xyz: jax.Array, torsions: jax.Array) -> jax.Array:
    """(torsions,) dihedral angles in radians, in (-pi, pi], of one 3D frame; the
    IUPAC sign convention (mdtraj's `compute_dihedrals`)."""
    b1 = xyz[torsions[:, 1]] - xyz[torsions[:, 0]]
    b2 = xyz[torsions[:, 2]] - xyz[torsions[:, 1]]
    b3 = xyz[torsions[:, 3]] - xyz[torsions[:, 2]]
    n1, n2 = jnp.cross(b1, b2), jnp.cross(b2, b3)
    b2_length = jnp.sqrt(jnp.sum(b2**2, axis=-1) + _TINY)
    y = b2_length * jnp.sum(b1 * n2, axis=-1)
    x = jnp.sum(n1 * n2, axis=-1)
    # a collinear triple has no dihedral; the tiny offset keeps its gradient finite
    return arctan2(y, x + _TINY)


def evaluate_table(table: Table, row: jax.Array, x: jax.Array) -> jax.Array:
    """Energies (n,) of values x (n,) on table rows `row` (n,), interpolated linearly;
    the quadratic tail past an end where its width is > 0, the end value where it is 0."""
    points = table.values.shape[1]
    lo, step = table.lo[row], table.step[row]
    tail = jnp.where(x < lo, table.tail_low[row], table.tail_high[row])
    u = (x - lo) / step
    inside = jnp.clip(u, 0.0, points - 1.0)
    index = jnp.minimum(jnp.floor(inside).astype(jnp.int32), points - 2)
    frac = inside - index
    low, high = table.values[row, index], table.values[row, index + 1]  # two gathers
    energy = low + frac * (high - low)
    past = jnp.abs(u - inside) * step
    rise = jnp.where(tail > 0, 0.5 * (past / jnp.where(tail > 0, tail, 1.0)) ** 2, 0.0)
    return energy + rise


def evaluate_periodic_table(table: Table, row: jax.Array, x: jax.Array) -> jax.Array:
    """Energies (n,) of angles x (n,) on periodic table rows, interpolated linearly."""
    points = table.values.shape[1]
    u = jnp.mod((x - table.lo[row]) / table.step[row], points)
    index = jnp.minimum(jnp.floor(u).astype(jnp.int32), points - 1)
    frac = u - index
    low, high = table.values[row, index], table.values[row, (index + 1) % points]
    return low + frac * (high - low)


def compute_term_energies(
    xyz: jax.Array,
    potential: StatisticalPotential,
    pairs: jax.Array | None = None,
    mask: jax.Array | None = None,
) -> TermEnergies:
    """U(x) of one structure (atoms, dims) by kind of term, in kT. `pairs` (n, 3), two
    atoms and their class's row, replaces the potential's pair list (a neighbour list:
    pairs past every cutoff contribute nothing); `mask` (n,) bool leaves out the rows
    that are False (a list's unused slots)."""
    p = potential
    bond = compute_pair_distances(xyz, p.bonds)
    stretch = jax.nn.relu(jnp.abs(bond - p.bond_mean) / p.bond_std - p.bond_flat)
    bonds = 0.5 * jnp.sum(stretch**2)
    angle = compute_angles(xyz, p.angles)
    angles = jnp.sum(evaluate_table(p.angle_table, jnp.arange(len(p.angles)), angle))
    if xyz.shape[-1] == 3 and p.torsions.shape[0]:
        phi = compute_dihedrals(xyz, p.torsions)
        rows = jnp.arange(len(p.torsions))
        torsions = jnp.sum(evaluate_periodic_table(p.torsion_table, rows, phi))
    else:
        torsions = jnp.zeros((), xyz.dtype)
    listed = jnp.concatenate([p.pairs, p.pair_class[:, None]], axis=1) if pairs is None else pairs
    if listed.shape[0]:
        r = compute_pair_distances(xyz, listed[:, :2])
        energy = evaluate_table(p.pair_table, listed[:, 2], r)
        contacts = jnp.sum(energy if mask is None else jnp.where(mask, energy, 0.0))
    else:
        contacts = jnp.zeros((), xyz.dtype)
    if xyz.shape[-1] == 3 and p.centres.shape[0]:
        volume = compute_signed_volumes(xyz, p.centres)
        short = jax.nn.relu(p.volume_floor - p.volume_sign * volume) / p.volume_std
        chirality = 0.5 * jnp.sum(jnp.where(p.volume_sign != 0, short**2, 0.0))
    else:
        chirality = jnp.zeros((), xyz.dtype)
    return TermEnergies(bonds, angles, torsions, contacts, chirality)


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
