"""What `vaetraj bias` simulates: an OpenMM System with its topology, starting
positions and thermostat, from a structure plus force-field names, a serialized System,
or the built-in polymer.

The built-in polymer's reduced units map onto OpenMM's: a length unit is a nanometre,
an energy unit (its kT) a kJ/mol, a bead 1 amu, so its time unit is a picosecond and
its temperature kT / k_B = 120.27 K. Its bonds, angles and Lennard-Jones pairs are
OpenMM's standard forces with the simulator's parameters (`vaetraj.simulate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vaetraj.configs import PolymerConfig
from vaetraj.errors import BadInputError, UsageError
from vaetraj.openmm._force import openmm_module
from vaetraj.pipeline.forcefield import BOLTZMANN, FORCEFIELD_FILES

TEMPERATURE = 300.0  # K
TIME_STEP = 0.004  # ps, with hydrogen mass HYDROGEN_MASS and bonds to H constrained
HYDROGEN_MASS = 3.0  # amu


@dataclass
class Setup:
    """A system ready to simulate: positions (particles, 3) nm; what: for messages and
    the output's record; the thermostat's defaults."""

    system: Any
    topology: Any  # openmm.app.Topology
    positions: np.ndarray
    what: str
    temperature: float
    time_step: float


def polymer_setup(config: PolymerConfig | None = None) -> Setup:
    """The built-in 3D polymer (`vaetraj simulate polymer --dim 3`) as an OpenMM System."""
    from vaetraj.io.topology import polymer_topology
    from vaetraj.simulate import initial_conformation

    openmm = openmm_module()
    config = config or PolymerConfig(dim=3)
    if config.dim != 3:
        raise UsageError("an OpenMM system is 3D: the built-in polymer runs with --dim 3")
    system = openmm.System()
    for _ in range(config.beads):
        system.addParticle(1.0)
    bonds, angles = openmm.HarmonicBondForce(), openmm.HarmonicAngleForce()
    for i in range(config.beads - 1):
        bonds.addBond(i, i + 1, config.bond_length, config.bond_k)
    for i in range(config.beads - 2):
        angles.addAngle(i, i + 1, i + 2, config.angle, config.angle_k)
    cutoff = config.lj_cutoff * config.lj_sigma
    shift = (
        4 * config.lj_epsilon * ((config.lj_sigma / cutoff) ** 12 - (config.lj_sigma / cutoff) ** 6)
    )
    pairs = openmm.CustomBondForce(
        f"step({cutoff} - r) * (4 * {config.lj_epsilon} * ((s / r)^12 - (s / r)^6) - {shift});"
        f" s = {config.lj_sigma}"
    )
    for i in range(config.beads):
        for j in range(i + 2, config.beads):
            pairs.addBond(i, j, [])
    for force in (bonds, angles, pairs):
        system.addForce(force)
    xyz = np.zeros((config.beads, 3))
    xyz[:, :2] = initial_conformation(PolymerConfig(beads=config.beads, dim=2))
    return Setup(
        system=system,
        topology=polymer_topology(config.beads).to_openmm(),
        positions=xyz,
        what=f"the built-in polymer ({config.beads} beads, 3D)",
        temperature=config.temperature / BOLTZMANN,
        time_step=config.dt,
    )


def file_setup(
    structure: Path,
    forcefield: tuple[str, ...] = FORCEFIELD_FILES,
    system_xml: Path | None = None,
    *,
    hydrogen_mass: float | None = None,
) -> Setup:
    """A structure (PDB or PDBx/mmCIF: topology and starting positions) with either
    force-field files by name (OpenMM's or the user's, no cutoff, bonds to H
    constrained, hydrogen masses repartitioned) or a serialized System (XML)."""
    openmm = openmm_module()
    from openmm import app, unit

    from vaetraj.io._paths import require_input

    require_input(structure, "structure")
    reader = (
        app.PDBxFile if structure.suffix.lower() in (".cif", ".mmcif", ".pdbx") else app.PDBFile
    )
    try:
        pdb = reader(str(structure))
    except Exception as error:  # OpenMM's readers raise many kinds
        raise BadInputError(
            f"cannot read it as a structure ({_first_line(error)})", path=structure
        ) from None
    positions = np.asarray(pdb.getPositions(asNumpy=True).value_in_unit(unit.nanometer))
    if system_xml is not None:
        system = _read_system(system_xml, openmm)
        if system.getNumParticles() != len(positions):
            raise BadInputError(
                f"has {system.getNumParticles()} particles but {structure} has "
                f"{len(positions)} atoms",
                path=system_xml,
            )
        what = f"{structure.name} with the System of {system_xml.name}"
    else:
        system = _forcefield_system(pdb.topology, forcefield, hydrogen_mass)
        what = f"{structure.name} with {' + '.join(forcefield)}"
    return Setup(system, pdb.topology, positions, what, TEMPERATURE, TIME_STEP)


def _forcefield_system(topology, forcefield: tuple[str, ...], hydrogen_mass: float | None):
    from openmm import app, unit

    mass = HYDROGEN_MASS if hydrogen_mass is None else hydrogen_mass
    try:
        field = app.ForceField(*forcefield)
    except (ValueError, OSError) as error:
        raise UsageError(f"--forcefield {','.join(forcefield)}: {_first_line(error)}") from None
    method = app.PME if topology.getPeriodicBoxVectors() is not None else app.NoCutoff
    try:
        return field.createSystem(
            topology,
            nonbondedMethod=method,
            constraints=app.HBonds,
            hydrogenMass=mass * unit.amu if mass > 0 else None,
        )
    except ValueError as error:
        raise BadInputError(
            f"the force field does not match the structure ({_first_line(error)})"
        ) from None


def _read_system(path: Path, openmm):
    from vaetraj.io._paths import require_input

    require_input(path, "system")
    try:
        system = openmm.XmlSerializer.deserialize(path.read_text())
    except (UnicodeDecodeError, Exception) as error:  # OpenMM raises its own exception type
        raise BadInputError(
            f"not a serialized OpenMM System ({_first_line(error)})", path=path
        ) from None
    if not isinstance(system, openmm.System):
        raise BadInputError(f"holds a {type(system).__name__}, not a System", path=path)
    return system


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def platform_for(particles: int):
    """OpenMM's platform and its properties: the CPU platform with one thread below 500
    particles (measured on alanine dipeptide: two threads made a step 15% slower, and
    a GPU's launch costs outweigh so little work), else the fastest OpenMM finds."""
    openmm = openmm_module()
    if particles < 500:
        return openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"}
    return None, {}
