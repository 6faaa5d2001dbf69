"""The training frames' statistical potential, fitted and stored with the model, and
the ranges its energies take on held-out MD frames: the judge of every generated
structure (`vaetraj.metrics.compute_term_energies` says what each term is).

Fitting reads at most HISTOGRAM_FRAMES training frames spread evenly over the run:

- bonds and stereocentres: each one's mean and std (Gaussian Boltzmann inversion);
- angles: a kernel density estimate of each angle on its own grid (the data's range
  and four bandwidths either side, Silverman's bandwidth), inverted with sin(theta) in
  3D;
- torsions (3D): each proper dihedral's estimate on a periodic 5-degree grid;
- contacts: non-bonded pairs at graph distance >= 3 in classes (the elements of the
  two atoms, and graph distance 3 or more), each class's estimate from 0.9 to
  CONTACT_SHELL times its closest approach in the frames, inverted with r^(dims-1) and
  0 at its far end.

The judge: each kind's energy and their sum on the held-out frames (the training
frames when no split was made) give a [p1, p99] range per kind; a structure passes when
every kind and the sum lie inside theirs: a structure colder than MD (bonds frozen at
their means) fails as surely as a strained one. The pass rate reported for the MD
frames is two-fold cross-validated (the ranges of one half of the held-out frames
judge the other), so it is what new MD frames would score, not the frames the ranges
came from.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj._interrupt import check_stop
from vaetraj.metrics import (
    KINDS,
    GeometryTerms,
    StatisticalPotential,
    Table,
    TermEnergies,
    TermStats,
    compute_angles,
    compute_dihedrals,
    compute_pair_distances,
    compute_term_energies,
    deposit,
    invert_density,
    log_density,
    silverman_bandwidth,
)

POINTS = 64
TORSION_POINTS = 72
HISTOGRAM_FRAMES = 20_000
CONTACT_SHELL = 1.5
PERCENTILES = (1.0, 99.0)
QUANTILE_LEVELS = np.linspace(0.005, 0.995, 100)
JUDGED = (*KINDS, "total")
_PAIR_BUDGET = 20_000_000
MIN_BOND_STD = 0.005  # relative to the bond's mean (constrained bonds, float32 rounding)
MIN_ANGLE_STD = 0.01  # radians


def contact_pairs(terms: GeometryTerms) -> tuple[np.ndarray, np.ndarray]:
    """The pairs the contact term covers (n, 2) and their graph distances (n,): the
    non-bonded pairs (3, or 4 for 4 and more), then the angles' end atoms (2)."""
    pairs = np.concatenate([terms.pairs, terms.one_three]).astype(np.int32)
    separation = np.concatenate([terms.separation, np.full(len(terms.one_three), 2)])
    return pairs, separation.astype(np.int32)


def pair_classes(terms: GeometryTerms, elements: list[str]) -> tuple[np.ndarray, list[str]]:
    """Each contact pair's class (pairs,) and the class names ("C-N:3", "C-C:4+")."""
    pairs, separation = contact_pairs(terms)
    names = [
        "-".join(sorted((elements[i], elements[j]))) + (":4+" if sep >= 4 else f":{sep}")
        for (i, j), sep in zip(pairs.tolist(), separation.tolist(), strict=True)
    ]
    classes, index = np.unique(np.asarray(names, dtype=str), return_inverse=True)
    return index.astype(np.int32), classes.tolist()


