"""The training frames' statistical potential, fitted and stored with the model, and
the ranges its energies take on held-out MD frames: the judge of every generated
structure (`vaetraj.metrics.compute_term_energies` says what each term is).

Fitting reads at most HISTOGRAM_FRAMES training frames spread evenly over the run:

- bonds: each one's mean and std (Gaussian Boltzmann inversion; a bond constrained in
  MD gets a flat bottom instead of a spread it never had);
- stereocentres: a wall short of the smallest signed volume the frames show;
- angles: a kernel density estimate of each angle on its own grid (the data's range
  and four bandwidths either side, Silverman's bandwidth), inverted with sin(theta) in
  3D;
- torsions (3D): each proper dihedral's estimate on a periodic 5-degree grid;
- contacts: non-bonded pairs at graph distance >= 3 in classes (the elements of the
  two atoms, and graph distance 3 or 4 and more), each class's estimate from its
  closest approach in the frames to CONTACT_SHELL times it, inverted with r^(dims-1)
  and 0 at its far end; below the closest approach a steep wall (WALL_WIDTH). Pairs
  whose distance the bonded terms set get the wall alone: 1-3 pairs (the angle's end
  atoms), and in 3D 1-4 pairs (a torsion's).

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

from vaetraj._device import to_device
from vaetraj._interrupt import check_stop
from vaetraj._programs import kept
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
    frames_as_columns,
    invert_density,
    log_density,
    silverman_bandwidth,
)
from vaetraj.refine import (
    ThermalSettings,
    make_thermal_refiner,
    pair_cutoffs,
    pairs_within,
)

POINTS = 64
TORSION_POINTS = 72
HISTOGRAM_FRAMES = 20_000
CONTACT_SHELL = 1.5
# Closer than a class's closest approach in the frames, the energy rises as
# 1/2 ((closest - r) / (WALL_WIDTH closest))^2: no estimate says how steep a repulsive
# core is where no frame went, and a smooth one is far too soft (a 1-3 pair of the
# built-in polymer 5% inside its closest approach costs 12 kT of its Lennard-Jones).
WALL_WIDTH = 0.01
PERCENTILES = (1.0, 99.0)
CALIBRATION_FRAMES = 128
SAMPLE_TIME = 40.0  # the thermal sampler's run, in units of its fastest periods / 2 pi
# its longest step: omega dt about 0.28 for the bonds and bends the mass matrices even
# out (BAOAB samples a harmonic term exactly at any stable step, omega dt < 2)
MAX_DT = 0.2
RELAX_STEPS = 50  # Adam steps out of the decoder's overlaps before sampling
CALIBRATION_ROUNDS = 1
# The refiner's neighbour list (proteins): its skin, its rebuild period and the reach of
# its candidates, in mean bond lengths. A thin skin rebuilt often lists fewer pairs:
# on adenylate kinase (1,656 heavy atoms, batches of 64) 0.2 bonds and every 10 steps
# refined 128 structures in 9 to 10 s against 11 to 14 s for 0.5 bonds every 25 steps
# (three runs each), their energies alike; the candidates keep the old reach, 1.5 bonds.
SKIN_BONDS = 0.2
REBUILD_EVERY = 10
REACH_BONDS = 1.5
REFINE_RETRIES = 2  # larger neighbour lists tried before every pair
LIST_QUANTUM = 2048
REFINE_CHUNK = 64  # structures refined together, over one neighbour list
QUANTILE_LEVELS = np.linspace(0.005, 0.995, 100)
JUDGED = (*KINDS, "total")
_PAIR_BUDGET = 20_000_000
CHUNK = 4096  # structures in one kernel call at most
MIN_BOND_STD = 0.005  # relative to the bond's mean (constrained bonds, float32 rounding)
# A bond whose spread in the frames is under that floor was constrained in MD (bonds to
# hydrogen, usually): no thermal spread to invert. Its term is flat within
# CONSTRAINED_FLAT floored stds, so generated bonds may wander there without counting
# as hotter than MD's, whose constrained bonds cost nothing (AMBER on alanine
# dipeptide: 0.0015 nm off a C-H bond is 0.3 kJ/mol).
CONSTRAINED_FLAT = 3.0
MIN_ANGLE_STD = 0.01  # radians


def contact_pairs(terms: GeometryTerms) -> tuple[np.ndarray, np.ndarray]:
    """The pairs the contact term covers (n, 2) and their graph distances (n,): the
    non-bonded pairs (3, or 4 for 4 and more), then the angles' end atoms (2)."""
    pairs = np.concatenate([terms.pairs, terms.one_three]).astype(np.int32)
    separation = np.concatenate([terms.separation, np.full(len(terms.one_three), 2)])
    return pairs, separation.astype(np.int32)


