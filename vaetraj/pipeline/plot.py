"""`plot`: the figures people want from a model, as PNG files (matplotlib, headless).

loss.png        training and validation loss per epoch, with reconstruction and KL
latent.png      a latent path coloured by time or R_g, its path drawn, over the model's
                latent density
marginals.png   data vs samples: histograms of pairwise distances
structures.png  the training frame of lowest R_g beside the optimized structure
free_energy.png with per-frame weights of biased frames (`vaetraj bias`): the
                reweighted free energy -kT ln p over z0, z1 (kJ/mol at the bias run's
                temperature; in kT for weights of no stated temperature)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaetraj.errors import BadInputError, InputMissingError, UsageError
from vaetraj.io._atomic import atomic_output, check_folder_output, make_folder
from vaetraj.io._paths import require_input
from vaetraj.io.bias import read_weights_and_temperature
from vaetraj.io.latent import LatentData, read_latent, warn_if_encoded_by_another
from vaetraj.io.trajectory import ReadOptions, Trajectory
from vaetraj.pipeline.forcefield import BOLTZMANN
from vaetraj.pipeline.model import Model, load_model

FIGURES = ("loss", "latent", "marginals", "structures", "free_energy")


def headless_pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_png(figure, path: Path, overwrite: bool) -> None:
    """`figure` written atomically to `path` as a PNG, then closed."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    headless_pyplot().close(figure)


def plot_loss(model: Model, path: Path, *, overwrite: bool = False) -> None:
    plt = headless_pyplot()
    history = model.history
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = np.arange(1, len(history["loss"]) + 1)
    left.plot(epochs, history["loss"], label="training")
    if "val_loss" in history and len(history["val_loss"]):
        left.plot(epochs, history["val_loss"], label="validation")
    kept = model.record.summary.get("kept_epoch")
    if kept:  # the epoch whose parameters the model holds (the best validated, by default)
        left.axvline(kept, color="grey", linestyle="--", linewidth=1, label=f"kept: epoch {kept}")
    left.set(xlabel="epoch", ylabel="loss (normalized units)", title="beta-VAE loss")
    left.set_yscale("log")
    left.legend()
    if "reconstruction" in history:
        right.plot(epochs, history["reconstruction"], label="reconstruction")
    if "kl" in history:
        kl = np.asarray(history["kl"]).reshape(len(epochs), -1)  # (epochs, latent)
        right.plot(epochs, kl.sum(axis=1), label="KL (summed over dimensions)")
        if kl.shape[1] > 1:  # each dimension's share: a collapsed one lies near zero
            for dimension in range(kl.shape[1]):
                right.plot(epochs, kl[:, dimension], linewidth=0.8, label=f"KL z{dimension}")
    right.set(xlabel="epoch", title="loss terms")
    right.set_yscale("log")
    right.legend()
    figure.tight_layout()
    save_png(figure, path, overwrite)


def plot_latent(
    model: Model, latent: LatentData, path: Path, *, color: str = "time", overwrite: bool = False
) -> None:
    plt = headless_pyplot()
    mean = latent.mean
    if mean.shape[1] < 2:
        mean = np.column_stack([np.arange(len(mean)), mean[:, 0]])
        labels = ("frame", "z0")
    else:
        labels = ("z0", "z1")
    figure, axis = plt.subplots(figsize=(6.4, 5.2))
    density = model.density
    if density is not None and model.latent_dim == 2:
        import jax

        from vaetraj.model import compute_mixture_log_density

        low, high = mean.min(axis=0), mean.max(axis=0)
        pad = 0.15 * (high - low + 1e-6)
        gx = np.linspace(low[0] - pad[0], high[0] + pad[0], 160)
        gy = np.linspace(low[1] - pad[1], high[1] + pad[1], 160)
        grid = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2).astype(np.float32)
        log_p = np.asarray(
            jax.jit(jax.vmap(lambda z: compute_mixture_log_density(density, z)))(grid)
        )
        axis.contourf(gx, gy, np.exp(log_p).reshape(160, 160), levels=12, cmap="Greys", alpha=0.5)
    if color == "rg" and "rg" in latent.extras:
        values, label = latent.extras["rg"], f"R_g ({model.units})"
    else:
        values, label = np.arange(len(mean)), "frame"
    axis.plot(mean[:, 0], mean[:, 1], "-", color="0.4", linewidth=0.5, alpha=0.6)
    points = axis.scatter(mean[:, 0], mean[:, 1], c=values, s=8, cmap="viridis", zorder=3)
    figure.colorbar(points, ax=axis, label=label)
    axis.set(xlabel=labels[0], ylabel=labels[1], title="latent path (posterior means)")
    save_png(figure, path, overwrite)


