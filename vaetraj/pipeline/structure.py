"""What the training frames looked like: bonds, the plausibility limits taken from the
training data, and its R_g range. Stored in the model (`data_stats`) so that sampling,
optimization and evaluation can judge new structures without the data at hand.

Bonds come from the topology when it has any; otherwise the atoms are taken as one chain
in file order (a bead-spring polymer). A structure is plausible when every bond length
lies within the 0.1-99.9 percentile range of the training frames' bond lengths and no
non-bonded pair is closer than the 0.1th percentile of their non-bonded distances. A
training frame with one unusual pair fails too, so `train_pass_fraction` (the share of
training frames that pass) is the baseline to read a sample's pass rate against.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj.metrics import (
    FrameGeometry,
    StructureLimits,
    fit_structure_limits,
    is_plausible,
    measure_frame,
    split_pairs,
)

_CHUNK = 16_384
_MAX_DISTANCES = 20_000_000
PLAUSIBILITY_QUANTILE = 0.001


def bonds_of(topology_json: str | None, atoms: int) -> tuple[np.ndarray, str]:
    """Bonded pairs (n, 2) among the modelled atoms and where they came from."""
    if topology_json is not None:
        bonds = json.loads(topology_json).get("bonds") or []
        if bonds:
            return np.asarray(bonds, dtype=np.int32).reshape(-1, 2), "topology"
    chain = np.arange(atoms - 1, dtype=np.int32)
    return np.stack([chain, chain + 1], axis=1), "chain"


def rg_weights(masses: np.ndarray | None, atoms: int) -> tuple[np.ndarray, str]:
    """Mass weights when the masses are known, else equal ones."""
    if masses is None:
        return np.full(atoms, 1.0 / atoms), "equal"
    masses = np.asarray(masses, dtype=np.float64)
    return masses / masses.sum(), "mass"


@functools.cache
def _measure_kernel():
    return jax.jit(jax.vmap(measure_frame, in_axes=(0, None, None, None)))


def measure_frames(
    xyz: np.ndarray, bonds: np.ndarray, nonbonded: np.ndarray, weights: np.ndarray
) -> FrameGeometry:
    """Per-frame extremes and R_g of (frames, atoms, dims), as NumPy arrays."""
    kernel = _measure_kernel()
    args = (
        jnp.asarray(bonds, jnp.int32),
        jnp.asarray(nonbonded, jnp.int32),
        jnp.asarray(weights, jnp.float32),
    )
    parts = [
        kernel(jnp.asarray(xyz[start : start + _CHUNK], jnp.float32), *args)
        for start in range(0, len(xyz), _CHUNK)
    ]
    return FrameGeometry(*(np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(4)))


def pair_distances(xyz: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """(frames, pairs) distances, in float32."""
    xyz = np.asarray(xyz, dtype=np.float32)
    return np.linalg.norm(xyz[:, pairs[:, 0]] - xyz[:, pairs[:, 1]], axis=-1)


@dataclass(frozen=True)
class DataStats:
    """The training data's geometry, as the model file stores it (JSON)."""

    bonds: list[list[int]]
    bond_source: str
    bond_min: float
    bond_max: float
    nonbonded_min: float
    mean_bond: float
    rg_min: float
    rg_max: float
    rg_mean: float
    rg_weights: str
    train_pass_fraction: float
    frames: int

    @property
    def limits(self) -> StructureLimits:
        return StructureLimits(self.bond_min, self.bond_max, self.nonbonded_min)

    def pairs(self, atoms: int) -> tuple[np.ndarray, np.ndarray]:
        return split_pairs(atoms, np.asarray(self.bonds, dtype=np.int32).reshape(-1, 2))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DataStats:
        return cls(**data)


def compute_data_stats(
    xyz: np.ndarray, topology_json: str | None, masses: np.ndarray | None
) -> DataStats:
    """The statistics of training frames (frames, atoms, dims)."""
    atoms = xyz.shape[1]
    bonds, source = bonds_of(topology_json, atoms)
    bonded, nonbonded = split_pairs(atoms, bonds)
    weights, kind = rg_weights(masses, atoms)
    geometry = measure_frames(xyz, bonded, nonbonded, weights)
    lengths = pair_distances(xyz, bonded)
    # every non-bonded distance of at most ~_MAX_DISTANCES values (frames subsampled)
    step = max(1, -(-len(xyz) * len(nonbonded) // _MAX_DISTANCES))
    contacts = pair_distances(xyz[::step], nonbonded)
    limits = fit_structure_limits(lengths, contacts, PLAUSIBILITY_QUANTILE)
    passed = np.asarray(is_plausible(geometry, limits))
    return DataStats(
        bonds=bonded.tolist(),
        bond_source=source,
        bond_min=limits.bond_min,
        bond_max=limits.bond_max,
        nonbonded_min=limits.nonbonded_min,
        mean_bond=float(lengths.mean()),
        rg_min=float(geometry.rg.min()),
        rg_max=float(geometry.rg.max()),
        rg_mean=float(geometry.rg.mean()),
        rg_weights=kind,
        train_pass_fraction=float(passed.mean()),
        frames=int(len(xyz)),
    )


@dataclass(frozen=True)
class StructureCheck:
    """Per-structure verdicts and measurements: NumPy arrays (structures,)."""

    plausible: np.ndarray
    geometry: FrameGeometry
    mean_bond: np.ndarray


def check_structures(xyz: np.ndarray, stats: DataStats, masses: np.ndarray | None):
    """Judge structures (n, atoms, dims) against the training data's limits."""
    atoms = xyz.shape[1]
    bonded, nonbonded = stats.pairs(atoms)
    weights, _ = rg_weights(masses, atoms)
    geometry = measure_frames(xyz, bonded, nonbonded, weights)
    lengths = pair_distances(xyz, bonded)
    return StructureCheck(
        plausible=np.asarray(is_plausible(geometry, stats.limits)),
        geometry=geometry,
        mean_bond=lengths.mean(axis=1),
    )
