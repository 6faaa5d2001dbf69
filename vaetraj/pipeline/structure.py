"""What the training frames looked like, and how new structures are judged and refined
against it. Stored in the model (`data_stats`) so that decode, sample, optimize and
evaluate can work without the data at hand.

Bonds come from the topology when it has any; otherwise the atoms are taken as one chain
in file order (a bead-spring polymer). From the bond graph come the angles, the
non-bonded pairs (graph distance >= 3) and the stereocentre candidates
(`vaetraj.metrics.geometry_terms`). Every bond and every angle gets its own window: the
range the training frames visit, and at least its mean +- 5 std. A contact may come 5%
closer than the closest non-bonded contact of any training frame, and a stereocentre
keeps the handedness it has in every training frame.

The windows are fitted on the training frames; the pass rate reported beside every
generated set (`data_pass_fraction`) is that of the held-out validation frames when
there are any, so it says how often new MD frames of the same system pass: a check
that only passed the frames it was fitted on would say nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj._device import to_device
from vaetraj._programs import kept
from vaetraj.metrics import (
    CONTACT_TOLERANCE,
    MIN_ANGLE_STD,
    MIN_RELATIVE_STD,
    GeometryTerms,
    TermStats,
    compute_angles,
    compute_pair_distances,
    compute_rg,
    compute_signed_volumes,
    frames_as_columns,
    geometry_terms,
    stereocentre_handedness,
    term_windows,
)
from vaetraj.model import summed_squares, working_float
from vaetraj.pipeline.potential import (
    JUDGED,
    QUANTILE_LEVELS,
    EnergyRanges,
    build_potential,
    calibrate_potential,
    compute_energies,
    cross_validated_pass,
    fit_potential,
    frame_chunks,
    padded_call,
    run_refiner,
    spread_frames,
    thermal_settings,
)
from vaetraj.refine import ThermalSettings

STATS_VERSION = 3
MAX_MEASURED_FRAMES = 100_000  # measured: 19 s for all 1M frames of 50 atoms, 2 s for these
ANCHORS = 256
MIN_JUDGED_FRAMES = 200
# The tether's std, in units of the decoder's per-atom error. Generating (decode, sample,
# evaluate) wants structures distributed like the data's: 3x lets the statistical
# potential set the local geometry (on the built-in polymer, 2x to 5x gave the same
# share inside the simulator's energy range, 89-91%). Optimizing wants the most
# extreme structure the model itself vouches for: the decoder's own error (1x), so the
# answer stays what the model says its latent point is.
TETHER_WIDTH = 3.0


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


def pair_distances(xyz: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """(frames, pairs) distances, in float32."""
    xyz = np.asarray(xyz, dtype=np.float32)
    return np.linalg.norm(xyz[:, pairs[:, 0]] - xyz[:, pairs[:, 1]], axis=-1)


@functools.cache
def _measure_kernel():
    def measure(xyz, terms, weights):
        bonds, angles, pairs, centres = terms[:4]
        batch = frames_as_columns(xyz)  # each gather reads every frame
        volumes = (
            compute_signed_volumes(batch, centres).T
            if xyz.shape[-1] == 3
            else jnp.zeros((len(xyz), 0), xyz.dtype)
        )
        contact = compute_pair_distances(batch, pairs)
        return (
            compute_pair_distances(batch, bonds).T,
            compute_angles(batch, angles).T,
            volumes,
            jnp.min(contact, axis=0, initial=jnp.inf),
            jax.vmap(compute_rg, in_axes=(0, None))(xyz, weights),
        )

    return kept("measure", jax.jit(measure))


class _Running:
    """Column-wise min, max, mean and std over chunks of (frames, terms) values."""

    def __init__(self) -> None:
        self.n = 0
        self.parts: tuple[np.ndarray, ...] | None = None

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values)  # summed in float64, with no float64 copy
        part = (
            values.min(0).astype(np.float64),
            values.max(0).astype(np.float64),
            values.sum(0, dtype=np.float64),
            summed_squares(values.astype(working_float(values)), axis=0),
        )
        if self.parts is None:
            self.parts = part
        else:
            low, high, total, squares = self.parts
            self.parts = (
                np.minimum(low, part[0]),
                np.maximum(high, part[1]),
                total + part[2],
                squares + part[3],
            )
        self.n += len(values)

    def stats(self) -> TermStats:
        assert self.parts is not None, "no values were added"
        low, high, total, squares = self.parts
        mean = total / self.n
        std = np.sqrt(np.maximum(squares / self.n - mean**2, 0.0))
        return TermStats(low, high, mean, std)


@dataclass(frozen=True)
class DataStats:
    """The training data's geometry, as the model file stores it (JSON). Per-term lists
    follow `terms` (bonds, then the angles, pairs and centres the bond graph gives)."""

    bonds: list[list[int]]
    bond_source: str
    bond_mean: list[float]
    bond_std: list[float]
    bond_lo: list[float]
    bond_hi: list[float]
    angle_min: list[float]
    angle_max: list[float]
    angle_std: list[float]
    angle_lo: list[float]
    angle_hi: list[float]
    closest_contact: float
    contact_min: float
    handedness: list[float]
    volume_min: list[float]
    volume_std: list[float]
    mean_bond: float
    rg_min: float
    rg_max: float
    rg_mean: float
    rg_weights: str
    frames: int
    dims: int
    data_pass_fraction: float
    data_pass_frames: int
    # "validation": held-out frames; "training": no split was made; "validation+training":
    # fewer than MIN_JUDGED_FRAMES held out, topped up with training frames
    data_pass_on: str
    tether_std: list[float] = field(default_factory=list)
    anchor_z: list[list[float]] = field(default_factory=list)
    anchor_rg: list[float] = field(default_factory=list)
    # frames the bond, angle, contact and handedness terms were measured on: an even
    # spread of at most MAX_MEASURED_FRAMES (0: every frame, as models before it record)
    measured_frames: int = 0
    # the statistical potential (vaetraj.pipeline.potential) and its judge: each kind's
    # energy range on the held-out frames, and their quantiles for distances
    angle_mean: list[float] = field(default_factory=list)
    elements: list[str] = field(default_factory=list)
    potential: dict[str, Any] = field(default_factory=dict)
    energy_low: list[float] = field(default_factory=list)
    energy_high: list[float] = field(default_factory=list)
    reference: dict[str, list[float]] = field(default_factory=dict)
    version: int = STATS_VERSION

    # -- derived --------------------------------------------------------------------
    @property
    def train_pass_fraction(self) -> float:
        """The MD frames' pass rate that generated structures are read against."""
        return self.data_pass_fraction

    @property
    def bond_min(self) -> float:
        return float(min(self.bond_lo, default=math.nan))

    @property
    def bond_max(self) -> float:
        return float(max(self.bond_hi, default=math.nan))

    def terms(self, atoms: int) -> GeometryTerms:
        """The bond graph's terms, built once per DataStats (the pair list grows as
        atoms squared, and a generate call checks, refines and checks again)."""
        cache = self.__dict__.setdefault("_terms", {})  # frozen: not an attribute write
        if atoms not in cache:
            bonds = np.asarray(self.bonds, np.int32).reshape(-1, 2)
            cache[atoms] = geometry_terms(atoms, bonds, self.dims)
        return cache[atoms]

    def statistical_potential(self, atoms: int):
        """The potential's arrays (vaetraj.metrics.StatisticalPotential), built once."""
        cache = self.__dict__.setdefault("_potential", {})
        if atoms not in cache:
            cache[atoms] = build_potential(self.potential, self.terms(atoms), self.elements)
        return cache[atoms]

    def energy_quantile(self, level: float) -> float:
        """The held-out frames' statistical energy at this quantile, in kT."""
        return float(np.interp(level, QUANTILE_LEVELS, self.reference["energy"]))

    @property
    def ranges(self) -> EnergyRanges:
        return EnergyRanges(self.energy_low, self.energy_high)

    def tether(self, atoms: int, tether_width: float | None = None) -> np.ndarray:
        """(atoms,) the refinement tether's std: tether_width (None: TETHER_WIDTH) times
        the decoder's per-atom error (no tether when the model records none)."""
        width = TETHER_WIDTH if tether_width is None else tether_width
        return np.asarray(self.tether_std or [1e6] * atoms, np.float64) * width

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DataStats | None:
        """The statistics, or None for a model written before version 2 (one pooled
        bond window): those cannot be judged by the per-term check."""
        if data.get("version") != STATS_VERSION:
            return None
        return cls(**data)

    def _check_term_lists(self, atoms: int) -> None:
        """Each per-term list holds one finite number per bond, angle or centre."""
        terms = self.terms(atoms)
        lengths = {
            len(terms.bonds): ("bond_mean", "bond_std", "bond_lo", "bond_hi"),
            len(terms.angles): ("angle_min", "angle_max", "angle_std", "angle_lo", "angle_hi"),
            len(terms.centres): ("handedness", "volume_min", "volume_std"),
        }
        for length, names in lengths.items():
            for name in names:
                values = np.asarray(getattr(self, name))
                if values.shape != (length,) or values.dtype.kind not in "fiu":
                    raise ValueError(f"{name} must hold {length} numbers")
                if not np.isfinite(values).all():
                    raise ValueError(f"{name} holds a non-finite value")

    def _check_scalars(self) -> None:
        # a structure without non-bonded pairs has no closest contact: inf, never NaN
        for name in ("closest_contact", "contact_min", "mean_bond", "rg_min", "rg_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if math.isnan(value) or (math.isinf(value) and "contact" not in name):
                raise ValueError(f"{name} is {value}")

    def check(self, atoms: int, dims: int, latent: int) -> None:
        """Raise ValueError naming the first field that does not fit a model of `atoms`
        atoms in `dims`D with `latent` latent dimensions: a list of the wrong length, a
        bond to no atom, a non-number."""
        bonds = np.asarray(self.bonds)
        if bonds.size and (bonds.ndim != 2 or bonds.shape[1] != 2 or bonds.dtype.kind not in "iu"):
            raise ValueError("bonds must be pairs of atom indices")
        if bonds.size and not ((bonds >= 0) & (bonds < atoms)).all():
            raise ValueError(f"bonds name atoms outside 0..{atoms - 1}")
        if self.dims != dims:
            raise ValueError(f"dims is {self.dims}, the model's {dims}")
        self._check_term_lists(atoms)
        self._check_scalars()
        if self.tether_std and np.shape(self.tether_std) != (atoms,):
            raise ValueError(f"tether_std must hold {atoms} numbers")
        anchors = np.asarray(self.anchor_z)
        for name, values in (("tether_std", self.tether_std), ("anchor_z", anchors),
                             ("anchor_rg", self.anchor_rg)):  # fmt: skip
            if np.size(values) and not np.isfinite(np.asarray(values, float)).all():
                raise ValueError(f"{name} holds a non-finite value")
        if anchors.size and (anchors.ndim != 2 or anchors.shape[1] != latent):
            raise ValueError(f"anchor_z must be points of {latent} latent coordinates")
        if np.shape(self.anchor_rg) != (len(anchors),):
            raise ValueError("anchor_rg must hold one R_g per anchor_z point")
        self._check_potential(atoms)

    def _check_potential(self, atoms: int) -> None:
        """The statistical potential builds for these atoms, holds finite numbers of the
        right shapes, and the judge has one finite range per kind and the sum."""
        if len(self.elements) != atoms:
            raise ValueError(f"elements must hold {atoms} symbols")
        try:
            potential = self.statistical_potential(atoms)
        except (KeyError, TypeError) as error:
            raise ValueError(f"potential lacks or mistypes {error}") from None
        terms = self.terms(atoms)
        counts = {"bond_mean": len(terms.bonds), "angle_table": len(terms.angles),
                  "torsion_table": len(terms.torsions), "volume_std": len(terms.centres)}  # fmt: skip
        for name, count in counts.items():
            value = getattr(potential, name)
            fields = value if isinstance(value, tuple) else (value,)
            for rows in {len(part) for part in fields}:
                if rows != count:
                    raise ValueError(f"potential {name} must hold {count} rows, got {rows}")
        if not all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(potential)):
            raise ValueError("potential holds a non-finite value")
        for name in ("energy_low", "energy_high"):
            values = np.asarray(getattr(self, name), float)
            if values.shape != (len(JUDGED),) or not np.isfinite(values).all():
                raise ValueError(f"{name} must hold {len(JUDGED)} finite numbers")