def plot_free_energy(latent: LatentData, weights: tuple[np.ndarray, float | None], path: Path,
                     *, overwrite: bool = False) -> None:  # fmt: skip
    """-kT ln p over the first two latent coordinates (one: a profile), p the density of
    the frames weighted by a biased run's weights; 0 at the minimum."""
    plt = headless_pyplot()
    values, temperature = weights
    kt, unit = (1.0, "kT") if temperature is None else (BOLTZMANN * temperature, "kJ/mol")
    mean = latent.mean
    figure, axis = plt.subplots(figsize=(6.4, 5.2))
    with np.errstate(divide="ignore"):
        if mean.shape[1] < 2:
            density, edges = np.histogram(mean[:, 0], bins=60, weights=values, density=True)
            energy = -kt * np.log(density)
            axis.plot(
                0.5 * (edges[1:] + edges[:-1]), energy - np.nanmin(energy[np.isfinite(energy)])
            )
            axis.set(xlabel="z0", ylabel=f"free energy ({unit})")
        else:
            density, xs, ys = np.histogram2d(mean[:, 0], mean[:, 1], bins=60, weights=values,
                                             density=True)  # fmt: skip
            energy = -kt * np.log(density.T)
            energy -= np.min(energy[np.isfinite(energy)])
            image = axis.pcolormesh(xs, ys, np.where(np.isfinite(energy), energy, np.nan))
            figure.colorbar(image, ax=axis, label=f"free energy ({unit})")
            axis.set(xlabel="z0", ylabel="z1")
    axis.set_title("reweighted free energy of the biased frames")
    save_png(figure, path, overwrite)


def _marginal_pairs(atoms: int, count: int = 8) -> list[tuple[int, int]]:
    """Pairs from the first atom to atoms spread along the chain."""
    others = np.unique(np.linspace(1, atoms - 1, min(count, atoms - 1)).round().astype(int))
    return [(0, int(j)) for j in others]


def plot_marginals(
    model: Model, data: np.ndarray, samples: np.ndarray, path: Path, *, overwrite: bool = False
) -> None:
    plt = headless_pyplot()
    pairs = _marginal_pairs(model.atoms)
    columns = min(4, len(pairs))
    rows = -(-len(pairs) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.6 * rows), squeeze=False)
    for axis, (i, j) in zip(axes.ravel(), pairs, strict=False):
        first = np.linalg.norm(data[:, i] - data[:, j], axis=-1)
        second = np.linalg.norm(samples[:, i] - samples[:, j], axis=-1)
        bins = np.linspace(min(first.min(), second.min()), max(first.max(), second.max()), 40)
        axis.hist(first, bins=bins, density=True, alpha=0.5, label="data")
        axis.hist(second, bins=bins, density=True, histtype="step", linewidth=1.5, label="samples")
        axis.set_title(f"distance {i}-{j} ({model.units})", fontsize=9)
    for axis in axes.ravel()[len(pairs) :]:
        axis.set_visible(False)
    axes[0, 0].legend(fontsize=8)
    figure.tight_layout()
    save_png(figure, path, overwrite)


