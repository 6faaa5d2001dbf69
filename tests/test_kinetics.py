"""`vaetraj kinetics` (issue 16): the same numbers as deeptime run directly, a known
timescale recovered from a two-state process, trajectory boundaries kept, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import assert_error, run
from deeptime.clustering import KMeans
from deeptime.decomposition import VAMP
from deeptime.markov import TransitionCountEstimator
from deeptime.markov.msm import MaximumLikelihoodMSM

from vaetraj.io.latent import LatentWriter
from vaetraj.pipeline.kinetics import KineticsConfig, kinetics_file


def _latent_file(path, mean: np.ndarray, lengths: list[int]):
    """A latent path file as `encode` writes one, from means and trajectory lengths."""
    writer = LatentWriter(path, suffix=path.suffix, latent_dim=mean.shape[1],
                          extras=["trajectory"], final_path=path)  # fmt: skip
    number = np.repeat(np.arange(len(lengths)), lengths).astype(np.float32)
    writer.append({"mean": mean.astype(np.float32), "std": np.ones_like(mean, np.float32),
                   "trajectory": number})  # fmt: skip
    writer.finish({"units": "nm", "model": {}, "sources": [], "stride": 1})
    writer.close()
    return path


def _two_states(frames: int, flip: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A symmetric two-state Markov chain (flip probability per frame) seen as points
    around (-1, 0) and (1, 0): its one slow process has timescale -1 / ln(1 - 2 flip)."""
    rng = np.random.default_rng(seed)
    state = np.cumsum(rng.random(frames) < flip) % 2
    points = np.stack([2.0 * state - 1, np.zeros(frames)], 1) + rng.normal(0, 0.25, (frames, 2))
    return points, state


@pytest.fixture(scope="module")
def two_state(tmp_path_factory):
    points, state = _two_states(40_000, 0.02, seed=0)
    path = _latent_file(tmp_path_factory.mktemp("kinetics") / "two.npz", points, [40_000])
    return path, points, state


def test_a_two_state_process_gives_its_known_timescale(two_state):
    path, _, state = two_state
    report = kinetics_file(path, None, KineticsConfig(lag=5, clusters=20, states=2))
    exact = -1 / np.log(1 - 2 * 0.02)  # 24.5 frames
    assert report.implied_timescales[0] == pytest.approx(exact, rel=0.1)
    assert report.implied_timescales[1] < exact / 5  # the rest are fast: noise
    assert sorted(report.stationary_weights) == pytest.approx([0.5, 0.5], abs=0.03)
    assert report.ck_max_error < 0.05
    # every lag of the implied-timescale test sees the same process
    slowest = [its[0] for lag, its in zip(report.its_lags, report.its, strict=True) if lag >= 3]
    assert np.allclose(slowest, exact, rtol=0.15)


def test_the_numbers_are_deeptimes_on_the_same_latent(two_state, tmp_path):
    path, points, _ = two_state
    config = KineticsConfig(lag=5, clusters=20, states=2, seed=3)
    output = tmp_path / "kinetics.h5"
    report = kinetics_file(path, output, config)
    # deeptime, by hand, on the means as the file holds them
    mean = points.astype(np.float32).astype(np.float64)
    assert report.vamp2 == pytest.approx(VAMP(lagtime=5).fit(mean).fetch_model().score(2), 1e-10)
    clustering = KMeans(20, fixed_seed=config.seed + 1, n_jobs=1, max_iter=500).fit_fetch(mean)
    dtraj = clustering.transform(mean)
    counts = TransitionCountEstimator(5, "sliding").fit_fetch(dtraj).submodel_largest()
    msm = MaximumLikelihoodMSM(reversible=True).fit_fetch(counts)
    np.testing.assert_allclose(report.implied_timescales, msm.timescales(5), rtol=1e-8)
    pcca = msm.pcca(2)
    np.testing.assert_allclose(
        report.stationary_weights, pcca.coarse_grained_stationary_probability, rtol=1e-8
    )
    # the slowest coordinate: deeptime's first VAMP singular function, which here is the
    # two-state process itself
    slowest = VAMP(lagtime=5).fit(mean).fetch_model().transform(mean)[:, 0]
    with h5py.File(output) as handle:
        np.testing.assert_allclose(handle["slowest"][:], slowest, rtol=1e-8, atol=1e-10)
        assert abs(np.corrcoef(slowest, two_state[2])[0, 1]) > 0.9
        assert handle.attrs["format"] == "vaetraj-kinetics"
        assert handle.attrs["vamp2"] == report.vamp2
        np.testing.assert_array_equal(handle["cluster"][:], dtraj)
        np.testing.assert_allclose(handle["transition_matrix"][:], msm.transition_matrix)
        assert handle["metastable"].shape == (len(points),)
        assert set(np.unique(handle["metastable"][:])) <= {0, 1}