def _measure(xyz: np.ndarray, terms: GeometryTerms, weights: np.ndarray):
    """Running statistics of bonds, angles and volumes; per-frame closest contact and R_g."""
    kernel = _measure_kernel()
    args = (tuple(jnp.asarray(t) for t in terms[:4]), jnp.asarray(weights, jnp.float32))
    bonds, angles, volumes = _Running(), _Running(), _Running()
    contacts, rgs = [], []
    for part in frame_chunks(len(xyz), len(terms.pairs)):
        bond, angle, volume, contact, rg = kernel(jnp.asarray(xyz[part], jnp.float32), *args)
        bonds.add(bond)
        angles.add(angle)
        volumes.add(volume)
        contacts.append(np.asarray(contact))
        rgs.append(np.asarray(rg))
    return (
        bonds.stats(),
        angles.stats(),
        volumes.stats(),
        np.concatenate(contacts),
        np.concatenate(rgs),
    )


def _term_fields(terms, source: str, bond, angle, volume, contact) -> dict[str, Any]:
    """The DataStats fields of the bonds, angles, contacts and stereocentres: their
    means and spreads over the frames and the windows the geometry check allows."""
    bond_lo, bond_hi = term_windows(bond, MIN_RELATIVE_STD * bond.mean, lower=0.0)
    angle_lo, angle_hi = term_windows(angle, MIN_ANGLE_STD, lower=0.0, upper=math.pi)
    closest = float(contact.min()) if np.isfinite(contact).any() else 0.0
    handedness = stereocentre_handedness(volume)
    return {
        "bonds": terms.bonds.tolist(),
        "bond_source": source,
        "bond_mean": bond.mean.tolist(),
        "bond_std": bond.std.tolist(),
        "bond_lo": bond_lo.tolist(),
        "bond_hi": bond_hi.tolist(),
        "angle_min": angle.min.tolist(),
        "angle_mean": angle.mean.tolist(),
        "angle_max": angle.max.tolist(),
        "angle_std": angle.std.tolist(),
        "angle_lo": angle_lo.tolist(),
        "angle_hi": angle_hi.tolist(),
        "closest_contact": closest,
        "contact_min": (1 - CONTACT_TOLERANCE) * closest,
        "handedness": handedness.tolist(),
        "volume_min": np.where(
            handedness > 0, volume.min, np.where(handedness < 0, -volume.max, 0.0)
        ).tolist(),
        "volume_std": volume.std.tolist(),
        "mean_bond": float(np.mean(bond.mean)) if len(terms.bonds) else math.nan,
    }