def plot_structures(
    model: Model, data: np.ndarray, optimized: np.ndarray, path: Path, *, overwrite: bool = False
) -> None:
    from vaetraj.pipeline.structure import compute_frame_rg, rg_weights

    plt = headless_pyplot()
    weights, _ = rg_weights(model.masses, model.atoms)
    rg = compute_frame_rg(data, weights)
    lowest = data[int(np.argmin(rg))]
    optimized_rg = float(compute_frame_rg(optimized[None], weights)[0])
    figure, axis = plt.subplots(figsize=(5.2, 5.2))
    for xyz, label in (
        (lowest, f"training minimum, R_g {rg.min():.3g}"),
        (optimized, f"optimized, R_g {optimized_rg:.3g}"),
    ):
        centred = xyz - xyz.mean(axis=0)
        axis.plot(centred[:, 0], centred[:, 1], "o-", alpha=0.8, label=label)
    axis.set_aspect("equal")
    axis.set(xlabel=f"x ({model.units})", ylabel=f"y ({model.units})", title="most compact")
    axis.legend(fontsize=8)
    save_png(figure, path, overwrite)


@dataclass
class PlotReport:
    figures: list[str]
    skipped: list[str]
    output: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """The summary as (label, text) rows: what the command prints."""
        from vaetraj.pipeline.summaries import plot_rows

        return plot_rows(self)


def _read_frames(model: Model, path: Path) -> np.ndarray:
    """Frames for plotting, aligned as the model's training frames were."""
    from vaetraj.pipeline.model_input import iter_model_frames, open_for_model

    trajectory, _ = open_for_model(model, [path], ReadOptions())
    return np.concatenate(list(iter_model_frames(model, trajectory)))


def _resolve(path: str | os.PathLike | None, default: str, explicit: bool) -> Path | None:
    """An explicit input must exist; a default one is used only when present."""
    chosen = Path(path) if path is not None else Path(default)
    if chosen.exists():
        return chosen
    if explicit or os.path.lexists(chosen):
        require_input(chosen)
    return None


# the inputs each figure needs
_NEEDS = {
    "loss": ["history"],
    "latent": ["latent"],
    "marginals": ["data", "samples"],
    "structures": ["data", "optimized"],
    "free_energy": ["latent", "weights"],
}


def _wanted(only: Sequence[str] | None, color: str, output: Path) -> list[str]:
    """The figures asked for, with the options checked."""
    wanted = list(only) if only else list(FIGURES)
    unknown = [name for name in wanted if name not in FIGURES]
    if unknown:
        raise UsageError(
            f"only takes {', '.join(FIGURES)}; got {', '.join(unknown)}", fields=("only",)
        )
    if color not in ("time", "rg"):
        raise UsageError(f"color must be time or rg, got '{color}'", fields=("color",))
    return wanted


def _without_structures(model: Model, wanted: list[str]) -> tuple[list[str], list[str]]:
    """A model of features has no structures to draw: the figures that need them are
    skipped, saying why (its loss and latent map are drawn as any model's)."""
    if model.representation.yields_structures:
        return wanted, []
    why = f"the model is of {model.representation.describe()}, not structures"
    needs = [name for name in wanted if name in ("marginals", "structures")]
    return [name for name in wanted if name not in needs], [f"{n} ({why})" for n in needs]


