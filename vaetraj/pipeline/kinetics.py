"""`vaetraj kinetics`: the slow processes of a latent path, with deeptime underneath.

The latent means of each trajectory (input file) are a time series. On them, at a lag
of `lag` frames:

1. the VAMP-2 score (deeptime's `VAMP`): 1 plus the sum of the squared singular values
   of the Koopman operator the latent coordinates give at that lag; the higher, the
   more of the slow processes the coordinates hold;
2. k-means clustering of the means (`KMeans`, seeded);
3. a reversible maximum-likelihood Markov state model on the clusters' largest
   connected set (`TransitionCountEstimator` with sliding windows,
   `MaximumLikelihoodMSM`), its implied timescales, and the same over a range of lags
   (the implied-timescale test);
4. a Chapman-Kolmogorov test over `states` metastable sets at multiples of the lag;
5. PCCA+ (`msm.pcca`): each frame's metastable state and the states' stationary
   weights.

Counts, VAMP covariances and every lag respect trajectory boundaries: a pair of frames
never spans two input files (`LatentData.trajectory_lengths`).
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaetraj.configs import KineticsConfig
from vaetraj.errors import BadInputError
from vaetraj.io._atomic import check_folder_output, check_output
from vaetraj.io.bias import read_weights
from vaetraj.io.kinetics import check_kinetics_suffix, write_kinetics
from vaetraj.io.latent import LatentData, read_latent
from vaetraj.io.trajectory import warn_frame_time_override

_TIMESCALES = 5  # implied timescales reported per lag, at most
_CK_STEPS = 4  # the Chapman-Kolmogorov test's multiples of the lag


@dataclass
class KineticsReport:
    """What `vaetraj kinetics --json` prints. Timescales are in frames, slowest first."""

    latent: str
    frames: int
    trajectories: int
    latent_dim: int
    lag: int
    frame_time_ps: float | None
    vamp2: float
    clusters: int
    active_states: int
    active_fraction: float  # frames whose cluster is in the largest connected set
    implied_timescales: list[float]
    implied_timescales_ps: list[float] | None
    its_lags: list[int]
    its: list[list[float]]  # per lag of its_lags, slowest first
    states: int
    stationary_weights: list[float]  # of the metastable states
    state_frames: list[int]  # frames assigned to each metastable state
    ck_lags: list[int]
    ck_max_error: float | None  # largest |prediction - estimate| of the CK test
    wall_time_s: float
    output: str | None = None
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    weights: str | None = None  # the per-frame weights file of a biased run
    # each metastable state's share of the frames' weights: its equilibrium population
    # when the frames come from a biased run (the Markov model's are the biased ones)
    reweighted_populations: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """The summary as (label, text) rows: what the command prints."""
        from vaetraj.pipeline.summaries import kinetics_rows

        return kinetics_rows(self)


@dataclass(frozen=True)
class Kinetics:
    """The analysis in full: the report's numbers and the arrays `kinetics.h5` holds."""

    report: KineticsReport
    arrays: dict[str, np.ndarray]


def _trajectories(
    latent: LatentData, lag: int, where: Path, notes: list[str]
) -> tuple[list[np.ndarray], list[int]]:
    """The latent means split at trajectory boundaries, and the numbers of those long
    enough for a pair at `lag` (the others hold no transition: they are clustered,
    not counted)."""
    cuts = np.cumsum(latent.trajectory_lengths)[:-1]
    pieces = np.split(np.asarray(latent.mean, np.float64), cuts)
    usable = [number for number, piece in enumerate(pieces) if len(piece) > lag]
    if not usable:
        raise BadInputError(
            f"--lag {lag} is not shorter than any trajectory (the longest has "
            f"{max(len(p) for p in pieces)} frames): no pair of frames to count",
            path=where,
        )
    if len(usable) < len(pieces):
        notes.append(
            f"{len(pieces) - len(usable)} of {len(pieces)} trajectories have no pair of frames "
            f"{lag} apart: their frames are clustered but not counted"
        )
    return pieces, usable


