"""`--relax openmm`: decoded structures relaxed on the AMBER force field through OpenMM,
their energies checked against OpenMM evaluated here, on its own, from the data's PDB."""

from __future__ import annotations

import json
import subprocess

import mdtraj as md
import numpy as np
import pytest
from conftest import assert_error, run, shared, vaetraj_argv


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_relax_openmm_refuses_a_model_it_cannot_relax(workdir, model_2d):
    # the built-in polymer: 2D, reduced units, no force field applies (exit 2, nothing
    # written), whether or not OpenMM is installed
    for command in (["sample", "-n", "5"], ["decode", "--z", "0,0"]):
        result = run(*command, "-m", model_2d, "--relax", "openmm", "-o", "out.npz")
        assert_error(result, 2, "--relax openmm", "2D")
        assert not (workdir / "out.npz").exists()
    result = run("sample", "-m", model_2d, "--relax", "openmm", "--no-refine", "-o", "out.npz")
    assert_error(result, 2, "--relax openmm", "--no-refine")
    assert not (workdir / "out.npz").exists()


def test_relax_openmm_names_what_the_force_field_lacks():
    pytest.importorskip("openmm")
    from vaetraj.errors import UsageError
    from vaetraj.pipeline.forcefield import forcefield_system

    top = md.load_topology(str(shared("alanine-dipeptide", "ala2.pdb")))
    assert forcefield_system(top).getNumParticles() == 22
    heavy = top.subset(top.select("not element H"))  # a heavy-atom model: no template
    with pytest.raises(UsageError, match="templates.*missing 3 H atoms.*with its hydrogens"):
        forcefield_system(heavy)


@pytest.mark.slow
def test_relax_openmm_samples_alanine_dipeptide_at_md_energies(workdir):
    openmm = pytest.importorskip("openmm")
    from openmm import app, unit

    dcd, pdb = shared("alanine-dipeptide", "ala2.dcd"), shared("alanine-dipeptide", "ala2.pdb")
    trained = run("train", dcd, "--top", pdb, "--method", "kabsch", "--epochs", "30", "-o", "m.h5")
    assert trained.exit_code == 0, trained.stderr
    # a process of its own: its standard output is one JSON record, nothing that the
    # DCD reader's C code prints as it reads the training frames
    argv = vaetraj_argv("sample", "-m", "m.h5", "-n", "24", "--relax", "openmm", "-o", "s.npz")
    result = subprocess.run([*argv, "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    field = report["forcefield"]
    assert report["relax"] == "openmm" and field["forcefield"].startswith("amber14-all.xml")
    with np.load("s.npz") as archive:
        xyz = archive[archive.files[0]]

    # the same force field, built here from the PDB, scores the written structures
    structure = app.PDBFile(str(pdb))
    system = app.ForceField("amber14-all.xml", "implicit/obc2.xml").createSystem(
        structure.topology, nonbondedMethod=app.NoCutoff, constraints=app.HBonds
    )
    context = openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU")
    )

    def energies(frames):
        out = []
        for positions in np.asarray(frames, np.float64):
            context.setPositions(positions)
            energy = context.getState(getEnergy=True).getPotentialEnergy()
            out.append(energy.value_in_unit(unit.kilojoule_per_mole))
        return np.asarray(out)

    mine = energies(xyz)
    assert field["energy_median_kj_mol"] == pytest.approx(np.median(mine), abs=0.05)
    # the MD range: every training frame's energy (the report reads 2000 of the 8000,
    # whose 1st and 99th percentiles lie within about 2 kJ/mol of all frames')
    frames = md.load(str(dcd), top=str(pdb)).xyz
    md_energies = energies(frames)
    low, high = np.percentile(md_energies, [1, 99])
    assert field["md_energy_p1_p99_kj_mol"] == pytest.approx([low, high], abs=2.5)
    # thermal, not minimized: as many inside MD's range as MD frames would be, and the
    # median near MD's (a minimized set sits far below MD's 1st percentile)
    inside = np.mean((mine >= low) & (mine <= high))
    assert field["inside_md_range"] == pytest.approx(inside, abs=1 / 24 + 0.05)
    assert inside >= 0.75
    assert abs(np.median(mine) - np.median(md_energies)) < 15.0
    # bonds to hydrogen at the force field's length, as MD's constraints held them
    top = md.load_topology(str(pdb))
    pairs = np.array(
        [
            [b[0].index, b[1].index]
            for b in top.bonds
            if "H" in (b[0].element.symbol, b[1].element.symbol)
        ]
    )
    md_h = md.compute_distances(md.Trajectory(frames[:50], top), pairs)
    ours = md.compute_distances(md.Trajectory(xyz, top), pairs)
    np.testing.assert_allclose(ours.mean(0), md_h.mean(0), atol=2e-3)
