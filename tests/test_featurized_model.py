"""Models of features vaetraj computes (`train --featurize`): the featurizer recorded in
the model and applied by encode and evaluate, rigid motions ignored, and the commands
that need structures refusing in one line (issue 32). The tests that train a model are
slow (a network of a new shape compiles: 8 s); the refused options are not."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import mdtraj as md
import numpy as np
import pytest
from conftest import assert_error, random_rotation, run, shared

from vaetraj import load_model
from vaetraj.errors import EXIT_BAD_INPUT, EXIT_USAGE
from vaetraj.featurize import Distances
from vaetraj.io.latent import read_latent


@pytest.fixture(scope="module")
def featurized(tmp_path_factory, polymer_files):
    """A model of the 3D polymer's bead distances (all pairs 3 or more bonds apart)."""
    folder = tmp_path_factory.mktemp("featurized")
    model = folder / "model.h5"
    result = run(
        "train", polymer_files / "polymer.dcd", "--top", polymer_files / "polymer.pdb",
        "--featurize", "distances", "--pair-select", "all", "--latent-dim", "2",
        "--epochs", "10", "--hidden", "16", "--batch-size", "32", "--min-explained", "0",
        "-o", model, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return model, json.loads(result.stdout)


@pytest.mark.slow
def test_the_model_records_its_featurizer_and_the_frames_it_came_from(featurized, polymer_files):
    """The report and the model say what the network took; the recorded featurizer is
    the one `Distances.fit` makes of the topology, and the model keeps the atoms."""
    path, report = featurized
    model = load_model(path)
    topology = md.load(str(polymer_files / "polymer.pdb")).topology
    expected = Distances.fit(topology, "all")
    assert report["representation"] == "featurized" and report["featurizer"] == "distances"
    assert report["features"] == expected.features == model.features
    assert (report["atoms"], report["dims"]) == (topology.n_atoms, 3)
    assert model.representation.featurizer == expected
    assert not model.representation.yields_structures and model.representation.takes_frames
    assert model.data_stats is None  # no structures: no statistical potential


@pytest.mark.slow
def test_rigid_motions_do_not_change_the_latent_path(featurized, polymer_files, tmp_path):
    """A rotated and shifted copy of the trajectory encodes to the same means (1e-5),
    through the command line and the Python API alike."""
    path, _ = featurized
    trajectory = md.load(str(polymer_files / "polymer.dcd"), top=str(polymer_files / "polymer.pdb"))
    rng = np.random.default_rng(7)
    moved = trajectory.xyz @ random_rotation(rng, 3).T + rng.normal(0, 2.0, (len(trajectory), 1, 3))
    np.save(tmp_path / "moved.npy", moved.astype(np.float32))
    top = polymer_files / "polymer.pdb"
    for name, source in (
        ("plain", polymer_files / "polymer.dcd"),
        ("moved", tmp_path / "moved.npy"),
    ):
        result = run("encode", source, "--top", top, "-m", path, "-o", tmp_path / f"{name}.h5")
        assert result.exit_code == 0, result.stderr
    plain, moved_path = (read_latent(tmp_path / f"{n}.h5").mean for n in ("plain", "moved"))
    np.testing.assert_allclose(moved_path, plain, atol=1e-5)
    model = load_model(path)
    np.testing.assert_allclose(model.encode(moved)[0], plain, atol=1e-5)
    features = Distances.fit(trajectory.topology, "all").transform(trajectory.xyz)
    np.testing.assert_array_equal(model.encode_rows(features)[0], model.encode(trajectory.xyz)[0])


@pytest.mark.slow
def test_evaluate_scores_the_features_encode_reconstructs(featurized, polymer_files, tmp_path):
    """evaluate's reconstruction error is the mean of encode --recon's per frame (both
    over the model's features), and its sample W1 is over features, with no R_g."""
    path, _ = featurized
    dcd, top = polymer_files / "polymer.dcd", polymer_files / "polymer.pdb"
    result = run("encode", dcd, "--top", top, "-m", path, "--recon", "-o", tmp_path / "z.h5")
    assert result.exit_code == 0, result.stderr
    per_frame = read_latent(tmp_path / "z.h5").extras["recon_rmsd"]
    result = run("evaluate", dcd, "--top", top, "-m", path, "--samples", "200", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["representation"] == "featurized" and report["w1_rg"] is None
    assert report["recon_rmsd"] == pytest.approx(float(per_frame.mean()), rel=1e-5)
    assert 0 < report["w1_pairwise_mean"] <= report["w1_pairwise_max"]


@pytest.mark.slow
def test_decode_and_sample_give_feature_tables(featurized, tmp_path):
    path, report = featurized
    result = run("sample", "-m", path, "-n", "50", "-o", tmp_path / "rows.npy", "--json")
    assert result.exit_code == 0, result.stderr
    rows = np.load(tmp_path / "rows.npy")
    assert rows.shape == (50, report["features"]) and json.loads(result.stdout)["features"]
    assert (rows > 0).mean() > 0.95  # distances, decoded in nm
    result = run("decode", "-m", path, "--z", "0,0", "-o", tmp_path / "one.npy")
    assert result.exit_code == 0, result.stderr
    np.testing.assert_allclose(
        np.load(tmp_path / "one.npy"), load_model(path).decode(np.zeros((1, 2)))
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, fragments",
    [
        (("optimize", "-o", "opt.pdb"), ("`optimize` needs a model of structures", "encode")),
        (("sample", "--relax", "openmm", "-o", "s.npy"), ("--relax openmm needs", "distances")),
    ],
)
def test_commands_that_need_structures_refuse(featurized, tmp_path, monkeypatch, args, fragments):
    monkeypatch.chdir(tmp_path)
    assert_error(run(*args, "-m", featurized[0]), EXIT_USAGE, *fragments)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (("--pair-select", "all"), EXIT_USAGE, "--pair-select only go with --featurize"),
        (("--featurize", "torsions"), EXIT_BAD_INPUT, "no phi/psi/chi1 torsions"),
        (("--featurize", "torsions", "--cutoff", "1"), EXIT_USAGE, "--cutoff is for distances"),
        (("--featurize", "distances", "--pair-select", "name XX"), EXIT_BAD_INPUT, "picks 0 atom"),
        (("--featurize", "contacts", "--contact-r0", "0"), EXIT_USAGE, "--contact-r0 must be"),
        (("--featurize", "torsions", "--torsions", "phi,tau"), EXIT_USAGE, "--torsions must"),
        (("--featurize", "distances", "--features"), EXIT_USAGE, "without --features"),
    ],
)
def test_bad_featurize_options(polymer_files, tmp_path, args, code, fragment):
    dcd, top = polymer_files / "polymer.dcd", polymer_files / "polymer.pdb"
    result = run("train", dcd, "--top", top, *args, "--epochs", "2", "-o", tmp_path / "m.h5")
    assert_error(result, code, fragment)
    assert not (tmp_path / "m.h5").exists()


