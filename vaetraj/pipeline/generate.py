"""`decode` and `sample`: structures from latent points, and new conformations drawn
out of the model's latent density (or N(0, I)), refined on the training data's
statistical potential and judged by it.

The decoder's mean is an average of conformations, with short bonds and overlapping
atoms; by default each decoded structure is made a thermal conformation near itself
(`vaetraj.refine`), and the report says how far the structures moved, how many lie
inside the held-out MD frames' energy ranges before and after (beside the frames' own
rate) and how far the ensemble is from the frames' (W1 of bonds, angles, closest
contacts and energy, in units of the frames' spread)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from vaetraj._memory import FLOAT, require_memory
from vaetraj.configs import RELAX_CHOICES
from vaetraj.errors import BadInputError, NumericalError, UsageError
from vaetraj.io._hash import compute_sha256
from vaetraj.io.features import check_features_output, write_features
from vaetraj.io.latent import read_latent_points
from vaetraj.io.structures import check_structure_output, write_structures
from vaetraj.pipeline.model import Model, load_model
from vaetraj.pipeline.potential import chunk_size, spread_frames
from vaetraj.pipeline.structure import (
    StructureCheck,
    check_structures,
    judge_structures,
    refine_structures,
)

DEFAULT_MODEL = "model.h5"
# the decoder's raw outputs judged, spread over the set: 128, or two of the judge's
# chunks where fewer fit in one (a protein: 28 of adenylate kinase's 1,656 heavy atoms,
# whose 128 cost 4.4 s, a twentieth of a refined `sample -n 500`)
RAW_CHECKED = 128


@dataclass
class StructureReport:
    """What was generated and how it compares with the training data."""

    command: str
    structures: int
    atoms: int
    dims: int
    latent_dim: int
    units: str
    prior: str | None
    temperature: float | None
    seed: int | None
    plausible_fraction: float | None
    train_plausible_fraction: float | None
    raw_plausible_fraction: float | None  # the decoder's own output, before refinement
    raw_checked: int | None  # how many of the decoder's outputs that share is of
    failures: dict[str, float] | None  # the share outside each kind's energy range
    energy_median: float | None  # the statistical energy, kT
    train_energy_range: list[float] | None  # held-out MD frames' [p1, p99] of it
    distances: dict[str, float] | None  # W1 to the held-out frames, in their spread
    refined: bool
    relax: str | None  # what refined them: the statistical potential or OpenMM's force field
    forcefield: dict[str, Any] | None  # `--relax openmm`: energies (kJ/mol) beside MD's
    moved_median: float | None  # RMSD each structure moved in refinement
    moved_max: float | None
    mean_bond: float | None
    train_mean_bond: float | None
    rg_min: float | None
    rg_max: float | None
    train_rg_min: float | None
    train_rg_max: float | None
    wall_time_s: float
    model: str
    output: str | None = None
    features: int | None = None  # a model of features: the columns of each row written
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """The summary as (label, text) rows: what the command prints."""
        from vaetraj.pipeline.summaries import structure_rows

        return structure_rows(self)


def _finite(xyz: np.ndarray, where) -> None:
    if not np.isfinite(xyz).all():
        index = int(np.argwhere(~np.isfinite(xyz))[0, 0])
        raise NumericalError(
            f"decoded structure {index} has non-finite coordinates; nothing was written",
            path=where,
        )


def generate(
    model: Model, z: np.ndarray, *, refine: bool = True, seed: int = 0, relax: str = "statistical"
) -> Generated:
    """Decode latent points (n, latent); refine (the sampler's noise from `seed`) and
    judge the structures when the model has the training data's statistical potential
    (a model of features gives its rows unchecked). relax: refine on the statistical
    potential, or "openmm" on the AMBER force field (`vaetraj.pipeline.forcefield`)."""
    if relax not in RELAX_CHOICES:
        raise UsageError(f"--relax takes one of {', '.join(RELAX_CHOICES)}, got '{relax}'")
    if relax == "openmm" and not refine:
        raise UsageError("--relax openmm is a refinement: it cannot go with --no-refine")
    system = _require_forcefield(model) if relax == "openmm" else None
    xyz = model.decode(z)
    stats = model.data_stats
    if not model.representation.yields_structures:  # rows of features: nothing to check
        return Generated(xyz, None, None, None, [])
    if stats is None:
        note = (
            "the model has no statistical potential of its training frames (written by an "
            "older vaetraj: retrain it); not refined or judged"
        )
        return Generated(xyz, None, None, None, [note])
    if not np.isfinite(xyz).all():  # refused by the caller, naming its input
        return Generated(xyz, None, None, None, [])
    notes = []
    # the decoder's own output, judged on a spread of at most RAW_CHECKED: a share to
    # set beside the refined one, not worth a second full judge of a protein's set
    raw_passed = None
    if refine:
        pairs = len(stats.statistical_potential(xyz.shape[1]).pairs)
        checked = min(RAW_CHECKED, 2 * chunk_size(pairs))
        raw_passed = judge_structures(xyz[spread_frames(len(xyz), checked)], stats)
    moved, forcefield = None, None
    if refine and relax == "openmm":
        from vaetraj.pipeline.forcefield import judge_forcefield, relax_openmm

        xyz, energies, moved = relax_openmm(system, xyz, stats.tether(model.atoms), seed=seed)
        forcefield = judge_forcefield(model, energies, system).summary()
        if forcefield["md_energy_p1_p99_kj_mol"] is None:
            notes.append(
                "the model's training frames are not at hand: no MD range of the force "
                "field's energy to set beside the samples'"
            )
    elif refine:
        refined = refine_structures(xyz, stats, seed=seed)
        xyz, moved = np.asarray(refined.xyz), np.asarray(refined.moved)
    if refine and not stats.tether_std:
        notes.append("the model does not record its decoder's error; refined untethered")
    check = check_structures(xyz, stats, model.masses)
    return Generated(xyz, check, raw_passed, moved, notes, forcefield)


def _require_forcefield(model: Model):
    """The model's OpenMM System, built once; or a refusal of --relax openmm before any
    work (exit 2): a model of features, a 2D one, one not in nm, or atoms the force
    field's templates do not match (or no OpenMM)."""
    representation = model.representation
    if not representation.yields_structures or model.dims != 3 or model.units != "nm":
        raise UsageError(
            "--relax openmm needs a model of all-atom structures in nm; this one is of "
            + (
                f"{model.dims}D {model.units}"
                if representation.yields_structures
                else representation.describe()
            )
        )
    from vaetraj.pipeline.forcefield import forcefield_system

    return forcefield_system(model.topology)


@dataclass(frozen=True)
class Generated:
    """Structures (n, atoms, dims), their check (None: not checked), whether each of
    the decoder's raw outputs that were checked (at most RAW_CHECKED, spread over the
    set) passed (None: not refined) and how far refinement moved each (n,)."""

    xyz: np.ndarray
    check: StructureCheck | None
    raw_passed: np.ndarray | None
    moved: np.ndarray | None
    notes: list[str]
    forcefield: dict[str, Any] | None = None  # `--relax openmm`: the force field's energies


def _report(
    command: str, model: Model, model_path, made: Generated, relax: str, **extra
) -> StructureReport:
    stats = model.data_stats
    check, raw, moved = made.check, made.raw_passed, made.moved
    train = stats if check is not None else None  # checked structures have statistics
    return StructureReport(
        command=command,
        structures=len(made.xyz),
        atoms=model.atoms,
        dims=model.dims,
        latent_dim=model.latent_dim,
        units=model.units,
        plausible_fraction=float(check.plausible.mean()) if check else None,
        train_plausible_fraction=train.train_pass_fraction if train else None,
        raw_plausible_fraction=float(raw.mean()) if raw is not None else None,
        raw_checked=len(raw) if raw is not None else None,
        failures=check.failures() if check else None,
        energy_median=float(np.median(check.energy)) if check else None,
        train_energy_range=[train.energy_low[-1], train.energy_high[-1]] if train else None,
        distances=check.distances if check else None,
        refined=moved is not None,
        relax=relax if moved is not None else None,
        forcefield=made.forcefield,
        moved_median=float(np.median(moved)) if moved is not None else None,
        moved_max=float(np.max(moved)) if moved is not None else None,
        mean_bond=float(check.mean_bond.mean()) if check else None,
        train_mean_bond=train.mean_bond if train else None,
        rg_min=float(check.frame.rg.min()) if check else None,
        rg_max=float(check.frame.rg.max()) if check else None,
        train_rg_min=train.rg_min if train else None,
        train_rg_max=train.rg_max if train else None,
        model=str(model_path),
        wall_time_s=0.0,
        features=None if model.representation.yields_structures else model.features,
        notes=list(made.notes),
        **extra,
    )


def _write(
    report: StructureReport,
    model: Model,
    model_path: Path,
    output,
    xyz: np.ndarray,
    attrs: dict[str, Any],
    overwrite: bool,
    started: float,
) -> StructureReport:
    """Write the structures with the model's topology and provenance; finish the report."""
    provenance = {
        "model": str(model_path.resolve()),
        "model_sha256": compute_sha256(model_path),
        "data_sha256": model.record.provenance.get("data_sha256"),
    }
    if not model.representation.yields_structures:
        write_features(output, xyz, overwrite=overwrite)
    else:
        report.notes += write_structures(
            output,
            xyz,
            topology_json=model.record.topology,
            units=model.units,
            attrs={**attrs, **provenance},
            overwrite=overwrite,
        )
    report.output = str(output)
    report.wall_time_s = time.perf_counter() - started
    return report


def _check_output(model: Model, output, overwrite: bool, inputs: list) -> None:
    """Refuse a bad output before any work: one of the inputs; a table for a model of
    features, else structures."""
    if not model.representation.yields_structures:
        check_features_output(output, overwrite=overwrite, inputs=inputs)
    else:
        check_structure_output(output, overwrite=overwrite, inputs=inputs)


def parse_points(text: Sequence[str], latent_dim: int | None = None) -> np.ndarray:
    """--z values: each "0.1,-0.3" is one point."""
    points = []
    for item in text:
        try:
            points.append([float(value) for value in item.split(",")])
        except ValueError:
            raise UsageError(
                f"--z takes comma-separated numbers like 0.1,-0.3, got '{item}'"
            ) from None
    if len({len(p) for p in points}) > 1:
        raise UsageError("every --z point must have the same number of values")
    array = np.asarray(points, dtype=np.float32)
    if not np.isfinite(array).all():
        raise UsageError("--z values must be finite")
    return array


def _points(loaded: Model, model_path: Path, latent, points, key) -> np.ndarray:
    """decode's latent points (n, latent), from the file or --z, checked against the
    model's latent dimension and the memory decoding them takes."""
    source = "--z" if latent is None else str(latent)
    z = (
        read_latent_points(latent, key=key, model=model_path)
        if latent is not None
        else np.asarray(points)
    )
    require_memory(
        _GENERATED_BYTES * len(z) * loaded.features,
        f"decoding {len(z):,} points ({loaded.features} coordinates each)",
        "decode the points in parts",
    )
    if z.shape[1] != loaded.latent_dim and latent is None:  # an option's values: exit 2
        raise UsageError(
            f"--z points have {z.shape[1]} value(s) each but the model's latent space has "
            f"{loaded.latent_dim} dimensions"
        )
    if z.shape[1] != loaded.latent_dim:
        raise BadInputError(
            f"latent points have {z.shape[1]} dimension(s) but the model's latent space has "
            f"{loaded.latent_dim}",
            path=source,
        )
    return z


def decode_file(
    latent: str | os.PathLike | None,
    model: str | os.PathLike = DEFAULT_MODEL,
    output: str | os.PathLike = "decoded.npz",
    *,
    points: np.ndarray | None = None,
    key: str | None = None,
    refine: bool = True,
    overwrite: bool = False,
    relax: str = "statistical",
) -> StructureReport:
    """Decode latent points into a structure file.

    Args:
        latent: a latent file (`encode` output, `.npy`, `.npz` or `.csv`), or None
            with `points`.
        model: the model file.
        output: the structure file to write.
        points: (points, latent) latent points, when `latent` is None.
        key: the array's name in an `.npz`.
        refine: relax each structure to the training data's local geometry.
        overwrite: replace an existing output.
        relax: "statistical" (the training frames' statistical potential) or "openmm"
            (the AMBER ff14SB force field through OpenMM: all-atom models in nm).

    Returns:
        The report, with the energy check's pass rate beside the held-out frames'.
    """
    started = time.perf_counter()
    if (latent is None) == (points is None):
        raise UsageError("give latent points: a LATENT file or --z values (not both)")
    model_path = Path(model)
    loaded = load_model(model_path)
    _check_output(loaded, output, overwrite, [model_path, latent])
    source = "--z" if latent is None else str(latent)
    z = _points(loaded, model_path, latent, points, key)
    made = generate(loaded, z, refine=refine, relax=relax)
    _finite(made.xyz, source)
    report = _report(
        "decode", loaded, model_path, made, relax, prior=None, temperature=None, seed=None
    )
    attrs = {
        "command": "decode",
        "source": source,
        "refined": report.refined,
        "relax": report.relax,
    }
    return _write(report, loaded, model_path, output, made.xyz, attrs, overwrite, started)


def sample(
    model: Model,
    n: int,
    *,
    seed: int = 0,
    prior: str = "density",
    temperature: float = 1.0,
    refine: bool = True,
    relax: str = "statistical",
) -> tuple[np.ndarray, Generated]:
    """Draw conformations from the model with a seeded key.

    Args:
        model: a model of structures.
        n: how many.
        seed: the random seed.
        prior: "density" (the latent mixture fitted to the encoded frames) or
            "standard" (N(0, I)).
        temperature: the prior's scale.
        refine: relax each structure to the training data's local geometry.
        relax: "statistical" (the training frames' statistical potential) or "openmm"
            (the AMBER ff14SB force field through OpenMM: all-atom models in nm).

    Returns:
        The latent points (n, latent) and the generated structures with their check.
    """
    z = model.sample_latent(n, key=jax.random.key(seed), prior=prior, temperature=temperature)
    return z, generate(model, z, refine=refine, seed=seed, relax=relax)


# bytes held per generated coordinate: the decoded float32 structures, their checks and
# the refinement's work arrays. Measured (peak RSS, `sample` on the 12-bead polymer):
# each further sample held about 3 x its float32 coordinates without refinement
# (100k -> 400k samples) and about 8 x with it (25k -> 100k)
_GENERATED_BYTES = 8 * FLOAT


def sample_file(
    model: str | os.PathLike = DEFAULT_MODEL,
    output: str | os.PathLike = "samples.npz",
    n: int = 1000,
    *,
    seed: int = 0,
    prior: str = "density",
    temperature: float = 1.0,
    refine: bool = True,
    overwrite: bool = False,
    relax: str = "statistical",
) -> StructureReport:
    """Sample conformations into a structure file.

    Args:
        model: the model file.
        output: `.npz`, `.npy`, `.pdb`, `.dcd`, `.xtc` or `.h5`.
        n: how many.
        seed: the random seed.
        prior: "density" or "standard".
        temperature: the prior's scale.
        refine: relax each structure to the training data's local geometry.
        overwrite: replace an existing output.
        relax: "statistical" (the training frames' statistical potential) or "openmm"
            (the AMBER ff14SB force field through OpenMM: all-atom models in nm).

    Returns:
        The report, with the energy check's pass rate beside the held-out frames'.
    """
    started = time.perf_counter()
    if n <= 0:
        raise UsageError(f"-n must be at least 1, got {n}")
    model_path = Path(model)
    loaded = load_model(model_path)
    _check_output(loaded, output, overwrite, [model_path])
    require_memory(
        _GENERATED_BYTES * n * loaded.features,
        f"-n {n:,} ({loaded.features} coordinates each)",
        "sample fewer and run again with another --seed for more",
    )
    _, made = sample(
        loaded, n, seed=seed, prior=prior, temperature=temperature, refine=refine, relax=relax
    )
    _finite(made.xyz, model_path)
    report = _report(
        "sample", loaded, model_path, made, relax, prior=prior, temperature=temperature, seed=seed
    )
    attrs = {
        "command": "sample",
        "prior": prior,
        "temperature": temperature,
        "seed": seed,
        "refined": report.refined,
        "relax": report.relax,
    }
    return _write(report, loaded, model_path, output, made.xyz, attrs, overwrite, started)