def _plan(wanted: list[str], inputs: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The figures whose inputs are all at hand, and the others with what they lack."""
    plan = [name for name in wanted if all(inputs[n] is not None for n in _NEEDS[name])]
    skipped = [
        f"{name} (needs {', '.join(n for n in _NEEDS[name] if inputs[n] is None)})"
        for name in wanted
        if name not in plan
    ]
    return plan, skipped


_DEFAULT_INPUTS = {"latent": "latent.h5", "data": "aligned.h5", "samples": "samples.npz",
                   "optimized": "optimized.npz"}  # fmt: skip


def _inputs(loaded: Model, model: str | os.PathLike, given: dict[str, Any]) -> dict[str, Any]:
    """The inputs at hand (None: absent): an input given must exist, a default one is
    used when present; the history is the model's."""
    inputs: dict[str, Any] = {"history": model if "loss" in loaded.history else None}
    for name, default in _DEFAULT_INPUTS.items():
        inputs[name] = _resolve(given[name], default, given[name] is not None)
    inputs["weights"] = (
        None if given["weights"] is None else require_input(given["weights"], "weights")
    )
    return inputs


def _read_encoded(path: Path, model: Path) -> LatentData:
    """A latent path, with a warning when another model file encoded it."""
    latent = read_latent(path)
    warn_if_encoded_by_another(latent, Path(path), model)
    return latent


def _read_inputs(
    loaded: Model, model: Path, inputs: dict[str, Any], uses: set[str]
) -> dict[str, Any]:
    """Every input the planned figures use, read (and checked); None for the others."""
    readers = {
        "data": lambda path: _read_frames(loaded, path),
        "latent": lambda path: _read_encoded(path, model),
        "samples": _structures,
        "optimized": lambda path: _structures(path)[0],
        "weights": read_weights_and_temperature,
    }
    read: dict[str, Any] = {
        name: reader(inputs[name]) if name in uses else None for name, reader in readers.items()
    }
    if read["weights"] is not None:
        count, frames = len(read["weights"][0]), len(read["latent"].mean)
        if count != frames:
            raise BadInputError(
                f"has {count} weights for the {frames} frames of {inputs['latent']}",
                path=inputs["weights"],
            )
    return read


def _draw(
    name: str, loaded: Model, read: dict[str, Any], target: Path, *, color: str, overwrite: bool
) -> None:
    """Write one figure from the inputs read."""
    if name == "loss":
        plot_loss(loaded, target, overwrite=overwrite)
    elif name == "latent":
        plot_latent(loaded, read["latent"], target, color=color, overwrite=overwrite)
    elif name == "free_energy":
        plot_free_energy(read["latent"], read["weights"], target, overwrite=overwrite)
    elif name == "marginals":
        plot_marginals(loaded, read["data"], read["samples"], target, overwrite=overwrite)
    else:
        plot_structures(loaded, read["data"], read["optimized"], target, overwrite=overwrite)


def plot_file(
    model: str | os.PathLike = "model.h5",
    output: str | os.PathLike = "figures",
    *,
    latent: str | os.PathLike | None = None,
    data: str | os.PathLike | None = None,
    samples: str | os.PathLike | None = None,
    optimized: str | os.PathLike | None = None,
    only: Sequence[str] | None = None,
    color: str = "time",
    overwrite: bool = False,
    weights: str | os.PathLike | None = None,
) -> PlotReport:
    """Every figure the inputs allow, as PNG files in a folder.

    Inputs left out default to latent.h5, aligned.h5, samples.npz and optimized.npz in
    the working directory, each used when present.

    Args:
        model: the model file.
        output: the folder.
        latent: an `encode` output.
        data: the aligned frames.
        samples: sampled structures.
        optimized: an optimized structure.
        only: the figures wanted (loss, latent, marginals, structures, free_energy).
        color: the latent map's colour: "time" or "rg".
        overwrite: replace existing figures.
        weights: per-frame weights of the latent path's frames (a biased run's), for
            free_energy.

    Returns:
        The figures written and those skipped (with what they lack).
    """
    output = Path(output)
    wanted = _wanted(only, color, output)
    if only is None and weights is None:  # drawn only for biased frames
        wanted.remove("free_energy")
    loaded = load_model(Path(model))
    wanted, unstructured = _without_structures(loaded, wanted)
    given = {"latent": latent, "data": data, "samples": samples, "optimized": optimized,
             "weights": weights}  # fmt: skip
    inputs = _inputs(loaded, model, given)
    plan, skipped = _plan(wanted, inputs)
    skipped += unstructured
    if not plan:
        raise InputMissingError("nothing to plot: " + "; ".join(skipped), path=output)
    check_folder_output(output, [f"{name}.png" for name in plan], overwrite=overwrite)
    # every input is read (and checked) before the first figure is written
    read = _read_inputs(loaded, Path(model), inputs, {n for name in plan for n in _NEEDS[name]})
    make_folder(output)
    figures = [str(output / f"{name}.png") for name in plan]
    for name, figure in zip(plan, figures, strict=True):
        _draw(name, loaded, read, Path(figure), color=color, overwrite=overwrite)
    notes = [f"skipped {item}" for item in skipped]
    return PlotReport(figures=figures, skipped=skipped, output=str(output), notes=notes)


def _structures(path: Path) -> np.ndarray:
    return Trajectory([path]).read_all().astype(np.float32)