def _rank_frames(values: np.ndarray, count: int) -> np.ndarray:
    """Positions of `count` values evenly spread in their sorted order, both extremes
    included: a partition, not a sort (no index array as long as `values`). Of equal
    values the first is taken."""
    ranks = np.unique(np.linspace(0, len(values) - 1, count).round().astype(int))
    wanted = np.partition(values, ranks)[ranks]
    found = np.flatnonzero(np.isin(values, wanted))  # ascending
    distinct, first = np.unique(values[found], return_index=True)
    return found[first[np.searchsorted(distinct, wanted)]]


def compute_data_stats(
    xyz: np.ndarray,
    topology_json: str | None,
    masses: np.ndarray | None,
    *,
    index: np.ndarray | None = None,
    held_out_index: np.ndarray | None = None,
    tether_std: np.ndarray | None = None,
    latent: Any = None,
) -> DataStats:
    """The geometry of the training frames: those of xyz (frames, atoms, dims) at
    `index` (default: all). The pass rate is that of the `held_out_index` frames when
    given (and not empty), else of the training frames. Terms are measured on at most
    MAX_MEASURED_FRAMES training frames evenly spread, R_g on every one; no copy of
    the frames is made beyond those measured. tether_std (atoms,): the decoder's
    per-atom error per dimension; latent: the posterior means (rows, latent) of the
    frames of xyz at the rows it is indexed with (an array, or an encoder); those of
    ANCHORS training frames evenly spread in R_g order (both extremes included) are
    kept as places `optimize` may start from."""
    atoms, dims = xyz.shape[1], xyz.shape[2]
    training = np.arange(len(xyz)) if index is None else np.asarray(index)
    bonds, source = bonds_of(topology_json, atoms)
    terms = geometry_terms(atoms, bonds, dims)
    weights, kind = rg_weights(masses, atoms)
    measured = training[spread_frames(len(training), MAX_MEASURED_FRAMES)]
    bond, angle, volume, contact, rg = _measure(xyz[measured], terms, weights)
    if len(measured) < len(training):  # R_g is cheap: its range is every frame's
        rg = compute_frame_rg(xyz, weights, training)
    anchors = _rank_frames(rg, min(ANCHORS, len(rg)))
    stats = DataStats(
        **_term_fields(terms, source, bond, angle, volume, contact),
        rg_min=float(rg.min()),
        rg_max=float(rg.max()),
        rg_mean=float(rg.mean()),
        rg_weights=kind,
        frames=int(len(training)),
        dims=int(dims),
        data_pass_fraction=math.nan,
        data_pass_frames=0,
        data_pass_on="training",
        tether_std=[] if tether_std is None else np.asarray(tether_std, float).tolist(),
        anchor_z=[] if latent is None else np.asarray(latent[training[anchors]], float).tolist(),
        anchor_rg=rg[anchors].tolist(),
        measured_frames=int(len(measured)),
    )
    elements = elements_of(topology_json, atoms)
    fitted = fit_potential(
        xyz, measured, terms, elements, bond, angle, volume, np.asarray(stats.handedness)
    )
    fitted = calibrate_potential(fitted, xyz, measured, terms, elements, angle, stats.tether(atoms))
    stats = dataclasses.replace(stats, elements=elements, potential=fitted)
    return _with_judge(stats, xyz, training, held_out_index, masses)