def test_no_pair_spans_two_trajectories(tmp_path):
    lengths = [30, 25, 40, 30]
    mean, _ = _two_states(sum(lengths), 0.1, seed=1)
    path = _latent_file(tmp_path / "four.h5", mean, lengths)
    report = kinetics_file(path, None, KineticsConfig(lag=10, clusters=6, states=2))
    pieces = np.split(mean.astype(np.float32).astype(np.float64), np.cumsum(lengths)[:-1])
    by_piece = VAMP(lagtime=10).fit(pieces).fetch_model().score(2)
    joined = VAMP(lagtime=10).fit(np.concatenate(pieces)).fetch_model().score(2)
    assert report.vamp2 == pytest.approx(by_piece, rel=1e-10)
    assert abs(by_piece - joined) > 1e-3  # the check could fail
    assert report.trajectories == 4


def test_a_trajectory_too_short_for_the_lag_is_clustered_not_counted(tmp_path):
    lengths = [200, 4, 300]
    mean, _ = _two_states(sum(lengths), 0.05, seed=2)
    path = _latent_file(tmp_path / "three.npz", mean, lengths)
    output = tmp_path / "k.h5"
    config = KineticsConfig(lag=5, clusters=8, states=2, lags=(1, 5, 400))
    report = kinetics_file(path, output, config)
    usable = [mean[:200], mean[204:]]
    usable = [piece.astype(np.float32).astype(np.float64) for piece in usable]
    assert report.vamp2 == pytest.approx(VAMP(lagtime=5).fit(usable).fetch_model().score(2), 1e-10)
    assert any("1 of 3 trajectories have no pair" in note for note in report.notes)
    assert any("--lags [400] left out" in note for note in report.notes)
    assert report.its_lags == [1, 5]
    with h5py.File(output) as handle:  # per-frame arrays hold every frame
        assert handle["cluster"].shape == handle["metastable"].shape == (504,)