class _Models:
    """Reversible maximum-likelihood MSMs of the discrete trajectories, one per lag,
    each estimated once (the implied-timescale and Chapman-Kolmogorov tests share
    them): `at(lag)` gives the model and its count model, on the largest connected
    set."""

    def __init__(self, dtrajs: list[np.ndarray]):
        self.dtrajs = dtrajs
        self._made: dict[int, tuple[Any, Any]] = {}

    def at(self, lag: int) -> tuple[Any, Any]:
        if lag not in self._made:
            self._made[lag] = self._estimate(lag)
        return self._made[lag]

    def _estimate(self, lag: int) -> tuple[Any, Any]:
        from deeptime.markov import TransitionCountEstimator
        from deeptime.markov.msm import MaximumLikelihoodMSM

        counts = TransitionCountEstimator(lagtime=lag, count_mode="sliding").fit_fetch(self.dtrajs)
        # deeptime raises ValueError, from either step, when every strongly connected
        # set is a single cluster (too many clusters for the frames, or a lag so long
        # that few pairs are left)
        try:
            active = counts.submodel_largest()
            if active.n_states < 2:
                raise ValueError("one cluster")
        except ValueError:
            raise _Disconnected(f"at lag {lag} no two clusters are connected both ways") from None
        try:
            return MaximumLikelihoodMSM(reversible=True).fit_fetch(active), active
        except (ValueError, RuntimeError) as failure:  # too few counts per cluster
            raise _Disconnected(
                f"at lag {lag} the Markov model does not converge ({failure})"
            ) from None


class _Disconnected(Exception):
    """At this lag no two clusters are connected both ways."""


def _timescales(msm, count: int) -> list[float]:
    """The slowest `count` implied timescales in frames (real: the model is reversible,
    and deeptime's eigensolver may hand them back as complex numbers)."""
    return [float(t) for t in np.real(msm.timescales(min(count, msm.n_states - 1)))]


def _its_at(models: _Models, lag: int) -> list[float]:
    """The implied timescales of the model at `lag` (none where it has no connected
    pair of clusters)."""
    try:
        return _timescales(models.at(lag)[0], _TIMESCALES)
    except _Disconnected:
        return []


def _cluster(trajectories: list[np.ndarray], config: KineticsConfig, where: Path):
    """k-means centres of every frame's mean, and each trajectory's cluster indices."""
    from deeptime.clustering import KMeans

    frames = np.concatenate(trajectories)
    clusters = min(config.clusters, len(np.unique(frames, axis=0)))
    if clusters < config.states:
        raise BadInputError(
            f"{clusters} distinct latent points cannot form --states {config.states}", path=where
        )
    # deeptime reads fixed_seed=0 as "no seed" (time-based): seed + 1 keeps --seed 0
    # reproducible; one thread, so that sums run in one order
    estimator = KMeans(n_clusters=clusters, fixed_seed=config.seed + 1, n_jobs=1, max_iter=500)
    model = estimator.fit_fetch(frames)
    return model.cluster_centers, [model.transform(piece) for piece in trajectories]


def _metastable(dtrajs: list[np.ndarray], active, pcca, clusters: int) -> np.ndarray:
    """Each frame's metastable state (PCCA+'s crisp assignment of its cluster); -1 for
    a frame whose cluster is outside the largest connected set."""
    state_of = np.full(clusters, -1, np.int64)
    state_of[active.state_symbols] = pcca.assignments
    return state_of[np.concatenate(dtrajs)]


def _ck_test(models: _Models, config: KineticsConfig, longest: int, notes):
    """Chapman-Kolmogorov: the model at lag, propagated k times, against models
    estimated at k x lag (k = 1.._CK_STEPS, those with pairs)."""
    multiples = [k * config.lag for k in range(1, _CK_STEPS + 1) if k * config.lag < longest]
    try:
        msm = models.at(config.lag)[0]
        test = msm.ck_test([models.at(lag)[0] for lag in multiples], config.states)
    except (ValueError, RuntimeError, _Disconnected) as failure:  # e.g. another connected set
        notes.append(f"no Chapman-Kolmogorov test: {failure}")
        return None, [], None
    largest = float(np.max(np.abs(np.real(test.predictions) - np.real(test.estimates))))
    return test, [int(v) for v in test.lagtimes], largest