@pytest.mark.slow
def test_a_damaged_featurizer_record_is_a_bad_input(featurized, tmp_path):
    damaged = tmp_path / "damaged.h5"
    damaged.write_bytes(featurized[0].read_bytes())
    with h5py.File(damaged, "r+") as handle:
        alignment = json.loads(handle.attrs["alignment"])
        alignment["featurizer"]["pairs"] = alignment["featurizer"]["pairs"][:-1]
        handle.attrs["alignment"] = json.dumps(alignment)
    assert_error(run("sample", "-m", damaged, "-o", tmp_path / "s.npy"), EXIT_BAD_INPUT,
                 "damaged model", "bad alignment record")  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "featurize", [("torsions",), ("distances", "--pair-select", "not element H")]
)
def test_alanine_featurized_time_lagged_models_keep_the_slow_process(tmp_path, featurize):
    """Alanine dipeptide, lag 10, latent 2: the time-lagged model on torsions and on
    heavy-atom distances each reach VAMP-2 (deeptime, through `kinetics`) of at least
    0.98x that of phi/psi themselves (1.666)."""
    folder = shared("alanine-dipeptide")
    dcd, top = folder / "ala2.dcd", folder / "ala2.pdb"
    model, latent = tmp_path / "model.h5", tmp_path / "latent.h5"
    result = run("train", dcd, "--top", top, "--featurize", *featurize, "--lag", "10",
                 "--latent-dim", "2", "-o", model)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert run("encode", dcd, "--top", top, "-m", model, "-o", latent).exit_code == 0
    result = run("kinetics", latent, "--lag", "10", "-o", tmp_path / "k.h5", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["vamp2"] >= 0.98 * 1.666
    # the latent path of a rotated and shifted copy is the same (1e-5)
    frames = md.load(str(dcd), top=str(top))[:500].xyz
    rng = np.random.default_rng(11)
    moved = frames @ random_rotation(rng, 3).T + rng.normal(0, 3.0, (len(frames), 1, 3))
    loaded = load_model(model)
    np.testing.assert_allclose(loaded.encode(moved)[0], loaded.encode(frames)[0], atol=1e-5)
    np.testing.assert_allclose(loaded.encode(frames)[0], read_latent(latent).mean[:500], atol=1e-6)


@pytest.mark.slow
def test_plot_draws_the_loss_and_latent_map_and_says_why_not_structures(
    featurized, polymer_files, tmp_path
):
    path, _ = featurized
    dcd, top = polymer_files / "polymer.dcd", polymer_files / "polymer.pdb"
    assert run("encode", dcd, "--top", top, "-m", path, "-o", tmp_path / "z.h5").exit_code == 0
    result = run("plot", "-m", path, "--latent", tmp_path / "z.h5", "-o", tmp_path / "f", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert sorted(Path(f).name for f in report["figures"]) == ["latent.png", "loss.png"]
    assert all("not structures" in item for item in report["skipped"]), report["skipped"]
    assert all((tmp_path / "f" / name).stat().st_size > 1000 for name in ("latent.png", "loss.png"))