def test_cli_json_and_table(two_state, tmp_path):
    path, _, _ = two_state
    result = run("kinetics", path, "--lag", "5", "--clusters", "10", "--frame-time", "0.5",
                 "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["vamp2"] > 1.5 and record["lag"] == 5
    assert record["implied_timescales"] == sorted(record["implied_timescales"], reverse=True)
    assert record["implied_timescales_ps"][0] == pytest.approx(
        0.5 * record["implied_timescales"][0]
    )
    # the result table is the command's output (issue 31: it went to stderr, so
    # `vaetraj kinetics ... > log.txt` kept nothing); notes stay on stderr
    table = run("kinetics", path, "--lag", "5", "--clusters", "10", "--lags", "1,5,50000")
    assert table.exit_code == 0 and "VAMP-2 at lag 5" in table.stdout
    assert "VAMP-2" not in table.stderr and "note: --lags [50000] left out" in table.stderr


def test_figures_and_the_equilibrium_weights_of_frames(two_state, tmp_path):
    from vaetraj.pipeline.kinetics import analyze
    from vaetraj.pipeline.kinetics_plots import frame_weights

    path, _, state = two_state
    figures = tmp_path / "figs"
    report = kinetics_file(path, None, KineticsConfig(lag=5, clusters=10), figures=figures)
    assert [p.split("/")[-1] for p in report.figures] == ["timescales.png", "ck.png",
                                                           "free_energy.png"]  # fmt: skip
    for name in report.figures:
        assert Path(name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a figure is an output like any other: kept unless --overwrite
    result = run("kinetics", path, "--lag", "5", "--clusters", "10", "--figures", figures)
    assert_error(result, 73, "timescales.png")
    # frames weighted to the model's equilibrium: the frames of each cluster share its
    # stationary probability, and the states' crisp sums are near their PCCA+ weights
    from vaetraj.io.latent import read_latent

    result = analyze(read_latent(path), KineticsConfig(lag=5, clusters=10), path)
    arrays = result.arrays
    weights = frame_weights(arrays)
    per_cluster = np.bincount(arrays["cluster"], weights=weights)
    np.testing.assert_allclose(per_cluster[arrays["active_clusters"]],
                               arrays["stationary_distribution"], rtol=1e-10)  # fmt: skip
    by_state = [weights[arrays["metastable"] == s].sum() for s in (0, 1)]
    np.testing.assert_allclose(by_state, result.report.stationary_weights, atol=0.02)


def test_bad_input_is_one_line_and_writes_nothing(two_state, tmp_path):
    path, _, _ = two_state
    out = tmp_path / "k.h5"
    assert_error(run("kinetics", tmp_path / "none.h5", "--lag", "5"), 66, "none.h5")
    assert_error(run("kinetics", path, "--lag", "0"), 2, "--lag must be at least 1")
    assert_error(run("kinetics", path, "--lag", "50000"), 65, "--lag 50000", "two.npz")
    assert_error(run("kinetics", path, "--lag", "5", "--states", "30", "--clusters", "20"), 2,
                 "--states must not exceed --clusters (20), got 30")  # fmt: skip
    assert_error(run("kinetics", path, "--lag", "5", "--lags", "1,x"), 2, "--lags")
    assert_error(run("kinetics", path, "--lag", "5", "-o", tmp_path / "k.txt"), 2, "k.txt", ".h5")
    assert not out.exists()
    out.write_text("keep me")
    assert_error(run("kinetics", path, "--lag", "5", "-o", out), 73, "k.h5")
    assert out.read_text() == "keep me"


@pytest.fixture(scope="module")
def small_two_state(tmp_path_factory):
    points, _ = _two_states(2000, 0.02, seed=1)
    return _latent_file(tmp_path_factory.mktemp("kinetics") / "small.h5", points, [2000])


def test_options_the_latent_path_cannot_carry_are_one_line(small_two_state, tmp_path):
    """deeptime's own errors (issue 31) become one line, exit 65, naming the file: more
    clusters than frames, so many clusters that none connect, means that never move,
    and trajectories too short for the lag; nothing is written."""
    out = tmp_path / "k.h5"
    path = small_two_state
    assert_error(run("kinetics", path, "--lag", "5", "--clusters", "5000", "-o", out), 65,
                 "small.h5", "--clusters 5000", "2000 frames")  # fmt: skip
    assert_error(run("kinetics", path, "--lag", "5", "--clusters", "1990", "-o", out), 65,
                 "small.h5", "no Markov model", "lower --lag or --clusters")  # fmt: skip
    still = _latent_file(tmp_path / "still.h5", np.ones((500, 2)), [500])
    assert_error(run("kinetics", still, "--lag", "5", "-o", out), 65, "still.h5", "same point")
    rng = np.random.default_rng(0)
    short = _latent_file(tmp_path / "short.h5", rng.normal(size=(13, 2)), [5, 8])
    assert_error(run("kinetics", short, "--lag", "6", "-o", out), 65, "short.h5")
    assert_error(run("kinetics", short, "--lag", "6", "--clusters", "2", "-o", out), 65,
                 "short.h5", "at lag 6")  # fmt: skip
    assert not out.exists()


@pytest.mark.slow
def test_lags_beyond_the_data_and_an_unresolved_lag_say_so(small_two_state):
    """A test lag with too few pairs for a model is left out with a note (it raised
    deeptime's ValueError); a lag beyond the slowest timescale gets a note that nothing
    is resolved there."""
    result = run("kinetics", small_two_state, "--lag", "5", "--lags", "1,5,1999,5000", "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert 1999 in record["its_lags"] and 5000 not in record["its_lags"]
    assert record["its"][record["its_lags"].index(1999)] == []
    assert any("no Markov model at lag(s) [1999]" in n for n in record["notes"])
    assert not any("no process is resolved" in n for n in record["notes"])  # 24.5 > 5
    late = json.loads(run("kinetics", small_two_state, "--lag", "150", "--json").stdout)
    assert late["implied_timescales"][0] <= 150
    assert any("no process is resolved at this lag" in n for n in late["notes"])


def test_weights_of_a_biased_run_give_equilibrium_populations(small_two_state, tmp_path):
    """Frames weighted 3:1 towards state 1 (as a bias run's weights would) give
    populations 3/4 and 1/4 of the frames' weights; the report
    says the Markov model is the biased dynamics'; the weights reach kinetics.h5 and
    the free-energy figure's frame weights; bad weights are one line, exit 65."""
    from vaetraj.pipeline.kinetics_plots import frame_weights

    path = small_two_state
    _, state = _two_states(2000, 0.02, seed=1)  # the fixture's own chain
    weights = np.where(state == 1, 3.0, 1.0)
    np.save(tmp_path / "w.npy", weights)
    result = run("kinetics", path, "--lag", "5", "--clusters", "20", "--states", "2",
                 "--weights", tmp_path / "w.npy", "-o", tmp_path / "k.h5", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    with h5py.File(tmp_path / "k.h5") as handle:
        metastable = handle["metastable"][()]
        stored = handle["weights"][()]
        arrays = {"weights": stored}
    expected = [weights[metastable == s].sum() / weights.sum() for s in range(2)]
    assert record["reweighted_populations"] == pytest.approx(expected)
    truth = 3 * np.sum(state == 1) / (3 * np.sum(state == 1) + np.sum(state == 0))
    assert sorted(expected) == pytest.approx(sorted([truth, 1 - truth]), abs=0.02)
    assert any("biased dynamics" in note for note in record["notes"])
    np.testing.assert_allclose(frame_weights(arrays), weights / weights.mean())
    np.save(tmp_path / "short.npy", weights[:-1])
    assert_error(run("kinetics", path, "--lag", "5", "--weights", tmp_path / "short.npy"), 65,
                 "short.npy", f"{len(weights) - 1} weights for {len(weights)} frames")  # fmt: skip
