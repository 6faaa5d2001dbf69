"""The latent as an OpenMM force, and `vaetraj bias`: the force's value against
`vaetraj encode` of the same frames, its forces against finite differences of its
energy, serialization, periodic boxes; biased runs on the built-in 3D polymer (an
OpenMM System of the simulator's own potential), their weights and exact resume.

The tests that need a trained 3D model are marked slow (its training is 20 s): CI runs
them (`pytest -m slow`), with OpenMM installed by the test extra."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import mdtraj as md
import numpy as np
import pytest
from conftest import assert_error, run, vaetraj_argv

openmm = pytest.importorskip("openmm")


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _context(system):
    return openmm.Context(
        system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference")
    )


def _energy(context, positions, group: int) -> float:
    context.setPositions(np.asarray(positions, dtype=np.float64))
    return context.getState(getEnergy=True, groups={group}).getPotentialEnergy()._value


def _polymer_with_latent(model_path, coordinates=(0, 1)):
    from vaetraj.openmm import latent_force
    from vaetraj.openmm._systems import polymer_setup

    setup = polymer_setup()
    for group, coordinate in zip((5, 6), coordinates, strict=False):
        force = latent_force(model_path, coordinate)
        force.setForceGroup(group)
        setup.system.addForce(force)
    return setup


@pytest.mark.slow
def test_latent_force_equals_encode_and_its_forces_minus_its_gradient(
    model_3d, polymer_files, workdir
):
    """On every frame of the polymer's DCD, the force's energy in groups 5 and 6 is the
    posterior mean `vaetraj encode` wrote (within 1e-4); along random directions, its
    forces match central differences of that energy."""
    result = run("encode", polymer_files / "polymer.dcd", "--top", polymer_files / "polymer.pdb",
                 "-m", model_3d, "-o", "latent.h5")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    from vaetraj.io.latent import read_latent

    expected = read_latent(workdir / "latent.h5").mean
    frames = md.load(str(polymer_files / "polymer.dcd"), top=str(polymer_files / "polymer.pdb"))
    context = _context(_polymer_with_latent(model_3d).system)
    for dim, group in ((0, 5), (1, 6)):
        values = np.array([_energy(context, x, group) for x in frames.xyz])
        assert len(values) == len(expected) == 300
        np.testing.assert_allclose(values, expected[:, dim], atol=1e-4)
    rng = np.random.default_rng(0)
    h = 2e-3
    for x in frames.xyz[:: len(frames.xyz) // 5].astype(np.float64):
        context.setPositions(x)
        forces = context.getState(getForces=True, groups={5}).getForces(asNumpy=True)._value
        for _ in range(3):
            direction = rng.normal(size=x.shape)
            direction /= np.linalg.norm(direction)
            slope = (
                _energy(context, x + h * direction, 5) - _energy(context, x - h * direction, 5)
            ) / (2 * h)
            assert abs(slope + np.sum(forces * direction)) <= 2e-2 * max(1.0, np.abs(forces).max())


@pytest.mark.slow
def test_latent_force_survives_serialization_and_ignores_rigid_motions(model_3d, polymer_3d):
    """A System with the latent inside a CustomCVForce written as XML and read back
    (the computation unpickled, the model reloaded by path) gives the same energy; so
    does the same frame rotated and moved."""
    from vaetraj.openmm import _force, latent_force
    from vaetraj.openmm._systems import polymer_setup

    setup = polymer_setup()
    cv = openmm.CustomCVForce("3 * z")
    cv.addCollectiveVariable("z", latent_force(model_3d, 1))
    cv.setForceGroup(7)
    setup.system.addForce(cv)
    text = openmm.XmlSerializer.serialize(setup.system)
    x = np.asarray(polymer_3d[17], dtype=np.float64)
    before = _energy(_context(setup.system), x, 7)
    _force._ENCODERS.clear()  # the copy reloads the model from its file
    copy = openmm.XmlSerializer.deserialize(text)
    assert _energy(_context(copy), x, 7) == pytest.approx(before, abs=1e-5)
    from conftest import random_rotation

    moved = x @ random_rotation(np.random.default_rng(3), 3).T + np.array([4.0, -2.0, 7.0])
    assert _energy(_context(copy), moved, 7) == pytest.approx(before, abs=1e-4)


@pytest.mark.slow
def test_molecules_are_made_whole_in_a_periodic_box(model_3d, polymer_3d):
    """Beads wrapped into a triclinic box by whole box vectors are put back next to the
    bead they are bonded to: the latent and its gradient are those of the whole chain."""
    from vaetraj.openmm import LatentCV, make_whole
    from vaetraj.openmm._force import _bond_levels

    box = np.array([[2.0, 0, 0], [0.5, 2.2, 0], [-0.4, 0.6, 1.9]])
    x = np.asarray(polymer_3d[5], dtype=np.float64)
    rng = np.random.default_rng(1)
    wrapped = x + rng.integers(-2, 3, size=(len(x), 3)) @ box
    levels = _bond_levels([(i, i + 1) for i in range(len(x) - 1)], len(x))
    whole = make_whole(wrapped, box, levels)
    shift = whole - x
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0], shift.shape), atol=1e-9)
    cv = LatentCV(model_3d, np.array([0.0, 1.0]), periodic=True)

    class State:
        def getPositions(self, asNumpy=True):
            return openmm.unit.Quantity(wrapped, openmm.unit.nanometer)

        def getPeriodicBoxVectors(self, asNumpy=True):
            return openmm.unit.Quantity(box, openmm.unit.nanometer)

    value, forces = cv(State())
    expected, gradient = cv.value_and_gradient(x)
    assert value == pytest.approx(expected, abs=1e-5)
    np.testing.assert_allclose(forces, -gradient, atol=1e-4)


def _bias(model, *args):
    return run("bias", "-m", model, "--steps", "400", "--report", "20", "--pace", "20", *args)


@pytest.mark.slow
def test_metadynamics_on_the_builtin_polymer_writes_frames_cvs_and_weights(
    model_3d, polymer_files, workdir
):
    """400 steps of well-tempered metadynamics along z0, z1: 20 frames with time; the
    recorded CVs are `vaetraj encode`'s means of the written frames; c(t) never falls;
    the weights are exp((V - c) / kT) of the recorded rows, scaled to mean 1."""
    result = _bias(model_3d, "--cv", "0,1", "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["frames"] == 20 and record["steps"] == 400
    assert not (workdir / "bias.h5.checkpoint.h5").exists()
    from vaetraj.io.bias import read_bias_file, read_weights
    from vaetraj.io.latent import read_latent

    fields, arrays = read_bias_file("bias.h5")
    assert fields["method"] == "metad" and "Tiwary" in fields["estimator"]
    from vaetraj.io.trajectory import ReadOptions, Trajectory

    written = Trajectory(["biased.dcd"], ReadOptions(top=polymer_files / "polymer.pdb"))
    assert written.frames == 20 and written.frame_time_ps == pytest.approx(0.1, rel=1e-6)
    np.testing.assert_allclose(arrays["time"], np.arange(1, 21) * 20 * 0.005)
    assert run("encode", "biased.dcd", "--top", polymer_files / "polymer.pdb", "-m", model_3d,
               "-o", "z.h5").exit_code == 0  # fmt: skip
    np.testing.assert_allclose(arrays["cv"], read_latent("z.h5").mean, atol=1e-4)
    assert np.all(np.diff(arrays["ct"]) >= -1e-9) and arrays["ct"][-1] > 0
    temperature = fields["temperature"]
    log_w = (arrays["bias"] - arrays["ct"]) / (0.0083144626 * temperature)
    expected = np.exp(log_w - log_w.max())
    np.testing.assert_allclose(arrays["weights"], expected / expected.mean(), rtol=1e-9)
    np.testing.assert_allclose(read_weights("bias.h5", 20), arrays["weights"])
    assert arrays["fes"].shape == (len(arrays["fes_axis_0"]), len(arrays["fes_axis_1"]))
    # the reweighted free energy on the latent map of the frames
    result = run("plot", "-m", model_3d, "--latent", "z.h5", "--weights", "bias.h5",
                 "--only", "free_energy", "-o", "figures", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["figures"] == ["figures/free_energy.png"]
    assert (workdir / "figures" / "free_energy.png").stat().st_size > 1000
    np.save("three.npy", np.ones(3))
    assert_error(run("plot", "-m", model_3d, "--latent", "z.h5", "--weights", "three.npy",
                     "--only", "free_energy", "-o", "other"), 65, "three.npy", "3 weights for the 20")  # fmt: skip
    assert not (workdir / "other").exists()


@pytest.mark.slow
def test_umbrella_weights_undo_the_restraint_and_steering_writes_none(model_3d, workdir):
    from vaetraj.io.bias import read_bias_file

    assert _bias(model_3d, "--method", "umbrella", "--center", "0.5", "--k", "50").exit_code == 0
    fields, arrays = read_bias_file("bias.h5")
    z = arrays["cv"][:, 0]
    np.testing.assert_allclose(arrays["bias"], 0.5 * 50 * (z - 0.5) ** 2, rtol=1e-5, atol=1e-6)
    w = np.exp(arrays["bias"] / (0.0083144626 * fields["temperature"]))
    np.testing.assert_allclose(arrays["weights"], w / w.mean(), rtol=1e-9)
    result = _bias(model_3d, "--method", "steer", "--center", "-1,1", "--k", "500",
                   "-o", "steer.h5", "--trajectory", "steer.dcd")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    _, steered = read_bias_file("steer.h5")
    assert "weights" not in steered
    assert steered["cv"][-1, 0] > steered["cv"][0, 0]  # pulled from -1 towards 1
    from vaetraj.errors import BadInputError
    from vaetraj.io.bias import read_weights

    with pytest.raises(BadInputError, match="a steer run has no equilibrium weights"):
        read_weights("steer.h5")


@pytest.mark.slow
def test_an_interrupted_bias_run_resumes_exactly(model_3d, workdir):
    """A run stopped at its 7th frame (a stop request, as SIGTERM makes) leaves a
    checkpoint; --resume finishes it with every row and frame equal to a run never
    stopped."""
    from vaetraj._interrupt import clear_stop, request_stop
    from vaetraj.configs import BiasConfig
    from vaetraj.errors import InterruptedRunError
    from vaetraj.io.bias import read_bias_file
    from vaetraj.openmm._systems import polymer_setup
    from vaetraj.openmm.run import bias_file
    from vaetraj.pipeline.model import load_model

    model = load_model(model_3d)
    config = BiasConfig(steps=400, report=20, pace=20, cv=(0, 1), checkpoint_every=0)
    bias_file(polymer_setup(), model, config, Path("whole.h5"), Path("whole.dcd"))

    def stop_at_seven(done, total):
        if done == 7:
            request_stop()

    try:
        with pytest.raises(InterruptedRunError):
            bias_file(polymer_setup(), model, config, Path("part.h5"), Path("part.dcd"),
                      progress=stop_at_seven)  # fmt: skip
    finally:
        clear_stop()
    assert Path("part.h5.checkpoint.h5").exists() and not Path("part.h5").exists()
    report = bias_file(
        polymer_setup(), model, config, Path("part.h5"), Path("part.dcd"), resume=True
    )
    assert report.resumed_from_step == 140 and report.frames == 20
    _, whole = read_bias_file("whole.h5")
    _, part = read_bias_file("part.h5")
    for key in ("time", "cv", "bias", "ct", "weights", "fes"):
        assert np.array_equal(whole[key], part[key]), key
    assert np.array_equal(_xyz("whole.dcd", model), _xyz("part.dcd", model))


def _xyz(path, model):
    from vaetraj.io.topology import polymer_topology

    return md.load(path, top=polymer_topology(model.atoms)).xyz


@pytest.mark.slow
def test_bias_refuses_bad_input_in_one_line(model_3d, model_2d, workdir):
    assert_error(_bias(model_3d, "--cv", "5"), 2, "--cv 5")
    assert_error(_bias(model_3d, "--method", "umbrella"), 2, "--center")
    assert_error(_bias(model_3d, "--cv", "0,1", "--width", "0.1"), 2, "--width")
    assert_error(_bias(model_3d, "--cv-range", "1,0"), 2, "--cv-range")
    assert_error(_bias(model_2d), 2, "2D")
    assert_error(_bias(workdir / "nothing.h5"), 66, "nothing.h5")
    (workdir / "junk.pdb").write_text("this is not a structure\n")
    assert_error(run("bias", "junk.pdb", "-m", model_3d, "--steps", "40"), 65, "junk.pdb")
    (workdir / "bias.h5").write_text("")
    assert_error(_bias(model_3d), 73, "bias.h5")
    assert_error(_bias(model_3d, "-o", "b.h5", "--resume"), 66, "b.h5.checkpoint.h5")
    assert_error(_bias(model_3d, "-o", "b.npz"), 2, "b.npz")
    assert not list(workdir.glob("b.*"))


def test_weights_files_are_checked(workdir):
    from vaetraj.errors import BadInputError
    from vaetraj.io.bias import read_weights

    np.save("w.npy", np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(read_weights("w.npy", 3), [0.5, 1.0, 1.5])
    (workdir / "w.txt").write_text("1\n1\n2\n")
    np.testing.assert_allclose(read_weights("w.txt"), [0.75, 0.75, 1.5])
    for content, problem in ((np.array([1.0, -1.0, 1.0]), "not negative"),
                             (np.array([1.0, 1.0]), "2 weights for 3 frames"),
                             (np.array([np.nan, 1.0, 1.0]), "finite")):  # fmt: skip
        np.save("bad.npy", content)
        with pytest.raises(BadInputError, match=problem):
            read_weights("bad.npy", 3)
    (workdir / "w.gz").write_text("1\n")
    with pytest.raises(BadInputError, match="weights must be"):
        read_weights("w.gz")


def test_bias_without_openmm_says_how_to_install_it(workdir, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openmm", None)
    assert_error(_bias(workdir / "model.h5"), 2, "pip install 'vaetraj[openmm]'")
    assert not (workdir / "bias.h5").exists()


@pytest.mark.slow
def test_sigterm_stops_a_bias_run_with_75_and_resume_finishes_it(model_3d, workdir):
    argv = vaetraj_argv("bias", "-m", model_3d, "--steps", "2000000", "--report", "100")
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(12)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 75, stderr
    assert "--resume" in stderr and (workdir / "bias.h5.checkpoint.h5").exists()
    assert not (workdir / "bias.h5").exists()
    from vaetraj.io.bias import read_bias_checkpoint

    fields, _, _ = read_bias_checkpoint(workdir / "bias.h5.checkpoint.h5")
    step = fields["step"]
    result = run("bias", "-m", model_3d, "--steps", str(step + 200), "--report", "100",
                 "--resume", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["resumed_from_step"] == step


@pytest.mark.slow
def test_alanine_latent_force_matches_encode_on_1000_frames(tmp_path, monkeypatch):
    """Alanine dipeptide (shared data), a torsion model: the force's energy in an
    OpenMM context of the AMBER system equals `vaetraj encode`'s mean on 1,000 frames
    within 1e-4, and a biased run's recorded CVs equal encode of its frames."""
    from conftest import shared

    from vaetraj.io.latent import read_latent
    from vaetraj.openmm import latent_force
    from vaetraj.openmm._systems import file_setup

    dcd, pdb = shared("alanine-dipeptide", "ala2.dcd"), shared("alanine-dipeptide", "ala2.pdb")
    monkeypatch.chdir(tmp_path)
    assert run("train", dcd, "--top", pdb, "--featurize", "torsions", "--latent-dim", "2",
               "--epochs", "15", "-o", "m.h5").exit_code == 0  # fmt: skip
    frames = md.load(str(dcd), top=str(pdb))[::8][:1000]
    frames.save_dcd("thousand.dcd")
    assert run("encode", "thousand.dcd", "--top", pdb, "-m", "m.h5", "-o", "z.h5").exit_code == 0
    expected = read_latent("z.h5").mean
    setup = file_setup(Path(pdb))
    force = latent_force("m.h5", 1)
    force.setForceGroup(9)
    setup.system.addForce(force)
    context = openmm.Context(setup.system, openmm.VerletIntegrator(0.001),
                             openmm.Platform.getPlatformByName("CPU"))  # fmt: skip
    values = np.array([_energy(context, x, 9) for x in frames.xyz])
    assert len(values) == 1000
    np.testing.assert_allclose(values, expected[:, 1], atol=1e-4)
    result = run(
        "bias", pdb, "-m", "m.h5", "--cv", "0,1", "--steps", "500", "--report", "50", "--json"
    )
    assert result.exit_code == 0, result.stderr
    from vaetraj.io.bias import read_bias_file

    _, arrays = read_bias_file("bias.h5")
    assert run("encode", "biased.dcd", "--top", pdb, "-m", "m.h5", "-o", "zb.h5").exit_code == 0
    np.testing.assert_allclose(arrays["cv"], read_latent("zb.h5").mean, atol=1e-4)
    assert read_latent("zb.h5").frame_time_ps == pytest.approx(0.2, rel=1e-5)


