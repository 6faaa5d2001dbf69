"""Elements of a PDB without an element column (CHARMM's; issue 31): mdtraj guessed them
from atom names alone (CA calcium, CD cadmium, HG mercury), so "not element H" kept
hydrogens and mass weighting used wrong masses."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from vaetraj.errors import VaetrajWarning
from vaetraj.io.trajectory import ReadOptions, Trajectory

# name, residue, x: a methionine, a leucine fragment, a sodium ion and a ligand
_ATOMS = [
    ("N", "MET", 1), ("HT1", "MET", 1), ("CA", "MET", 1), ("HA", "MET", 1),
    ("CB", "MET", 1), ("HB1", "MET", 1), ("CG", "MET", 1), ("HG1", "MET", 1),
    ("HG2", "MET", 1), ("SD", "MET", 1), ("CE", "MET", 1), ("HE1", "MET", 1),
    ("C", "MET", 1), ("O", "MET", 1),
    ("N", "LEU", 2), ("CA", "LEU", 2), ("CD1", "LEU", 2), ("HD11", "LEU", 2),
    ("HG", "LEU", 2), ("NE2", "LEU", 2),
    ("SOD", "SOD", 3),
    ("CL1", "LIG", 4),
]  # fmt: skip
_EXPECTED = "N H C H C H C H H S C H C O N C C H H N Na".split()


def _pdb(path, with_elements: bool):
    lines = []
    for number, (name, residue, index) in enumerate(_ATOMS, 1):
        element = (_EXPECTED + ["Cl"])[number - 1].upper() if with_elements else ""
        label = f" {name:<3}" if len(name) < 4 else name
        lines.append(
            f"ATOM  {number:5d} {label} {residue:>3} A{index:4d}    "
            f"{number * 1.5:8.3f}{0.0:8.3f}{0.0:8.3f}  1.00  0.00      PROT{element:>2}"
        )
    path.write_text("\n".join(lines + ["END", ""]))
    return path


def test_a_pdb_without_elements_gets_them_from_residue_and_atom_names(tmp_path):
    path = _pdb(tmp_path / "charmm.pdb", with_elements=False)
    with pytest.warns(VaetrajWarning, match="no element column; elements read from residue"):
        trajectory = Trajectory([path], ReadOptions())
    symbols = [atom.element.symbol for atom in trajectory.topology.atoms]
    assert symbols[:-1] == _EXPECTED  # the ligand keeps mdtraj's guess
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VaetrajWarning)
        heavy = Trajectory([path], ReadOptions(select="not element H"))
    assert heavy.atoms == sum(symbol != "H" for symbol in symbols)
    carbon, hydrogen = 12.01, 1.008
    np.testing.assert_allclose(trajectory.masses[2], carbon, atol=0.01)  # CA
    np.testing.assert_allclose(trajectory.masses[7], hydrogen, atol=0.01)  # HG1


def test_a_pdb_with_its_elements_is_read_as_it_says(tmp_path):
    path = _pdb(tmp_path / "elements.pdb", with_elements=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", VaetrajWarning)  # no note: nothing was guessed
        trajectory = Trajectory([path], ReadOptions())
    assert [atom.element.symbol for atom in trajectory.topology.atoms] == _EXPECTED + ["Cl"]
