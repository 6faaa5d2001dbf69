"""Each example in examples/ run with reduced settings, and what it produced checked
against what the method predicts (independent recomputations where they are cheap)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from vaetraj.model import DEFAULT_LATENT_DIM

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PNG = b"\x89PNG\r\n\x1a\n"


def load_example(name: str):
    sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG, path
    assert path.stat().st_size > 5_000, path  # a drawn figure, not an empty canvas


@pytest.mark.slow
def test_polymer_chapter_on_the_builtin_polymer(tmp_path):
    example = load_example("polymer_chapter")
    out = tmp_path / "polymer"
    results = example.main(["-o", str(out), "--builtin", "--frames", "300", "--epochs", "15",
                            "--samples", "200"])  # fmt: skip
    assert json.loads((out / "results.json").read_text()) == results
    for name in ("loss", "latent", "marginals", "structures"):
        assert_png(out / "figures" / f"{name}.png")
    paths = np.load(out / "paths.npz")["arr"]
    assert results["latent_path_frames"] == len(paths)
    import h5py

    with h5py.File(out / "latent.h5", "r") as handle:
        assert handle["mean"].shape == (len(paths), DEFAULT_LATENT_DIM)
    with h5py.File(out / "aligned.h5", "r") as handle:
        xyz = handle["xyz"][()]
    rg = np.sqrt(((xyz - xyz.mean(axis=1, keepdims=True)) ** 2).sum(-1).mean(-1))
    np.testing.assert_allclose(results["train_rg_min"], rg.min(), rtol=1e-4)
    # minimization in latent space reaches the compact end of the training frames
    assert results["optimized_rg"] < np.quantile(rg, 0.1)
    optimized = np.load(out / "optimized.npz")["arr"][0]
    centred = optimized - optimized.mean(axis=0)
    assert np.sqrt((centred**2).sum(-1).mean()) == pytest.approx(results["optimized_rg"], abs=1e-4)
    # the decoder's samples pass the geometry check the MD frames pass, about as often
    assert results["sample_plausible_fraction"] >= 0.5 * results["data_plausible_fraction"]
    assert results["optimized_plausible"] is True
    assert (out / "samples.pdb").stat().st_size > 0


@pytest.mark.skipif(
    not (SHARED_DATA / "alanine-dipeptide" / "ala2.dcd").exists(),
    reason="the alanine-dipeptide data (../shared/data) are not here",
)
@pytest.mark.slow
def test_alanine_dipeptide_latent_space_separates_the_basins(tmp_path):
    import mdtraj as md

    example = load_example("alanine_dipeptide")
    out = tmp_path / "ala2"
    results = example.main(["-o", str(out), "--stride", "4", "--epochs", "50", "--samples", "100",
                            "--data", str(SHARED_DATA / "alanine-dipeptide")])  # fmt: skip
    assert_png(out / "figures" / "ramachandran_latent.png")
    assert results["frames"] == 2000
    assert sum(results["basin_fractions"].values()) == 2000
    # the README of the data: beta/PPII about 53%, alpha-R 47%, no alpha-L
    assert results["basin_fractions"]["alpha-L"] == 0
    assert 0.4 < results["basin_fractions"]["alpha-R"] / 2000 < 0.55
    assert results["knn_basin_accuracy"] > 0.9 > results["majority_baseline"]
    samples = md.load(out / "samples.pdb")
    assert samples.n_frames == 100 and samples.n_atoms == 10
    assert results["sample_plausible_fraction"] > 0.5
    # samples visit both basins the trajectory visits
    assert min(results["sample_basin_fractions"]["beta/PPII"],
               results["sample_basin_fractions"]["alpha-R"]) > 0.1  # fmt: skip


@pytest.mark.skipif(
    not (SHARED_DATA / "alanine-dipeptide" / "ala2.dcd").exists(),
    reason="the alanine-dipeptide data (../shared/data) are not here",
)
@pytest.mark.slow
def test_alanine_kinetics_meets_the_issues_bar(tmp_path):
    """Issue 16's Done-when on the real trajectory, with few epochs and every other
    frame: the time-lagged latent's VAMP-2 (deeptime) at 5 ps at least the plain
    latent's and 0.9x the phi/psi torsions'; `kinetics` gives deeptime's VAMP-2 (1%)
    and a slowest timescale at least 0.8x the Ramachandran basins' Markov model's."""
    example = load_example("alanine_kinetics")
    out = tmp_path / "kinetics"
    results = example.main(["-o", str(out), "--stride", "2", "--epochs", "15", "--clusters", "50",
                            "--data", str(SHARED_DATA / "alanine-dipeptide")])  # fmt: skip
    assert json.loads((out / "results.json").read_text()) == results
    assert (results["frames"], results["lag_frames"], results["lag_ps"]) == (4000, 5, 5.0)
    assert results["kinetics_frame_time_ps"] == 1.0  # --frame-time 0.5 x --stride 2, recorded
    vamp2 = results["vamp2"]
    assert vamp2["time-lagged"] >= vamp2["plain"]
    assert vamp2["time-lagged"] >= 0.9 * vamp2["phi/psi (sin, cos)"]
    assert results["vamp2_kinetics_cli"] == pytest.approx(vamp2["time-lagged"], rel=0.01)
    assert results["timescale_ratio_to_basins"] >= 0.8
    # the basins' own timescale at 5 ps: about 21 ps (the data's ~200 transitions in 4 ns)
    assert 10 < results["slowest_timescale_ps"]["basins"] < 40
    # the two metastable states are the two basins the trajectory visits
    assert results["state_basin_purity"] > 0.9
    for name in ("kinetics.png", "lagged/timescales.png", "lagged/ck.png",
                 "lagged/free_energy.png", "plain/free_energy.png"):  # fmt: skip
        assert_png(out / "figures" / name)


def test_basins_of_known_dihedrals():
    example = load_example("alanine_dipeptide")
    phi = np.array([-70.0, -140.0, 60.0, -80.0])
    psi = np.array([-40.0, 150.0, 40.0, -170.0])
    np.testing.assert_array_equal(example.basins_of(phi, psi), [1, 0, 2, 0])


@pytest.mark.slow
def test_textbook_vaes_reproduce_the_beta_experiment(tmp_path):
    example = load_example("textbook_vaes")
    out = tmp_path / "textbook"
    results = example.main(["-o", str(out), "--epochs", "20", "--regression-epochs", "20"])
    assert_png(out / "figures" / "textbook_vaes.png")
    beta_1, beta_02 = results["class_vae"]
    # beta 1: the KL wins, posteriors stay at N(0, 1) and reconstruction is no better
    # than the marginal; beta 0.2: posteriors shrink and the class comes back
    assert beta_1["mean_posterior_std"] > 0.8
    assert beta_02["mean_posterior_std"] < 0.5 * beta_1["mean_posterior_std"]
    assert beta_02["reconstruction_accuracy"] > beta_1["reconstruction_accuracy"] + 0.3
    assert beta_1["reconstruction_accuracy"] < results["majority_class_accuracy"] + 0.1
    assert beta_1["histogram_total_variation"] < 0.1
    regression = results["regression_vae"]
    assert regression["reconstruction_rms"] < 0.3 * regression["data_std"]
    assert regression["w1_samples_vs_data"] < 0.4


@pytest.mark.slow
def test_rotation_curves_physics_and_latent_parameters(tmp_path):
    example = load_example("rotation_curves")
    # the disc + NFW velocities against closed forms: a point mass far outside the disc,
    # and the NFW curve equals V200 at r200
    radius = np.array([400.0])
    np.testing.assert_allclose(
        example.disc_velocity(radius, 1e10, 2.0), np.sqrt(example.G * 1e10 / radius), rtol=2e-3
    )
    mass = 1e12
    r200 = (2 * example.G * mass / (example.OVERDENSITY * example.HUBBLE**2)) ** (1 / 3)
    np.testing.assert_allclose(
        example.halo_velocity(np.array([r200]), mass, 10.0), np.sqrt(example.G * mass / r200)
    )
    out = tmp_path / "curves"
    results = example.main(["-o", str(out), "--galaxies", "600", "--epochs", "30",
                            "--draws", "8"])  # fmt: skip
    assert_png(out / "figures" / "rotation_curves.png")
    for posterior in ("diagonal", "full"):
        assert np.isfinite(results[posterior]["held_out_log_likelihood"])
        # the masses set the curve's amplitude: the latent means must carry them
        assert results[posterior]["r2_from_latent"]["log Mh"] > 0.6
    assert results["full"]["mean_abs_posterior_correlation"] > 0.05


@pytest.mark.slow
def test_aevb_toy_autoencoder_cannot_generate(tmp_path):
    example = load_example("aevb_toy")
    out = tmp_path / "toy"
    results = example.main(["-o", str(out), "--points", "1500", "--epochs", "80"])
    assert_png(out / "figures" / "aevb_toy.png")
    autoencoder = results["autoencoder (beta 0)"]
    learned = results["VAE, learned std"]
    # the autoencoder's points lie on a curve: next to no area in at least one cluster
    assert min(autoencoder["area_ratio_per_cluster"]) < 0.1
    assert learned["energy_distance_to_data"] < autoencoder["energy_distance_to_data"]
    assert min(learned["area_ratio_per_cluster"]) > 0.3
    assert 0.05 < learned["mean_decoder_std"] < 0.9


@pytest.mark.slow
def test_alanine_bias_loop_runs_and_its_numbers_hold(tmp_path):
    """The bias loop with tiny settings (a 2 ps reference, 80 ps rounds, 40 epochs): it
    runs two rounds through the CLI (the second trains on the first's frames with their
    weights), and each round's basin free energies are those of its own frames and
    weights, recomputed here."""
    pytest.importorskip("openmm")
    data = SHARED_DATA / "alanine-dipeptide"
    if not (data / "ala2.dcd").exists():
        pytest.skip(f"shared data not found: {data}")
    reference = load_example("alanine_bias/reference_phipsi")
    reference.main(["--pdb", str(data / "ala2.pdb"), "--ns", "0.002", "--report", "25",
                    "-o", str(tmp_path / "reference.npz")])  # fmt: skip
    loop = load_example("alanine_bias/loop")
    out = tmp_path / "loop"
    summary = loop.main(["--data", str(data), "--reference", str(tmp_path / "reference.npz"),
                         "--ns", "0.08", "--rounds", "2", "--epochs", "40", "--tolerance", "0",
                         "-o", str(out)])  # fmt: skip
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    assert "weights" in " ".join(summary["rounds"][1]["trained_on"])
    basins = load_example("alanine_bias/basins")
    import h5py
    import mdtraj as md

    for k, result in enumerate(summary["rounds"], start=1):
        phi, psi = basins.torsions(md.load(str(out / f"biased{k}.dcd"), top=str(data / "ala2.pdb")))
        with h5py.File(out / f"bias{k}.h5") as handle:
            weights = handle["weights"][()]
        assert len(phi) == 80  # 20,000 steps, a frame every 250
        keep = slice(int(len(phi) * 0.1), None)
        expected = basins.free_energies(phi[keep], psi[keep], weights[keep])
        assert result["alpha_R"] == expected["alpha_R"]
    assert json.loads((out / "summary.json").read_text()) == summary