@pytest.mark.slow
def test_bias_along_the_slowest_vamp_coordinate(model_3d, polymer_files, workdir):
    """kinetics.h5 keeps the slowest VAMP coordinate's affine map of the latent means
    (it reproduces /slowest); `bias --slowest` restrains that one CV, and its recorded
    values are the map of `vaetraj encode`'s means of the frames written."""
    from vaetraj.io.bias import read_bias_file
    from vaetraj.io.latent import read_latent
    from vaetraj.openmm import slowest_coordinate

    top = polymer_files / "polymer.pdb"
    assert run("encode", polymer_files / "polymer.dcd", "--top", top, "-m", model_3d,
               "-o", "z.h5").exit_code == 0  # fmt: skip
    assert run("kinetics", "z.h5", "--lag", "2", "--clusters", "10", "--states", "2",
               "-o", "k.h5").exit_code == 0  # fmt: skip
    weights, offset = slowest_coordinate("k.h5")
    import h5py

    with h5py.File("k.h5") as handle:
        slowest = handle["slowest"][()]
    np.testing.assert_allclose(read_latent("z.h5").mean @ weights - offset, slowest, atol=1e-5)
    result = _bias(
        model_3d, "--slowest", "k.h5", "--method", "umbrella", "--center", "0.5", "--json"
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["cv"] == ["slowest VAMP coordinate"]
    _, arrays = read_bias_file("bias.h5")
    assert run("encode", "biased.dcd", "--top", top, "-m", model_3d, "-o", "zb.h5").exit_code == 0
    np.testing.assert_allclose(arrays["cv"][:, 0], read_latent("zb.h5").mean @ weights - offset,
                               atol=1e-4)  # fmt: skip
    assert_error(run("bias", "-m", model_3d, "--slowest", "z.h5", "--steps", "20", "-o", "o.h5", "--trajectory", "o.dcd"), 65, "z.h5",
                 "slowest_coefficients")  # fmt: skip