def _chunks(n: int, per_frame: int):
    size = max(1, min(4096, _PAIR_BUDGET // max(1, per_frame)))
    for start in range(0, n, size):
        check_stop()
        yield slice(start, start + size)


@functools.cache
def _values_kernel():
    def values(xyz, angles, torsions, pairs):
        dihedrals = (
            compute_dihedrals(xyz, torsions) if xyz.shape[-1] == 3 else jnp.zeros((0,), xyz.dtype)
        )
        return compute_angles(xyz, angles), dihedrals, compute_pair_distances(xyz, pairs)

    return jax.jit(jax.vmap(values, in_axes=(0, None, None, None)))


def _table(lo, step, values, tail_low, tail_high) -> dict[str, list]:
    return {
        "lo": np.asarray(lo, float).tolist(),
        "step": np.asarray(step, float).tolist(),
        "values": np.asarray(values, float).round(4).tolist(),
        "tail_low": np.asarray(tail_low, float).tolist(),
        "tail_high": np.asarray(tail_high, float).tolist(),
    }


def _angle_grid(angle: TermStats, frames: int):
    std = np.maximum(angle.std, MIN_ANGLE_STD)
    width = silverman_bandwidth(std, frames)
    lo = np.maximum(angle.min - 4 * width, 0.0)
    hi = np.minimum(angle.max + 4 * width, math.pi)
    return lo, (hi - lo) / (POINTS - 1), width


def _pair_grid(closest: np.ndarray, names: list[str]):
    """Each class's grid: from 0.9 to CONTACT_SHELL times its closest approach; for
    1-3 pairs (held by their angle) only up to the closest approach, a wall that adds
    nothing where the frames go."""
    shell = np.where([name.endswith(":2") for name in names], 1.0, CONTACT_SHELL)
    lo = 0.9 * closest
    return lo, (shell * closest - lo) / (POINTS - 1)


def _histograms(xyz, rows, terms, classes, angle_grid, pair_grid):
    """Counts of angles, torsions and short contacts over the frames `rows`."""
    kernel = _values_kernel()
    arrays = [jnp.asarray(t) for t in (terms.angles, terms.torsions, contact_pairs(terms)[0])]
    angle_lo, angle_step, _ = angle_grid
    pair_lo, pair_step = pair_grid
    cutoff = pair_lo + (POINTS - 1) * pair_step
    torsion_lo = np.full(len(terms.torsions), -math.pi)
    torsion_step = np.full(len(terms.torsions), 2 * math.pi / TORSION_POINTS)
    counts = [
        np.zeros((len(terms.angles), POINTS)),
        np.zeros((len(terms.torsions), TORSION_POINTS)),
        np.zeros((len(pair_lo), POINTS)),
    ]
    for part in _chunks(len(rows), len(classes)):
        angle, torsion, distance = (
            np.asarray(v) for v in kernel(jnp.asarray(xyz[rows[part]], jnp.float32), *arrays)
        )
        columns = np.broadcast_to(np.arange(angle.shape[1]), angle.shape)
        counts[0] += deposit(angle, columns, angle_lo, angle_step, POINTS)
        columns = np.broadcast_to(np.arange(torsion.shape[1]), torsion.shape)
        counts[1] += deposit(torsion, columns, torsion_lo, torsion_step, TORSION_POINTS, True)
        near = distance < cutoff[classes]
        column = np.broadcast_to(classes, distance.shape)[near]
        counts[2] += deposit(distance[near], column, pair_lo, pair_step, POINTS)
    return counts


def _closest_by_class(xyz, rows, terms, classes, count) -> np.ndarray:
    kernel = _values_kernel()
    empty = jnp.zeros((0, 3), jnp.int32)
    pairs = jnp.asarray(contact_pairs(terms)[0])
    closest = np.full(len(pairs), np.inf)
    for part in _chunks(len(rows), len(pairs)):
        frames = jnp.asarray(xyz[rows[part]], jnp.float32)
        _, _, distance = kernel(frames, empty[:, :3], empty[:, :4], pairs)
        closest = np.minimum(closest, np.asarray(distance).min(axis=0, initial=np.inf))
    by_class = np.full(count, np.inf)
    np.minimum.at(by_class, classes, closest)
    return by_class


def _circular_width(counts: np.ndarray, frames: int) -> np.ndarray:
    """Silverman's bandwidth (in grid steps) from each torsion's circular spread."""
    grid = np.arange(TORSION_POINTS) * 2 * math.pi / TORSION_POINTS - math.pi
    total = np.maximum(counts.sum(axis=1), 1e-12)
    resultant = np.abs(counts @ np.exp(1j * grid)) / total
    spread = np.sqrt(-2 * np.log(np.clip(resultant, 1e-12, 1.0)))
    width = silverman_bandwidth(spread, frames) / (2 * math.pi / TORSION_POINTS)
    return np.clip(width, 0.5, TORSION_POINTS / 8)


def _invert_angles(counts: np.ndarray, grid, dims: int) -> np.ndarray:
    """Angle energies on their grids; in 3D the density is divided by sin(theta)
    (floored at one bandwidth from 0 and pi, where the estimate smears)."""
    lo, step, width = grid
    theta = lo[:, None] + step[:, None] * np.arange(POINTS)
    jacobian = np.maximum(np.sin(theta), np.sin(width)[:, None]) if dims == 3 else None
    return invert_density(log_density(counts, width / np.maximum(step, 1e-12)), jacobian)


def _invert_pairs(counts: np.ndarray, grid, closest: np.ndarray, dims: int):
    """Contact energies on their classes' grids (the density over r^(dims-1), 0 at the
    far end) and the bandwidths: Silverman's for a uniform spread over the grid."""
    lo, step = grid
    spread = np.maximum(lo + (POINTS - 1) * step - closest, 0.1 * closest) / math.sqrt(12)
    width = silverman_bandwidth(spread, 1) * np.maximum(counts.sum(1), 1) ** -0.2
    radius = lo[:, None] + step[:, None] * np.arange(POINTS)
    values = invert_density(log_density(counts, width / step), radius ** (dims - 1))
    return values - values[:, -1:], width


def fit_potential(
    xyz: np.ndarray,
    rows: np.ndarray,
    terms: GeometryTerms,
    elements: list[str],
    bond: TermStats,
    angle: TermStats,
    volume: TermStats,
    handedness: np.ndarray,
) -> dict[str, Any]:
    """The potential's parameters (JSON-able) from the frames of xyz at `rows` (at most
    HISTOGRAM_FRAMES of them are read, spread evenly) and the frames' running
    statistics of bonds, angles and signed volumes (see the module doc)."""
    dims = xyz.shape[2]
    rows = rows[_spread(len(rows), HISTOGRAM_FRAMES)]
    classes, names = pair_classes(terms, elements)
    closest = _closest_by_class(xyz, rows, terms, classes, len(names))
    angle_grid = _angle_grid(angle, len(rows))
    pair_grid = _pair_grid(closest, names)
    angle_counts, torsion_counts, pair_counts = _histograms(
        xyz, rows, terms, classes, angle_grid, pair_grid
    )
    angle_lo, angle_step, angle_width = angle_grid
    angle_values = _invert_angles(angle_counts, angle_grid, dims)
    torsion_values = invert_density(
        log_density(torsion_counts, _circular_width(torsion_counts, len(rows)), periodic=True)
    )
    pair_lo, pair_step = pair_grid
    pair_values, pair_width = _invert_pairs(pair_counts, pair_grid, closest, dims)
    kept = handedness != 0
    return {
        "bond_mean": bond.mean.tolist(),
        "bond_std": np.maximum(bond.std, MIN_BOND_STD * bond.mean).tolist(),
        "angles": _table(angle_lo, angle_step, angle_values, angle_width, angle_width),
        "torsions": _table(
            np.full(len(terms.torsions), -math.pi),
            np.full(len(terms.torsions), 2 * math.pi / TORSION_POINTS),
            torsion_values,
            np.zeros(len(terms.torsions)),
            np.zeros(len(terms.torsions)),
        ),
        "pair_classes": names,
        "pairs": _table(pair_lo, pair_step, pair_values, pair_width, np.zeros(len(names))),
        "volume_mean": np.where(kept, volume.mean, 0.0).tolist(),
        "volume_std": np.where(kept, np.maximum(volume.std, 1e-6), 0.0).tolist(),
    }


def _spread(frames: int, most: int) -> np.ndarray:
    if frames <= most:
        return np.arange(frames)
    return np.unique(np.linspace(0, frames - 1, most).round().astype(np.int64))


def _as_table(data: dict[str, list], points: int) -> Table:
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    values = np.asarray(data["values"], np.float32).reshape(-1, points)
    return Table(
        f32(data["lo"]), f32(data["step"]), f32(values), f32(data["tail_low"]),
        f32(data["tail_high"]),
    )  # fmt: skip


def build_potential(
    fitted: dict[str, Any], terms: GeometryTerms, elements: list[str]
) -> StatisticalPotential:
    """The kernel's arrays from the stored parameters and the bond graph's terms."""
    classes, names = pair_classes(terms, elements)
    if names != fitted["pair_classes"]:
        raise ValueError("the potential's pair classes do not match the topology's")
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    return StatisticalPotential(
        bonds=jnp.asarray(terms.bonds),
        bond_mean=f32(fitted["bond_mean"]),
        bond_std=f32(fitted["bond_std"]),
        angles=jnp.asarray(terms.angles),
        angle_table=_as_table(fitted["angles"], POINTS),
        torsions=jnp.asarray(terms.torsions),
        torsion_table=_as_table(fitted["torsions"], TORSION_POINTS),
        pairs=jnp.asarray(contact_pairs(terms)[0]),
        pair_class=jnp.asarray(classes),
        pair_table=_as_table(fitted["pairs"], POINTS),
        centres=jnp.asarray(terms.centres),
        volume_mean=f32(fitted["volume_mean"]),
        volume_std=f32(fitted["volume_std"]),
    )


@functools.cache
def _energy_kernel():
    return jax.jit(jax.vmap(compute_term_energies, in_axes=(0, None)))


def compute_energies(xyz: np.ndarray, potential: StatisticalPotential) -> np.ndarray:
    """(structures, len(JUDGED)) energies in kT: each kind's, then the sum."""
    kernel = _energy_kernel()
    parts = []
    for part in _chunks(len(xyz), len(potential.pairs)):
        energies = TermEnergies(*kernel(jnp.asarray(xyz[part], jnp.float32), potential))
        parts.append(np.stack([*map(np.asarray, energies), np.asarray(energies.total)], axis=1))
    return np.concatenate(parts) if parts else np.zeros((0, len(JUDGED)), np.float32)


@dataclass(frozen=True)
class EnergyRanges:
    """[low, high] of each kind's energy and of the sum (JUDGED order), in kT."""

    low: list[float]
    high: list[float]

    @classmethod
    def of(cls, energies: np.ndarray) -> EnergyRanges:
        low, high = np.percentile(energies, PERCENTILES, axis=0)
        return cls(low.tolist(), high.tolist())

    def inside(self, energies: np.ndarray) -> np.ndarray:
        """(structures, len(JUDGED)) bool: each energy inside its range."""
        return (energies >= np.asarray(self.low)) & (energies <= np.asarray(self.high))

    def to_dict(self) -> dict[str, list[float]]:
        return asdict(self)


def cross_validated_pass(energies: np.ndarray) -> float:
    """The share of frames that pass the ranges of the other half of the frames (the
    first and second halves in order, each judging the other); the frames' own share
    when there are fewer than 4."""
    half = len(energies) // 2
    if half < 2:
        return float(EnergyRanges.of(energies).inside(energies).all(axis=1).mean())
    first, second = energies[:half], energies[half:]
    passed = EnergyRanges.of(first).inside(second).all(axis=1).sum()
    passed += EnergyRanges.of(second).inside(first).all(axis=1).sum()
    return float(passed / len(energies))
