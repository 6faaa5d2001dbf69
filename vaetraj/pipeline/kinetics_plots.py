"""The figures of `vaetraj kinetics --figures DIR` (PNG, matplotlib, headless):

- `timescales.png`: the implied-timescale test, each process's timescale against the
  lag; below the line timescale = lag a process decays within one lag and cannot be
  resolved;
- `ck.png`: the Chapman-Kolmogorov test, the probability of staying in (or moving
  between) metastable states after k lags, predicted by the model at the lag against
  estimated at k x lag;
- `free_energy.png`: the free energy -ln p (in kT) on the latent map, p the density of
  the frames reweighted to the Markov model's stationary distribution (or, for frames
  of a biased run, by their bias weights), with the
  cluster centres coloured by metastable state; beside it the profile along the
  slowest VAMP coordinate, the whole and each metastable state's share (the one view
  that stays readable when the frames lie on a curve: a single active latent unit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaetraj.io._atomic import make_folder
from vaetraj.pipeline.plot import headless_pyplot, save_png

FIGURES = ("timescales.png", "ck.png", "free_energy.png")


def plot_timescales(arrays: dict[str, np.ndarray], lag: int, path: Path, overwrite: bool) -> None:
    plt = headless_pyplot()
    lags, table = arrays["its/lags"], arrays["its/timescales"]
    figure, axes = plt.subplots(figsize=(5, 4))
    for process in range(table.shape[1]):
        axes.plot(lags, table[:, process], "o-", label=f"process {process + 1}")
    axes.fill_between(lags, 1e-9, lags, color="0.85", label="timescale < lag")
    axes.axvline(lag, color="0.4", linestyle="--", linewidth=1)
    axes.set(xlabel="lag (frames)", ylabel="implied timescale (frames)", yscale="log")
    axes.set_ylim(bottom=max(0.5, float(np.nanmin(table)) / 2))
    axes.legend(fontsize="small")
    save_png(figure, path, overwrite)


def plot_ck(arrays: dict[str, np.ndarray], path: Path, overwrite: bool) -> None:
    plt = headless_pyplot()
    lags, predicted, estimated = arrays["ck/lags"], arrays["ck/predictions"], arrays["ck/estimates"]
    states = predicted.shape[1]
    figure, grid = plt.subplots(states, states, figsize=(2.4 * states, 2.2 * states),
                                sharex=True, sharey=True, squeeze=False)  # fmt: skip
    for i in range(states):
        for j in range(states):
            axes = grid[i, j]
            axes.plot(lags, predicted[:, i, j], "-", color="C0", label="model")
            axes.plot(lags, estimated[:, i, j], "o--", color="C1", label="estimate")
            axes.set_title(f"{i} → {j}", fontsize="small")
            axes.set_ylim(-0.05, 1.05)
    for axes in grid[-1]:
        axes.set_xlabel("lag (frames)")
    grid[0, 0].legend(fontsize="x-small")
    save_png(figure, path, overwrite)


def frame_weights(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Each frame's weight in equilibrium: a biased run's own weights where the frames
    carry them (`kinetics --weights`), else its cluster's stationary probability in the
    Markov model shared among the cluster's frames (0 outside the connected set)."""
    if "weights" in arrays:
        return arrays["weights"]
    cluster = arrays["cluster"]
    probability = np.zeros(int(cluster.max()) + 1)
    probability[arrays["active_clusters"]] = arrays["stationary_distribution"]
    frames = np.bincount(cluster, minlength=len(probability))
    return probability[cluster] / np.maximum(frames[cluster], 1)


def plot_free_energy(
    mean: np.ndarray, arrays: dict[str, np.ndarray], path: Path, overwrite: bool
) -> None:
    """The free energy over the first two latent coordinates, and its profile along the
    slowest VAMP coordinate (a 1D latent space: the profile along z0 alone)."""
    plt = headless_pyplot()
    weights = frame_weights(arrays)
    if mean.shape[1] == 1:
        figure, axes = plt.subplots(figsize=(5, 4))
        _profile(axes, mean[:, 0], weights, arrays["metastable"], "z0")
    else:
        figure, (axes, side) = plt.subplots(1, 2, figsize=(10, 4))
        _profile(side, arrays["slowest"], weights, arrays["metastable"], "slowest VAMP coordinate")
        density, xs, ys = np.histogram2d(mean[:, 0], mean[:, 1], bins=60, weights=weights,
                                         density=True)  # fmt: skip
        with np.errstate(divide="ignore"):
            energy = -np.log(density.T)
        energy -= np.min(energy[np.isfinite(energy)])
        image = axes.pcolormesh(xs, ys, np.where(np.isfinite(energy), energy, np.nan),
                                cmap="viridis")  # fmt: skip
        figure.colorbar(image, ax=axes, label="free energy (kT)")
        centers, state = arrays["cluster_centers"], _center_states(arrays)
        axes.scatter(centers[:, 0], centers[:, 1], c=state, cmap="tab10", s=12, edgecolor="w",
                     linewidth=0.3, vmin=0, vmax=9)  # fmt: skip
        axes.set(xlabel="z0", ylabel="z1")
    save_png(figure, path, overwrite)


def _profile(axes, coordinate, weights, metastable, label: str) -> None:
    """-ln p along one coordinate (kT, 0 at the minimum): all frames, and each
    metastable state's frames (their share of the same density, so each lies above
    the whole)."""
    edges = np.histogram_bin_edges(coordinate, bins=60)
    middle = 0.5 * (edges[1:] + edges[:-1])
    total = max(float(weights.sum()), np.finfo(float).tiny)

    def energy(chosen: np.ndarray) -> np.ndarray:
        mass, _ = np.histogram(coordinate[chosen], bins=edges, weights=weights[chosen])
        with np.errstate(divide="ignore"):
            return -np.log(mass / total / np.diff(edges))

    whole = energy(np.ones(len(coordinate), bool))
    floor = np.min(whole[np.isfinite(whole)]) if np.isfinite(whole).any() else 0.0
    axes.plot(middle, whole - floor, color="k", label="all frames")
    for state in range(int(metastable.max()) + 1):
        axes.plot(middle, energy(metastable == state) - floor, color=f"C{state % 10}",
                  linestyle="--", label=f"state {state}")  # fmt: skip
    axes.set(xlabel=label, ylabel="free energy (kT)")
    axes.legend(fontsize="small")


def _center_states(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Each cluster centre's metastable state (-1 outside the connected set)."""
    state = np.full(len(arrays["cluster_centers"]), -1)
    state[arrays["active_clusters"]] = np.argmax(arrays["memberships"], axis=1)
    return state


def draw(
    folder: Path,
    mean: np.ndarray,
    arrays: dict[str, np.ndarray],
    lag: int,
    overwrite: bool,
    written: list[Path],
) -> None:
    """The three figures in `folder` (made if absent); each path is added to `written`
    once it is there (so a caller can remove them if a later step fails)."""
    make_folder(folder)
    plot_timescales(arrays, lag, folder / "timescales.png", overwrite)
    written.append(folder / "timescales.png")
    if "ck/lags" in arrays:
        plot_ck(arrays, folder / "ck.png", overwrite)
        written.append(folder / "ck.png")
    plot_free_energy(mean, arrays, folder / "free_energy.png", overwrite)
    written.append(folder / "free_energy.png")