def pair_classes(terms: GeometryTerms, elements: list[str]) -> tuple[np.ndarray, list[str]]:
    """Each contact pair's class (pairs,) and the class names ("C-N:3", "C-C:4+"), in
    sorted order."""
    pairs, separation = contact_pairs(terms)
    kinds = sorted(set(elements))
    code = np.asarray([kinds.index(e) for e in elements], np.int64).reshape(-1)
    first, second = code[pairs[:, 0]], code[pairs[:, 1]]
    shell = np.minimum(separation, 4) - 2  # 2, 3, 4+
    key = (np.minimum(first, second) * len(kinds) + np.maximum(first, second)) * 3 + shell
    found, index = np.unique(key, return_inverse=True)
    names = [
        f"{kinds[k // 3 // len(kinds)]}-{kinds[k // 3 % len(kinds)]}:{('2', '3', '4+')[k % 3]}"
        for k in found.tolist()
    ]
    order = np.argsort(np.asarray(names, dtype=str), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[index].astype(np.int32).reshape(-1), [names[i] for i in order]


def chunk_size(pairs: int = 0) -> int:
    """Structures judged in one kernel call: at most CHUNK, fewer when each has many
    pairs (about _PAIR_BUDGET pair distances in memory at once)."""
    return max(1, min(CHUNK, _PAIR_BUDGET // max(1, pairs)))


def frame_chunks(n: int, pairs: int = 0):
    """Slices of at most `chunk_size(pairs)` structures; one empty slice for n = 0."""
    size = chunk_size(pairs)
    for part in [slice(start, start + size) for start in range(0, n, size)] or [slice(0, 0)]:
        check_stop()  # a safe point for a signal (see vaetraj._interrupt)
        yield part


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


def _pair_grid(closest: np.ndarray, names: list[str], dims: int):
    """Each class's grid: from its closest approach to CONTACT_SHELL times it (pairs
    held by bonded terms get a short grid whose values are left at 0: their term is
    the wall alone)."""
    shell = np.where(_wall_only(names, dims), 1.05, CONTACT_SHELL)
    closest = np.maximum(closest, 1e-6)  # two atoms that met in some frame: no grid of 0
    return closest, (shell - 1.0) * closest / (POINTS - 1)


def _wall_only(names: list[str], dims: int) -> np.ndarray:
    """Classes whose distances the bonded terms already set: 1-3 pairs (their angle),
    and in 3D 1-4 pairs (their torsion and two angles); a second term for the same
    distance would count its restraint twice and freeze it."""
    held = (":2", ":3") if dims == 3 else (":2",)
    return np.asarray([name.endswith(held) for name in names], dtype=bool)


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
    for part in frame_chunks(len(rows), len(classes)):
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
    no_angles, no_torsions = jnp.zeros((0, 3), jnp.int32), jnp.zeros((0, 4), jnp.int32)
    pairs = jnp.asarray(contact_pairs(terms)[0])
    closest = np.full(len(pairs), np.inf)
    for part in frame_chunks(len(rows), len(pairs)):
        frames = jnp.asarray(xyz[rows[part]], jnp.float32)
        _, _, distance = kernel(frames, no_angles, no_torsions, pairs)
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


def _invert_pairs(counts: np.ndarray, grid, names: list[str], dims: int) -> np.ndarray:
    """Contact energies on their classes' grids: the density over r^(dims-1) with
    Silverman's bandwidth for a uniform spread over the grid, 0 at the far end; 0
    throughout for the classes the bonded terms hold (`_wall_only`)."""
    lo, step = grid
    width = silverman_bandwidth(POINTS * step / math.sqrt(12), 1)
    width = width * np.maximum(counts.sum(1), 1) ** -0.2
    radius = lo[:, None] + step[:, None] * np.arange(POINTS)
    values = invert_density(log_density(counts, width / step), radius ** (dims - 1))
    return np.where(_wall_only(names, dims)[:, None], 0.0, values - values[:, -1:])


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
    rows = rows[spread_frames(len(rows), HISTOGRAM_FRAMES)]
    classes, names = pair_classes(terms, elements)
    closest = _closest_by_class(xyz, rows, terms, classes, len(names))
    angle_grid = _angle_grid(angle, len(rows))
    pair_grid = _pair_grid(closest, names, dims)
    angle_counts, torsion_counts, pair_counts = _histograms(
        xyz, rows, terms, classes, angle_grid, pair_grid
    )
    angle_lo, angle_step, angle_width = angle_grid
    angle_values = _invert_angles(angle_counts, angle_grid, dims)
    torsion_values = invert_density(
        log_density(torsion_counts, _circular_width(torsion_counts, len(rows)), periodic=True)
    )
    pair_lo, pair_step = pair_grid
    pair_values = _invert_pairs(pair_counts, pair_grid, names, dims)
    return {
        "bond_mean": bond.mean.tolist(),
        "bond_std": np.maximum(bond.std, MIN_BOND_STD * bond.mean).tolist(),
        "bond_flat": np.where(bond.std < MIN_BOND_STD * bond.mean, CONSTRAINED_FLAT, 0.0).tolist(),
        "angles": _table(angle_lo, angle_step, angle_values, angle_width, angle_width),
        "torsions": _table(
            np.full(len(terms.torsions), -math.pi),
            np.full(len(terms.torsions), 2 * math.pi / TORSION_POINTS),
            torsion_values,
            np.zeros(len(terms.torsions)),
            np.zeros(len(terms.torsions)),
        ),
        "pair_classes": names,
        "pairs": _table(
            pair_lo, pair_step, pair_values, WALL_WIDTH * closest, np.zeros(len(names))
        ),
        "volume_sign": np.asarray(handedness, float).tolist(),
        "volume_floor": np.where(
            handedness > 0, volume.min, np.where(handedness < 0, -volume.max, 0.0)
        ).tolist(),
        "volume_std": np.maximum(volume.std, 1e-6).tolist(),
    }


def thermal_settings(fitted: dict[str, Any], calibrating: bool = False) -> ThermalSettings:
    """The sampler's steps for this potential: a time step of at most MAX_DT (every
    atom's mass matrix puts its bonds and bends near period 2 pi / sqrt(2)), shorter
    where a contact wall is stiffer than the softest bond by more than the step can
    follow (omega dt at most 1.5), and SAMPLE_TIME of sampling whatever the step.
    Calibrating starts from MD frames, already thermal: no relaxation, half the time."""
    softest = 1.0 / max(fitted["bond_std"], default=1.0) ** 2
    closest = min(fitted["pairs"]["lo"], default=math.inf)
    wall = 1.0 / (WALL_WIDTH * closest) ** 2 if math.isfinite(closest) and closest > 0 else 0
    # at least 0.01 (4,000 steps): a wall stiffer than that comes from two atoms that
    # all but met in some frame, and is left to the relaxation
    dt = min(MAX_DT, max(0.01, 1.5 / math.sqrt(max(wall / softest, 1e-12))))
    dt = float(f"{dt:.3g}")
    bonds = fitted["bond_mean"]
    bond = float(np.mean(bonds)) if bonds else 1.0
    return ThermalSettings(
        relax_steps=0 if calibrating else RELAX_STEPS,
        sample_steps=math.ceil(SAMPLE_TIME / dt / (2 if calibrating else 1)),
        dt=dt,
        skin=SKIN_BONDS * bond,
        reach=REACH_BONDS * bond,
        rebuild_every=REBUILD_EVERY,
    )


@functools.cache
def refiner(settings: ThermalSettings):
    """The compiled thermal refiner of these settings, made once."""
    return kept("refine", make_thermal_refiner(settings), static=settings)


@functools.cache
def _shell_counts_kernel(shells: tuple[float, ...]):
    def counts(xyz, pairs, cutoff):
        return jnp.stack([jnp.sum(pairs_within(xyz, pairs, cutoff + shell)) for shell in shells])

    return jax.jit(counts)


def _sized(settings: ThermalSettings, xyz: np.ndarray, potential: StatisticalPotential):
    """The settings with neighbour-list arrays sized from the pairs within the shells
    of any of structures xyz (one chunk, whose structures share a list): a quarter
    more, up to a multiple of LIST_QUANTUM (a few sizes to compile)."""
    shells = (settings.reach, settings.skin)
    kernel = _shell_counts_kernel(shells)
    union = np.asarray(kernel(jnp.asarray(xyz), potential.pairs, pair_cutoffs(potential)))
    sizes = [LIST_QUANTUM * math.ceil((1.25 * count + 1) / LIST_QUANTUM) for count in union]
    return settings._replace(candidates=sizes[0], listed=min(sizes))


def run_refiner(
    xyz: np.ndarray,
    potential: StatisticalPotential,
    tether: jax.Array,
    mean_bond: jax.Array,
    settings: ThermalSettings,
    *,
    seed: int = 0,
):
    """Thermal refinement of structures (n, atoms, dims) in chunks of REFINE_CHUNK (one
    batch and one neighbour list each), as NumPy arrays (xyz, moved). The structures
    of a chunk whose list overflowed its arrays are refined again with arrays twice as
    large, up to REFINE_RETRIES times, then over every pair."""
    pairs = len(potential.pairs)
    listing = pairs > settings.max_pairs
    if listing and len(xyz):
        settings = _sized(settings, xyz[:REFINE_CHUNK], potential)
    xyz = np.asarray(xyz, np.float32)
    out, moved = np.empty_like(xyz), np.empty(len(xyz), np.float32)
    todo, key = np.arange(len(xyz)), jax.random.key(seed)
    for attempt in range(REFINE_RETRIES + 2):
        if not len(todo):
            break
        if attempt == REFINE_RETRIES + 1:  # the last word: every pair, no list
            settings = settings._replace(max_pairs=pairs)
        elif attempt:
            settings = settings._replace(
                candidates=2 * settings.candidates, listed=2 * settings.listed
            )
        per_structure = settings.candidates if pairs > settings.max_pairs else pairs
        size = min(
            REFINE_CHUNK, 1 << (max(1, _PAIR_BUDGET // max(per_structure, 1)).bit_length() - 1)
        )
        refine, flagged = refiner(settings), []
        for number, start in enumerate(range(0, len(todo), size)):
            check_stop()
            rows = todo[start : start + size]
            step_key = jax.random.fold_in(key, attempt * 1_000_003 + number)
            done = padded_call(
                functools.partial(refine, key=step_key),
                xyz[rows], potential, tether, mean_bond,
            )  # fmt: skip
            out[rows], moved[rows] = np.asarray(done.xyz), np.asarray(done.moved)
            flagged.append(rows[np.asarray(done.overflow)])
        todo = np.concatenate(flagged)
    return out, moved


def calibrate_potential(
    fitted: dict[str, Any],
    xyz: np.ndarray,
    rows: np.ndarray,
    terms: GeometryTerms,
    elements: list[str],
    angle: TermStats,
    tether_std: np.ndarray,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """The potential with each angle's table scaled so that sampling it gives the
    frames' spread of that angle (one step of iterative Boltzmann inversion, for the
    spread): angles that share atoms are correlated (the three around a planar carbon
    sum to 360 degrees), and a sum of their marginals' inversions holds each tighter
    than MD did. CALIBRATION_FRAMES training frames, tethered to themselves as
    refinement tethers decoded structures, are sampled at kT = 1; each table is
    multiplied by (sampled variance / the frames' variance) in CALIBRATION_ROUNDS
    rounds, the factor kept within [0.25, 4]. A molecule whose every atom has at most
    two bonds (a bead-spring chain) has no angles that share a vertex: nothing to
    calibrate, and no sampling is run."""
    if not len(terms.angles) or np.bincount(terms.angles[:, 1]).max() < 2:
        return fitted
    starts = np.asarray(xyz[rows[spread_frames(len(rows), CALIBRATION_FRAMES)]], np.float32)
    tether = jnp.asarray(tether_std, jnp.float32)
    mean_bond = jnp.float32(np.mean(fitted["bond_mean"]) if fitted["bond_mean"] else 1.0)
    target = np.maximum(angle.std, MIN_ANGLE_STD) ** 2
    kernel = _values_kernel()
    no_torsions, no_pairs = jnp.zeros((0, 4), jnp.int32), jnp.zeros((0, 2), jnp.int32)
    for step in range(CALIBRATION_ROUNDS):
        check_stop()
        potential = build_potential(fitted, terms, elements)
        sampled, _ = run_refiner(
            starts, potential, tether, mean_bond, thermal_settings(fitted, calibrating=True),
            seed=seed + step,
        )  # fmt: skip
        angles, _, _ = padded_call(
            kernel, sampled, jnp.asarray(terms.angles), no_torsions, no_pairs
        )
        ratio = np.clip(np.var(np.asarray(angles), axis=0) / target, 0.25, 4.0)
        table = dict(fitted["angles"])
        table["values"] = (np.asarray(table["values"]) * ratio[:, None]).round(4).tolist()
        fitted = {**fitted, "angles": table}
    return fitted


def spread_frames(frames: int, most: int) -> np.ndarray:
    """Indices of at most `most` frames spread evenly over `frames` (all when fewer)."""
    if frames <= most:
        return np.arange(frames)
    return np.unique(np.linspace(0, frames - 1, most).round().astype(np.int64))


def _as_table(data: dict[str, list], points: int) -> Table:
    f32 = functools.partial(to_device, dtype=np.float32)
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
    f32 = functools.partial(to_device, dtype=np.float32)
    return StatisticalPotential(
        bonds=to_device(terms.bonds),
        bond_mean=f32(fitted["bond_mean"]),
        bond_std=f32(fitted["bond_std"]),
        bond_flat=f32(fitted["bond_flat"]),
        angles=to_device(terms.angles),
        angle_table=_as_table(fitted["angles"], POINTS),
        torsions=to_device(terms.torsions),
        torsion_table=_as_table(fitted["torsions"], TORSION_POINTS),
        pairs=to_device(contact_pairs(terms)[0]),
        pair_class=to_device(classes),
        pair_table=_as_table(fitted["pairs"], POINTS),
        centres=to_device(terms.centres),
        volume_sign=f32(fitted["volume_sign"]),
        volume_floor=f32(fitted["volume_floor"]),
        volume_std=f32(fitted["volume_std"]),
    )


@functools.cache
def _energy_kernel():
    def energies(xyz, potential):  # each gather reads every frame
        return compute_term_energies(frames_as_columns(xyz), potential)

    return kept("energies", jax.jit(energies))


def padded_call(kernel, xyz: np.ndarray, *args):
    """kernel(structures, *args) on xyz padded with copies of its last structure to
    the next power of two (at least 8), every output cut back to len(xyz): a handful
    of sizes to compile instead of one per count of structures asked for."""
    size = max(8, 1 << max(len(xyz) - 1, 0).bit_length())
    chunk = np.asarray(xyz, np.float32)
    if 0 < len(chunk) < size:
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], size - len(chunk), axis=0)])
    out = kernel(to_device(chunk), *args)
    return jax.tree.map(lambda leaf: np.asarray(leaf)[: len(xyz)], out)


def compute_energies(xyz: np.ndarray, potential: StatisticalPotential) -> np.ndarray:
    """(structures, len(JUDGED)) energies in kT: each kind's, then the sum."""
    kernel = _energy_kernel()
    parts = []
    for part in frame_chunks(len(xyz), len(potential.pairs)):
        energies = TermEnergies(*padded_call(kernel, xyz[part], potential))
        parts.append(np.stack([*map(np.asarray, energies), np.asarray(energies.total)], axis=1))
    return np.concatenate(parts) if parts else np.zeros((0, len(JUDGED)), np.float32)


@functools.cache
def _approach_kernel():
    def approach(xyz, pairs, closest):
        distance = compute_pair_distances(frames_as_columns(xyz), pairs)  # (pairs, n)
        return jnp.min(distance / closest[:, None], axis=0, initial=jnp.inf)

    return jax.jit(approach)


def closest_approach(xyz: np.ndarray, potential: StatisticalPotential) -> np.ndarray:
    """(structures,) each structure's closest contact pair (graph distance >= 2) as a
    fraction of its class's closest approach in the training frames: below 1, two
    atoms sit closer than any frame put such a pair (inf without contact pairs)."""
    if not len(potential.pairs):
        return np.full(len(xyz), np.inf)
    closest = potential.pair_table.lo[potential.pair_class]
    parts = [
        np.asarray(padded_call(_approach_kernel(), xyz[part], potential.pairs, closest))
        for part in frame_chunks(len(xyz), len(potential.pairs))
    ]
    return np.concatenate(parts)


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
