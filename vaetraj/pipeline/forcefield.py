"""`--relax openmm`: decoded structures made thermal conformations of a real force field.

Where the model's topology is an all-atom biomolecule that the AMBER ff14SB templates
match (OpenMM's `amber14-all.xml`, with OBC2 implicit solvent, `implicit/obc2.xml`, no
cutoff, bonds to hydrogen constrained: how the shared alanine dipeptide data was made),
each decoded structure x0 is

1. minimized (at most MINIMIZE_ITERATIONS steps of OpenMM's L-BFGS) on the force
   field's energy plus a harmonic tether to x0, each atom's of strength kT / s^2 with
   s the refinement's tether width for that atom (the decoder's own error times the
   width, as the statistical refinement uses: `DataStats.tether`), then
2. run SAMPLE_STEPS steps of Langevin dynamics (LangevinMiddleIntegrator, TIME_STEP,
   FRICTION) at TEMPERATURE on the same energy, and the last positions kept.

The energies reported are the force field's alone (the tether left out), in kJ/mol,
beside the MD frames' [p1, p99] of it when the model's training frames are at hand.
The structures are still judged by the statistical potential, like every generated
structure, so the pass rate means the same as without this option.

OpenMM is an optional dependency (`pip install "vaetraj[openmm]"`); it is imported
here only, when the option is used.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaetraj._interrupt import check_stop
from vaetraj.errors import UsageError

FORCEFIELD_FILES = ("amber14-all.xml", "implicit/obc2.xml")
TEMPERATURE = 300.0  # K: the shared alanine dipeptide's; a user's data may differ
# 10/ps: a minimized structure reaches 300 K within the run (at 1/ps, the MD's, the
# shared alanine dipeptide's samples ended 17 kJ/mol colder than MD's median); the
# friction sets the dynamics' speed, not the distribution sampled
FRICTION = 10.0  # 1/ps
TIME_STEP = 0.002  # ps, with bonds to hydrogen constrained
SAMPLE_STEPS = 250  # 0.5 ps: bonds and angles reach the temperature in a tenth of it
MINIMIZE_ITERATIONS = 50
SMALL = 500  # atoms: fewer run on one thread (OpenMM's threads cost more than they save)
MINIMIZE_TOLERANCE = 10.0  # kJ/mol/nm
MD_FRAMES = 2000  # training frames whose energies give the MD range, spread over the run
BOLTZMANN = 0.0083144626  # kJ/mol/K


def _openmm():
    try:
        import openmm
        from openmm import app, unit
    except ImportError:
        raise UsageError(
            "--relax openmm needs OpenMM, an optional dependency: pip install 'vaetraj[openmm]'"
        ) from None
    return openmm, app, unit


@dataclass(frozen=True)
class ForceFieldEnergies:
    """Force-field energies (kJ/mol) of generated structures, and the MD frames' [p1,
    p99] with the share inside it (None when the training frames are not at hand)."""

    forcefield: str
    energies: np.ndarray
    md_range: list[float] | None
    md_frames: int | None

    def summary(self) -> dict[str, Any]:
        energies = self.energies
        inside = None
        if self.md_range is not None:
            low, high = self.md_range
            inside = float(np.mean((energies >= low) & (energies <= high)))
        return {
            "forcefield": self.forcefield,
            "energy_median_kj_mol": float(np.median(energies)),
            "energy_p5_p95_kj_mol": [float(v) for v in np.percentile(energies, [5, 95])],
            "md_energy_p1_p99_kj_mol": self.md_range,
            "md_frames": self.md_frames,
            "inside_md_range": inside,
        }


def forcefield_system(topology) -> Any:
    """The OpenMM System of an mdtraj topology under FORCEFIELD_FILES; a UsageError
    (exit 2) when OpenMM is missing or its templates do not match the topology."""
    _, app, _ = _openmm()
    try:
        return app.ForceField(*FORCEFIELD_FILES).createSystem(
            topology.to_openmm(), nonbondedMethod=app.NoCutoff, constraints=app.HBonds
        )
    except ValueError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(
            f"--relax openmm: the model's atoms do not match AMBER ff14SB's templates ({first}); "
            "it needs an all-atom protein or peptide with its hydrogens"
        ) from None


def _context(system, integrator):
    openmm, _, _ = _openmm()
    platform = openmm.Platform.getPlatformByName("CPU")
    threads = {"Threads": "1"} if system.getNumParticles() < SMALL else {}
    return openmm.Context(system, integrator, platform, threads)


def forcefield_energies(system, xyz: np.ndarray) -> np.ndarray:
    """The potential energy (kJ/mol) of each structure (n, atoms, 3) in nm."""
    openmm, _, unit = _openmm()
    context = _context(system, openmm.VerletIntegrator(0.001))
    out = np.empty(len(xyz))
    for i, positions in enumerate(np.asarray(xyz, np.float64)):
        context.setPositions(positions)
        state = context.getState(getEnergy=True)
        out[i] = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    return out


def relax_openmm(
    system, xyz: np.ndarray, tether: np.ndarray, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each structure (n, atoms, 3), nm, minimized then sampled on the force field's
    System (`forcefield_system`; a copy gets the tether, the System is left as it was)
    tethered to itself (see the module doc); returns the structures, their
    force-field energies (kJ/mol) and the RMSD each moved."""
    openmm, _, unit = _openmm()
    system = copy.deepcopy(system)
    restraint = openmm.CustomExternalForce("0.5*k*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
    for name in ("k", "x0", "y0", "z0"):
        restraint.addPerParticleParameter(name)
    strength = BOLTZMANN * TEMPERATURE / np.asarray(tether, np.float64) ** 2
    for atom in range(system.getNumParticles()):
        restraint.addParticle(atom, [strength[atom], 0.0, 0.0, 0.0])
    restraint.setForceGroup(1)
    system.addForce(restraint)
    integrator = openmm.LangevinMiddleIntegrator(
        TEMPERATURE * unit.kelvin, FRICTION / unit.picosecond, TIME_STEP * unit.picoseconds
    )
    integrator.setRandomNumberSeed(seed + 1)  # 0 would mean a random seed
    context = _context(system, integrator)
    start = np.asarray(xyz, np.float64)
    out, energies = np.empty_like(start), np.empty(len(start))
    for i, positions in enumerate(start):
        check_stop()
        for atom, (x, y, z) in enumerate(positions):
            restraint.setParticleParameters(atom, atom, [strength[atom], x, y, z])
        restraint.updateParametersInContext(context)
        context.setPositions(positions)
        openmm.LocalEnergyMinimizer.minimize(context, MINIMIZE_TOLERANCE, MINIMIZE_ITERATIONS)
        context.setVelocitiesToTemperature(TEMPERATURE * unit.kelvin, seed + i + 1)
        integrator.step(SAMPLE_STEPS)
        state = context.getState(getPositions=True, getEnergy=True, groups={0})
        out[i] = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        energies[i] = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
    moved = np.sqrt(np.mean(np.sum((out - start) ** 2, axis=-1), axis=-1))
    return out.astype(np.float32), energies, moved


def md_frames(model, path: str | Path | None = None) -> np.ndarray | None:
    """At most MD_FRAMES of the model's training frames (n, atoms, 3), nm, spread over
    the run: from `path`, else the file the model was trained from, read with the
    model's own topology; None when neither is at hand or its atoms differ."""
    import mdtraj as md

    from vaetraj.io.aligned import read_aligned
    from vaetraj.io.trajectory import _quiet_c_stdout  # mdtraj's DCD reader prints

    where = Path(path) if path is not None else Path(str(model.record.provenance.get("origin")))
    if not where.is_file():
        return None
    try:
        if where.suffix in (".h5", ".hdf5"):
            xyz = np.asarray(read_aligned(where).xyz)
        else:
            with _quiet_c_stdout():
                xyz = md.load(str(where), top=model.topology).xyz
    except Exception:  # not readable as the model's frames: no MD range, said in a note
        return None
    if xyz.shape[1:] != (model.atoms, 3):
        return None
    rows = np.unique(np.linspace(0, len(xyz) - 1, min(len(xyz), MD_FRAMES)).round().astype(int))
    return np.asarray(xyz[rows], np.float32)


def judge_forcefield(model, energies: np.ndarray, system) -> ForceFieldEnergies:
    """The energies beside the MD frames' [p1, p99] under the same System, when the
    model's training frames are at hand."""
    frames = md_frames(model)
    md_range, count = None, None
    if frames is not None and len(frames):
        reference = forcefield_energies(system, frames)
        md_range = [float(v) for v in np.percentile(reference, [1, 99])]
        count = len(frames)
    return ForceFieldEnergies(" + ".join(FORCEFIELD_FILES), energies, md_range, count)