def _judged_frames(training: np.ndarray, held_out: np.ndarray | None) -> tuple[np.ndarray, str]:
    """The frames whose energies set the judge's ranges: the held-out ones (at most
    MAX_MEASURED_FRAMES), topped up with training frames spread evenly when there are
    fewer than MIN_JUDGED_FRAMES (a [p1, p99] range of 10 frames is their min and max)."""
    held_out = np.asarray([] if held_out is None else held_out, np.int64)
    if len(held_out) >= MIN_JUDGED_FRAMES:
        return held_out[spread_frames(len(held_out), MAX_MEASURED_FRAMES)], "validation"
    extra = training[spread_frames(len(training), MIN_JUDGED_FRAMES - len(held_out))]
    return np.concatenate([held_out, extra]), "validation+training" if len(held_out) else "training"


def _with_judge(stats: DataStats, xyz: np.ndarray, training, held_out_index, masses) -> DataStats:
    """The statistics with the judge's ranges, its cross-validated pass rate on the
    judged frames and the frames' ensemble for distances."""
    rows, on = _judged_frames(training, held_out_index)
    judged = xyz[np.sort(rows)]
    energies = compute_energies(judged, stats.statistical_potential(xyz.shape[1]))
    ranges = EnergyRanges.of(energies)
    stats = dataclasses.replace(
        stats,
        energy_low=ranges.low,
        energy_high=ranges.high,
        data_pass_fraction=cross_validated_pass(energies),
        data_pass_frames=int(len(judged)),
        data_pass_on=on,
    )
    reference = ensemble_quantiles(measure_structures(judged, stats, masses), energies)
    return dataclasses.replace(stats, reference=reference)


