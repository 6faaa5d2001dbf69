"""Topologies as JSON text (stored in our HDF5 files) and the masses they give."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from vaetraj._lazy import mdtraj as md


def topology_to_json(topology: md.Topology) -> str:
    """Serialize chains, residues, atoms (name, element, serial) and bonds."""
    chains = []
    for chain in topology.chains:
        residues = []
        for residue in chain.residues:
            atoms = [
                {
                    "name": atom.name,
                    "element": atom.element.symbol if atom.element is not None else None,
                    "serial": atom.serial,
                }
                for atom in residue.atoms
            ]
            residues.append(
                {
                    "name": residue.name,
                    "resSeq": residue.resSeq,
                    "segment_id": residue.segment_id,
                    "atoms": atoms,
                }
            )
        chains.append({"chain_id": getattr(chain, "chain_id", None), "residues": residues})
    bonds = [[bond[0].index, bond[1].index] for bond in topology.bonds]
    return json.dumps({"chains": chains, "bonds": bonds})


def topology_from_json(text: str) -> md.Topology:
    data = json.loads(text)
    topology = md.Topology()
    for chain_data in data["chains"]:
        chain = topology.add_chain(chain_id=chain_data.get("chain_id"))
        for residue_data in chain_data["residues"]:
            residue = topology.add_residue(
                residue_data["name"],
                chain,
                resSeq=residue_data["resSeq"],
                segment_id=residue_data.get("segment_id") or "",
            )
            for atom_data in residue_data["atoms"]:
                symbol = atom_data["element"]
                element = md.element.get_by_symbol(symbol) if symbol else None
                topology.add_atom(
                    atom_data["name"], element, residue, serial=atom_data.get("serial")
                )
    atoms = list(topology.atoms)
    for first, second in data["bonds"]:
        topology.add_bond(atoms[first], atoms[second])
    return topology


def checked_topology(text: str, *, atoms: int, path, what: str) -> md.Topology:
    """The topology a file of ours stores, or a BadInputError naming the file when the
    JSON does not describe one of `atoms` atoms."""
    from vaetraj.errors import BadInputError

    try:
        topology = topology_from_json(text)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        problem = f"{type(error).__name__}: {error}" if isinstance(error, KeyError) else error
        raise BadInputError(
            f"{what}: attribute 'topology' is not a topology ({problem})", path=path
        ) from None
    if topology.n_atoms != atoms:
        raise BadInputError(
            f"{what}: attribute 'topology' has {topology.n_atoms} atoms, the file {atoms}",
            path=path,
        )
    return topology


def masses_from_topology(topology: md.Topology) -> np.ndarray | None:
    """Atomic masses in amu, or None when any atom has no element or a zero mass
    (virtual sites, coarse-grained beads): then equal masses are the honest choice."""
    masses = []
    for atom in topology.atoms:
        mass = atom.element.mass if atom.element is not None else 0.0
        if not mass or not np.isfinite(mass) or mass <= 0:
            return None
        masses.append(mass)
    return np.asarray(masses, dtype=np.float64)


def placeholder_topology(atoms: int) -> md.Topology:
    """A topology of unnamed atoms, so selections like 'index < 6' work on bare arrays."""
    topology = md.Topology()
    chain = topology.add_chain()
    residue = topology.add_residue("UNK", chain)
    for _ in range(atoms):
        topology.add_atom("X", None, residue)
    return topology


def polymer_topology(beads: int) -> md.Topology:
    """One chain of bonded beads (equal masses), for the built-in polymer."""
    topology = md.Topology()
    chain = topology.add_chain()
    previous = None
    for index in range(beads):
        residue = topology.add_residue("BEA", chain, resSeq=index + 1)
        atom = topology.add_atom(f"B{index + 1}", md.element.carbon, residue)
        if previous is not None:
            topology.add_bond(previous, atom)
        previous = atom
    return topology


# CHARMM's and AMBER's names of residues mdtraj does not count as protein
_MORE_PROTEIN = {"HSP", "CYX", "HID", "HIE", "HIP", "ASH", "GLH", "LYN", "CYM"}
# ions by residue name (CHARMM's names, and the common ones): their atom names mislead
_IONS = {"SOD": "Na", "NA": "Na", "POT": "K", "K": "K", "CLA": "Cl", "CL": "Cl",
         "CAL": "Ca", "CA": "Ca", "MG": "Mg", "ZN": "Zn", "ZN2": "Zn", "CES": "Cs",
         "LIT": "Li", "RUB": "Rb"}  # fmt: skip
# the elements of standard biomolecules and water, read from an atom name's first letter
_NAME_ELEMENTS = {"C", "H", "N", "O", "S", "P"}


def _pdb_lacks_elements(path: Path) -> bool:
    """Whether a PDB's ATOM/HETATM records leave the element column (77-78) blank."""
    try:
        with open(path, errors="replace") as handle:
            records = [line for line in handle if line.startswith(("ATOM", "HETATM"))]
    except OSError:
        return False
    return bool(records) and all(not line[76:78].strip() for line in records)


def _element_from_name(atom: md.core.topology.Atom) -> str | None:
    """A biomolecular guess: an ion by its residue; in a protein, nucleic acid or water
    the atom name's first letter (after any leading digits: 1HB is hydrogen), so CA is
    carbon, not calcium, and HG hydrogen, not mercury; selenium in selenomethionine.
    None where the name says nothing sure (ligands keep mdtraj's guess)."""
    residue = atom.residue
    if residue.name in _IONS and residue.n_atoms == 1:
        return _IONS[residue.name]
    if not (residue.is_protein or residue.is_nucleic or residue.is_water
            or residue.name in _MORE_PROTEIN):  # fmt: skip
        return None
    name = atom.name.lstrip("0123456789").upper()
    if name.startswith("SE") and residue.name == "MSE":
        return "Se"
    return name[0] if name and name[0] in _NAME_ELEMENTS else None


def repair_guessed_elements(topology: md.Topology, path: str | os.PathLike) -> str | None:
    """A PDB without an element column (CHARMM's) has its elements guessed by mdtraj
    from atom names alone: CA becomes calcium, CD cadmium, HG mercury, so a selection
    of "not element H" kept the hydrogens named HG and masses were wrong. Guess them
    as a biomolecular tool should (`_element_from_name`), in place; a note of what was
    done, or None when the file has its elements (or is not a PDB)."""
    path = Path(path)
    if path.suffix.lower() not in (".pdb", ".ent") or not _pdb_lacks_elements(path):
        return None
    changed = 0
    kept = 0
    for atom in topology.atoms:
        symbol = _element_from_name(atom)
        if symbol is None:
            kept += 1
            continue
        element = md.element.get_by_symbol(symbol)
        if atom.element is not element:
            atom.element = element
            changed += 1
    note = (
        f"{path}: no element column; elements read from residue and atom names "
        f"({changed} of {topology.n_atoms} differ from mdtraj's guess from atom names alone, "
        "e.g. CA is carbon, not calcium)"
    )
    if kept:
        note += f"; {kept} atom(s) outside standard residues keep mdtraj's guess"
    return note