def analyze(latent: LatentData, config: KineticsConfig, where: Path) -> Kinetics:
    """The whole analysis of a latent path (see the module's docstring). deeptime's
    warnings become the report's notes, each once."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _analyze(latent, config, where)
    for message in dict.fromkeys(str(w.message) for w in caught):
        result.report.notes.append(f"deeptime: {message}")
    return result


def _check_fits(latent: LatentData, config: KineticsConfig, where: Path) -> None:
    """Refuse, before any work, options the latent path cannot carry: more clusters than
    frames, or means that never move (no process at all)."""
    frames = len(latent.mean)
    if config.clusters > frames:
        raise BadInputError(
            f"--clusters {config.clusters} is more than its {frames} frames; use at most "
            f"{max(2, frames // 10)} (about 10 frames a cluster)",
            path=where,
        )
    mean = np.asarray(latent.mean, np.float64)
    if frames and np.ptp(mean, axis=0).max() == 0:
        raise BadInputError(
            "every frame's latent mean is the same point: there is no process to analyze "
            "(was it encoded by a dead network?)",
            path=where,
        )


def _vamp(pieces: list[np.ndarray], lag: int, where: Path):
    from deeptime.decomposition import VAMP
    from deeptime.numeric import ZeroRankError

    try:
        return VAMP(lagtime=lag).fit(pieces).fetch_model()
    except ZeroRankError:
        raise BadInputError(
            f"the latent means barely vary over the frames that pairs at lag {lag} span: "
            "no process to score",
            path=where,
        ) from None


def _analyze(latent: LatentData, config: KineticsConfig, where: Path) -> Kinetics:
    started = time.perf_counter()
    notes: list[str] = []
    _check_fits(latent, config, where)
    pieces, usable = _trajectories(latent, config.lag, where, notes)
    longest = max(len(pieces[number]) for number in usable)
    vamp = _vamp([pieces[n] for n in usable], config.lag, where)
    vamp2 = float(vamp.score(2))
    centers, every_dtraj = _cluster(pieces, config, where)
    models = _Models([every_dtraj[number] for number in usable])
    try:
        msm, active = models.at(config.lag)
    except _Disconnected as failure:
        raise BadInputError(
            f"{failure} (of {len(centers)} clusters over {len(latent.mean)} frames): no Markov "
            "model; lower --lag or --clusters",
            path=where,
        ) from None
    if msm.n_states < config.states:
        raise BadInputError(
            f"the largest connected set at lag {config.lag} has {msm.n_states} cluster(s), "
            f"fewer than --states {config.states}; lower --lag or --states",
            path=where,
        )
    lags = _test_lags(config, longest, notes)
    its = [_its_at(models, lag) for lag in lags]
    notes += _its_notes(lags, its, config.lag)
    pcca = msm.pcca(config.states)
    metastable = _metastable(every_dtraj, active, pcca, len(centers))
    test, ck_lags, ck_error = _ck_test(models, config, longest, notes)
    # ps per frame: --frame-time's, else what encode recorded, else None
    frame_time = config.frame_time if config.frame_time is not None else latent.frame_time_ps
    slowest = its[lags.index(config.lag)]
    report = KineticsReport(
        latent=str(where), frames=len(latent.mean), trajectories=len(pieces),
        latent_dim=latent.mean.shape[1], lag=config.lag, frame_time_ps=frame_time,
        vamp2=vamp2, clusters=len(centers), active_states=msm.n_states,
        active_fraction=float(np.mean(metastable >= 0)),
        implied_timescales=slowest,
        implied_timescales_ps=None if frame_time is None else [t * frame_time for t in slowest],
        its_lags=lags, its=its, states=config.states,
        stationary_weights=[float(w) for w in pcca.coarse_grained_stationary_probability],
        state_frames=[int(np.sum(metastable == s)) for s in range(config.states)],
        ck_lags=ck_lags, ck_max_error=ck_error,
        wall_time_s=time.perf_counter() - started, notes=notes,
    )  # fmt: skip
    arrays = _arrays(centers, every_dtraj, metastable, msm, active, pcca, lags, its, test)
    # each frame on the slowest linear combination of the latent coordinates at the lag
    arrays["slowest"] = np.asarray(vamp.transform(np.concatenate(pieces)), np.float64)[:, 0]
    arrays["slowest_coefficients"] = _affine(np.concatenate(pieces), arrays["slowest"])
    return Kinetics(report, arrays)


def _affine(mean: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(offset, weights...) of the affine map from the latent means to `values` (the
    VAMP transform is one), fitted exactly by least squares: what a force along the
    slowest coordinate needs (`vaetraj.openmm.slowest_coordinate`)."""
    design = np.column_stack([np.ones(len(mean)), mean])
    return np.linalg.lstsq(design, values, rcond=None)[0]


def _its_notes(lags: list[int], its: list[list[float]], lag: int) -> list[str]:
    """What the implied-timescale test cannot say: lags without a model, and a lag at
    which no process is resolved (the slowest timescale no longer than the lag)."""
    notes = []
    unmodelled = [at for at, row in zip(lags, its, strict=True) if not row]
    if unmodelled:
        notes.append(
            f"no Markov model at lag(s) {unmodelled} (too few pairs of frames that far apart): "
            "their implied timescales are left out"
        )
    slowest = its[lags.index(lag)]
    if slowest and slowest[0] <= lag:
        notes.append(
            f"the slowest implied timescale ({slowest[0]:.3g} frames) is no longer than the lag "
            f"({lag}): no process is resolved at this lag, so the metastable states are not a "
            "kinetic model; lower --lag"
        )
    return notes