def elements_of(topology_json: str | None, atoms: int) -> list[str]:
    """Each modelled atom's element symbol ("X" when unknown or without a topology)."""
    if topology_json is None:
        return ["X"] * atoms
    found = [
        atom.get("element") or "X"
        for chain in json.loads(topology_json).get("chains", [])
        for residue in chain.get("residues", [])
        for atom in residue.get("atoms", [])
    ]
    return found if len(found) == atoms else ["X"] * atoms


def _quantiles(values: np.ndarray) -> list[float]:
    values = np.asarray(values, np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return []
    return np.quantile(values, QUANTILE_LEVELS).tolist()


class Measured(NamedTuple):
    """Per-structure geometry (NumPy, (structures,)): the shortest, longest and mean
    bond (nan without bonds), the closest non-bonded contact (inf without), R_g; and
    the pooled values distances between ensembles compare (`ensemble_quantiles`)."""

    min_bond: np.ndarray
    max_bond: np.ndarray
    mean_bond: np.ndarray
    min_nonbonded: np.ndarray
    rg: np.ndarray
    bond_z: np.ndarray  # every bond length in units of its training std, pooled
    angle_z: np.ndarray  # every angle likewise


def measure_structures(xyz: np.ndarray, stats: DataStats, masses: np.ndarray | None) -> Measured:
    """Bonds, angles, closest contacts and R_g of structures (n, atoms, dims), in one
    pass of the kernel the training statistics use."""
    atoms = xyz.shape[1]
    terms = stats.terms(atoms)
    bond_std = np.asarray(stats.potential["bond_std"])  # floored for constrained bonds
    angle_std = np.maximum(np.asarray(stats.angle_std), MIN_ANGLE_STD)
    kernel = _measure_kernel()
    weights = to_device(rg_weights(masses, atoms)[0], np.float32)
    args = (tuple(to_device(t) for t in terms[:4]), weights)
    parts = []
    for part in frame_chunks(len(xyz), len(terms.pairs)):
        bond, angle, _, contact, rg = (np.asarray(v) for v in padded_call(kernel, xyz[part], *args))
        parts.append(
            (
                bond.min(1, initial=np.inf), bond.max(1, initial=-np.inf),
                bond.mean(1) if bond.shape[1] else np.full(len(bond), np.nan), contact, rg,
                ((bond - np.asarray(stats.bond_mean)) / bond_std).ravel(),
                ((angle - np.asarray(stats.angle_mean)) / angle_std).ravel(),
            )
        )  # fmt: skip
    return Measured(*(np.concatenate(field) for field in zip(*parts, strict=True)))


def ensemble_quantiles(measured: Measured, energies: np.ndarray) -> dict[str, list[float]]:
    """What distances between ensembles compare: quantiles of every bond length and
    angle in units of its training std (pooled), of each structure's closest contact,
    and of its energy; each with its spread ("<name>_std")."""
    values = {
        "bond": measured.bond_z,
        "angle": measured.angle_z,
        "contact": measured.min_nonbonded,
        "energy": np.asarray(energies)[:, -1],
    }
    reference = {}
    for name, value in values.items():
        reference[name] = _quantiles(value)
        finite = value[np.isfinite(value)]
        reference[f"{name}_std"] = [float(finite.std()) if finite.size else 0.0]
    return reference


def ensemble_distances(values: dict[str, list[float]], reference: dict) -> dict[str, float]:
    """W1 between a generated ensemble's quantiles and the held-out frames', in units
    of the frames' spread (bond and angle values are already in units of each term's
    std); a name either side lacks is left out."""
    distances = {}
    for name in ("bond", "angle", "contact", "energy"):
        ours, theirs = values.get(name) or [], reference.get(name) or []
        if len(ours) != len(theirs) or not theirs:
            continue
        scale = 1.0 if name in ("bond", "angle") else reference[f"{name}_std"][0]
        w1 = float(np.mean(np.abs(np.asarray(ours) - np.asarray(theirs))))
        distances[name] = w1 / scale if scale > 0 else math.inf
    return distances


@dataclass(frozen=True)
class StructureCheck:
    """Per-structure energies and verdicts: `energies` (structures, len(JUDGED)) in kT,
    `inside` whether each lies in the held-out frames' range, `frame` the geometry
    measured on each (R_g, bonds, closest contact)."""

    frame: Measured
    energies: np.ndarray
    inside: np.ndarray
    distances: dict[str, float]

    @property
    def plausible(self) -> np.ndarray:
        return np.asarray(self.inside.all(axis=1))

    @property
    def mean_bond(self) -> np.ndarray:
        return np.asarray(self.frame.mean_bond)

    @property
    def energy(self) -> np.ndarray:
        """(structures,) the statistical energy, in kT."""
        return self.energies[:, -1]

    def failures(self) -> dict[str, float]:
        """The share of structures whose energy of each kind (and in all) lies outside
        the held-out frames' range."""
        return {kind: float(1 - self.inside[:, k].mean()) for k, kind in enumerate(JUDGED)}

    def failed_at(self, index: int) -> dict[str, bool]:
        """Which kinds of energy of structure `index` lie outside their range."""
        return {kind: not bool(self.inside[index, k]) for k, kind in enumerate(JUDGED)}


def check_structures(
    xyz: np.ndarray, stats: DataStats, masses: np.ndarray | None
) -> StructureCheck:
    """Judge structures (n, atoms, dims) by the statistical potential's energies against
    the held-out frames' ranges, and measure their distances to the frames' ensemble."""
    measured = measure_structures(xyz, stats, masses)
    energies, inside = _energies_inside(xyz, stats)
    generated = ensemble_quantiles(measured, energies) if len(xyz) else {}
    return StructureCheck(
        frame=measured,
        energies=energies,
        inside=inside,
        distances=ensemble_distances(generated, stats.reference),
    )


def _energies_inside(xyz: np.ndarray, stats: DataStats):
    """Each structure's energies (n, kinds + 1) and whether each lies in the held-out
    frames' range."""
    energies = compute_energies(np.asarray(xyz), stats.statistical_potential(xyz.shape[1]))
    return energies, stats.ranges.inside(energies)


def judge_structures(xyz: np.ndarray, stats: DataStats) -> np.ndarray:
    """Whether each structure (n, atoms, dims) passes the energy check (n,) bool: the
    verdict of `check_structures` without its measurements (a protein's decoded
    structures, judged before refinement, took as long again to measure)."""
    return np.asarray(_energies_inside(xyz, stats)[1].all(axis=1))


class RefinedStructures(NamedTuple):
    """Refined structures (n, atoms, dims) and each one's RMSD from its start (n,)."""

    xyz: np.ndarray
    moved: np.ndarray


def refine_structures(
    xyz: np.ndarray,
    stats: DataStats,
    tether_width: float | None = None,
    *,
    seed: int = 0,
    settings: ThermalSettings | None = None,
) -> RefinedStructures:
    """Thermal refinement of decoded structures (n, atoms, dims), in chunks: relaxed out
    of overlaps, then sampled at the data's temperature on the statistical potential
    tethered to each start (see vaetraj.refine); NumPy arrays. tether_width: see
    `DataStats.tether`; seed: the sampler's noise; settings: the sampler's steps
    (None: `thermal_settings` of the potential)."""
    atoms = xyz.shape[1]
    potential = stats.statistical_potential(atoms)
    tether = to_device(stats.tether(atoms, tether_width), np.float32)
    mean_bond = np.float32(stats.mean_bond if math.isfinite(stats.mean_bond) else 1.0)
    xyz, moved = run_refiner(
        xyz, potential, tether, mean_bond, settings or thermal_settings(stats.potential),
        seed=seed,
    )  # fmt: skip
    return RefinedStructures(xyz, moved)


@functools.cache
def _rg_kernel():
    return jax.jit(jax.vmap(compute_rg, in_axes=(0, None)))


def compute_frame_rg(
    xyz: np.ndarray, weights: np.ndarray, index: np.ndarray | None = None
) -> np.ndarray:
    """R_g of each frame (frames,), or of `index`'s frames, computed in chunks."""
    rows = np.arange(len(xyz)) if index is None else np.asarray(index)
    if len(rows) == 0:
        return np.zeros(0, np.float32)
    kernel, mass = _rg_kernel(), to_device(weights, np.float32)
    return np.concatenate(
        [
            np.asarray(kernel(to_device(xyz[rows[part]], np.float32), mass))
            for part in frame_chunks(len(rows))
        ]
    )
