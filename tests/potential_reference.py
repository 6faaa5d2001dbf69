"""The statistical potential recomputed in NumPy from a model's stored parameters, for
2D and 3D chains and branched molecules: the tests' independent reference for the
JAX kernel (`vaetraj.metrics.compute_term_energies`) and for the pass rates every
command reports."""

from __future__ import annotations

import numpy as np


def _table(table: dict, rows: np.ndarray, x: np.ndarray, periodic: bool = False) -> np.ndarray:
    lo = np.asarray(table["lo"])[rows]
    step = np.asarray(table["step"])[rows]
    values = np.asarray(table["values"])[rows]
    points = values.shape[1]
    out = np.empty_like(x, dtype=np.float64)
    for k in range(len(rows)):
        grid = lo[k] + step[k] * np.arange(points)
        if periodic:
            period = points * step[k]
            wrapped = np.mod(x[:, k] - lo[k], period) + lo[k]
            out[:, k] = np.interp(
                wrapped, np.append(grid, grid[0] + period), np.append(values[k], values[k][0])
            )
            continue
        energy = np.interp(x[:, k], grid, values[k])
        low, high = table["tail_low"][rows[k]], table["tail_high"][rows[k]]
        if low > 0:
            energy += np.where(x[:, k] < grid[0], 0.5 * ((grid[0] - x[:, k]) / low) ** 2, 0)
        if high > 0:
            energy += np.where(x[:, k] > grid[-1], 0.5 * ((x[:, k] - grid[-1]) / high) ** 2, 0)
        out[:, k] = energy
    return out


def _angles(xyz, angles):
    u = xyz[:, angles[:, 0]] - xyz[:, angles[:, 1]]
    v = xyz[:, angles[:, 2]] - xyz[:, angles[:, 1]]
    cosine = np.sum(u * v, -1) / np.linalg.norm(u, axis=-1) / np.linalg.norm(v, axis=-1)
    return np.arccos(np.clip(cosine, -1, 1))


def _dihedrals(xyz, torsions):
    b1 = xyz[:, torsions[:, 1]] - xyz[:, torsions[:, 0]]
    b2 = xyz[:, torsions[:, 2]] - xyz[:, torsions[:, 1]]
    b3 = xyz[:, torsions[:, 3]] - xyz[:, torsions[:, 2]]
    n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
    y = np.linalg.norm(b2, axis=-1) * np.sum(b1 * n2, -1)
    return np.arctan2(y, np.sum(n1 * n2, -1))


def term_energies(xyz: np.ndarray, stats, terms, pairs, classes) -> np.ndarray:
    """(structures, 6) energies in kT: bonds, angles, torsions, contacts, chirality,
    total; `pairs` (n, 2) and `classes` (n,) the contact pairs and their class rows."""
    xyz = np.asarray(xyz, np.float64)
    fitted = stats.potential
    bonds = np.linalg.norm(xyz[:, terms.bonds[:, 0]] - xyz[:, terms.bonds[:, 1]], axis=-1)
    z = np.abs(bonds - np.asarray(fitted["bond_mean"])) / np.asarray(fitted["bond_std"])
    bond = 0.5 * np.sum(np.maximum(z - np.asarray(fitted["bond_flat"]), 0) ** 2, 1)
    angle = _table(fitted["angles"], np.arange(len(terms.angles)), _angles(xyz, terms.angles)).sum(
        1
    )
    torsion = np.zeros(len(xyz))
    chirality = np.zeros(len(xyz))
    if xyz.shape[-1] == 3 and len(terms.torsions):
        phi = _dihedrals(xyz, terms.torsions)
        rows = np.arange(len(terms.torsions))
        torsion = _table(fitted["torsions"], rows, phi, periodic=True).sum(1)
    if xyz.shape[-1] == 3 and len(terms.centres):
        c = terms.centres
        a, b, d = (xyz[:, c[:, k]] - xyz[:, c[:, 0]] for k in (1, 2, 3))
        volume = np.sum(a * np.cross(b, d), -1)
        sign = np.asarray(fitted["volume_sign"])
        short = np.maximum(np.asarray(fitted["volume_floor"]) - sign * volume, 0)
        chirality = 0.5 * np.sum(np.where(sign != 0, (short / fitted["volume_std"]) ** 2, 0), 1)
    distance = np.linalg.norm(xyz[:, pairs[:, 0]] - xyz[:, pairs[:, 1]], axis=-1)
    contact = _table(fitted["pairs"], classes, distance).sum(1)
    parts = np.stack([bond, angle, torsion, contact, chirality], axis=1)
    return np.concatenate([parts, parts.sum(1, keepdims=True)], axis=1)


def passes(energies: np.ndarray, stats) -> np.ndarray:
    """Whether each structure's energies all lie inside the judge's ranges."""
    low, high = np.asarray(stats.energy_low), np.asarray(stats.energy_high)
    return np.all((energies >= low) & (energies <= high), axis=1)