def _test_lags(config: KineticsConfig, longest: int, notes: list[str]) -> list[int]:
    """The implied-timescale test's lags, shorter than the longest trajectory, and the
    lag itself: those asked for (a note names any left out), or about ten from 1 to
    5 x lag, spaced geometrically."""
    asked = config.lags or np.unique(np.round(np.geomspace(1, 5 * config.lag, 10)).astype(int))
    kept = sorted({int(lag) for lag in asked if lag < longest} | {config.lag})
    dropped = sorted(set(config.lags or ()) - set(kept))
    if dropped:
        notes.append(f"--lags {dropped} left out: the longest trajectory has {longest} frames")
    return kept


def _arrays(centers, dtrajs, metastable, msm, active, pcca, lags, its, test) -> dict:
    """What kinetics.h5 holds, by dataset name."""
    width = max(1, max(len(row) for row in its))
    table = np.full((len(lags), width), np.nan)
    for row, values in enumerate(its):
        table[row, : len(values)] = values
    arrays = {
        "cluster": np.concatenate(dtrajs).astype(np.int32),
        "metastable": metastable.astype(np.int32),
        "cluster_centers": np.asarray(centers, np.float64),
        "active_clusters": np.asarray(active.state_symbols, np.int32),
        "transition_matrix": np.asarray(msm.transition_matrix, np.float64),
        "stationary_distribution": np.asarray(msm.stationary_distribution, np.float64),
        "memberships": np.asarray(pcca.memberships, np.float64),
        "its/lags": np.asarray(lags, np.int32),
        "its/timescales": table,
    }
    if test is not None:
        arrays["ck/lags"] = np.asarray(test.lagtimes, np.int32)
        arrays["ck/predictions"] = np.real(test.predictions).astype(np.float64)
        arrays["ck/estimates"] = np.real(test.estimates).astype(np.float64)
    return arrays


def kinetics_file(
    latent: str | os.PathLike,
    output: str | os.PathLike | None,
    config: KineticsConfig,
    *,
    figures: str | os.PathLike | None = None,
    overwrite: bool = False,
    weights: str | os.PathLike | None = None,
) -> KineticsReport:
    """`vaetraj kinetics`: analyze the latent path in `latent`; when `output` is given,
    write the arrays to it (`.h5`, format `vaetraj-kinetics`), and when `figures` is,
    draw the figures into that folder (`kinetics_plots`). `weights`: per-frame weights
    of a biased run (`vaetraj.io.bias.read_weights`), for the states' equilibrium
    populations and the free energy."""
    from vaetraj.pipeline import kinetics_plots

    where = Path(latent)
    if output is not None:
        check_kinetics_suffix(Path(output))
        check_output(output, overwrite=overwrite, inputs=[where])
    folder = None if figures is None else Path(figures)
    if folder is not None:  # made once the analysis is done
        check_folder_output(folder, kinetics_plots.FIGURES, overwrite=overwrite, inputs=[where])
    data = read_latent(where)
    frame_weights = None if weights is None else read_weights(weights, len(data.mean))
    warn_frame_time_override(config.frame_time, data.frame_time_ps, where)
    result = analyze(data, config, where)
    if frame_weights is not None:
        reweight(result, frame_weights, str(weights))
    # the figures first, the file last: a failure or an interrupt on the way removes
    # what this run wrote, so "no output was written" holds (each write is atomic)
    written: list[Path] = []
    made_folder = folder is not None and not folder.exists()
    try:
        if folder is not None:
            kinetics_plots.draw(
                folder, np.asarray(data.mean), result.arrays, config.lag, overwrite, written
            )
        if output is not None:
            write_kinetics(Path(output), result.arrays, _attrs(result.report, config), overwrite)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if made_folder and folder is not None and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
        raise
    result.report.figures = [str(path) for path in written]
    result.report.output = None if output is None else str(output)
    return result.report


def reweight(result: Kinetics, weights: np.ndarray, source: str) -> None:
    """Frames from a biased run: each metastable state's equilibrium population is its
    share of the frames' weights; the weights go into the arrays (and the free-energy
    figure). The Markov model, its timescales and the CK test stay those of the biased
    dynamics, and the report says so."""
    metastable = result.arrays["metastable"]
    total = float(weights.sum())
    states = result.report.states
    result.report.reweighted_populations = [
        float(weights[metastable == state].sum() / total) for state in range(states)
    ]
    result.report.weights = source
    result.arrays["weights"] = weights
    result.report.notes.append(
        "frames of a biased run: the reweighted populations and the free energy are "
        "equilibrium estimates; the Markov model, implied timescales and CK test are of "
        "the biased dynamics, not physical kinetics"
    )


def _attrs(report: KineticsReport, config: KineticsConfig) -> dict[str, Any]:
    return {
        "latent": report.latent,
        "lag": config.lag,
        "states": config.states,
        "seed": config.seed,
        "vamp2": report.vamp2,
        "frame_time_ps": report.frame_time_ps,
    }
