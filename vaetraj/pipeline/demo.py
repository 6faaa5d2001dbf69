"""`demo`: the whole pipeline on the built-in polymer, into one folder."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaetraj.errors import OutputError, UsageError
from vaetraj.io._atomic import atomic_output, check_folder_output, make_folder
from vaetraj.model import ModelConfig
from vaetraj.training import TrainConfig

Progress = Callable[..., None]
_OUTPUTS = (
    "aligned.h5",
    "model.h5",
    "latent.h5",
    "samples.npz",
    "samples.pdb",
    "optimized.npz",
    "optimized.pdb",
    "evaluation.json",
    "figures",
)


@dataclass
class DemoReport:
    directory: str
    steps: list[dict[str, Any]]
    wall_time_s: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# one line per step for the demo's table, from the step's report
_SUMMARIES: dict[str, Callable[[Any], str]] = {
    "align": lambda r: (
        f"{r.frames} frames of the built-in polymer ({r.atoms} beads, {r.dims}D), {r.method} axes"
    ),
    "train": lambda r: (
        f"{r.epochs_run} epochs (kept {r.kept_epoch}), recon RMSD {r.recon_rmsd_train:.3g} "
        f"(validation {r.recon_rmsd_val:.3g}, {r.val_gap:.2f}x), variance explained "
        f"{r.explained_variance_train:.0%} (PCA {r.pca_explained_variance:.0%}), "
        f"{r.active_units}/{r.latent_dim} active units"
    ),
    "encode": lambda r: f"{r.frames} frames to a {r.latent_dim}D latent path",
    "sample": lambda r: (
        f"{r.structures} conformations, {r.plausible_fraction:.0%} inside the held-out "
        f"MD frames' energy ranges (the frames themselves {r.train_plausible_fraction:.0%}; "
        f"decoder before refinement {r.raw_plausible_fraction:.0%}"
        f"{f' of {r.raw_checked}' if r.raw_checked < r.structures else ''}), median energy "
        f"{r.energy_median:.3g} kT (MD {r.train_energy_range[0]:.3g} to "
        f"{r.train_energy_range[1]:.3g})"
    ),
    "optimize": lambda r: (
        f"R_g {r.rg:.3g} vs training minimum {r.train_rg_min:.3g}, "
        f"energy {r.energy:.3g} kT, {'passes' if r.plausible else 'FAILS'} the energy check"
        + (
            f", {r.nearest_frame_rmsd:.3g} RMSD from the nearest training frame"
            if r.nearest_frame_rmsd is not None
            else ""
        )
    ),
    "evaluate": lambda r: (
        f"sample W1 {r.w1_pairwise_mean:.3g} (pairwise), IWAE log p "
        f"{r.iwae_log_likelihood:.3g} nats, prior holes {r.prior_hole_fraction:.0%}"
    ),
    "plot": lambda r: f"{len(r.figures)} figures in {r.output}",
}


@dataclass
class _Demo:
    """The demo's folder and the record of its steps so far."""

    folder: Path
    overwrite: bool
    progress: Progress | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def aligned(self) -> Path:
        return self.folder / "aligned.h5"

    @property
    def model(self) -> Path:
        return self.folder / "model.h5"

    def step(self, name: str, run: Callable[[], Any]) -> Any:
        """Run one step and record its summary, time and notes."""
        if self.progress:
            self.progress(len(self.steps), len(_SUMMARIES), "demo", name)
        clock = time.perf_counter()
        report = run()
        self.steps.append(
            {
                "step": name,
                "result": _SUMMARIES[name](report),
                "seconds": time.perf_counter() - clock,
            }
        )
        self.notes.extend(f"{name}: {note}" for note in getattr(report, "notes", []))
        return report


def _prepare_folder(directory: str | os.PathLike, overwrite: bool) -> Path:
    folder = Path(directory)
    check_folder_output(folder, (), overwrite=overwrite)
    existing = [name for name in _OUTPUTS if (folder / name).exists()]
    if existing and not overwrite:
        raise OutputError(
            f"already holds {', '.join(existing)} (pass --overwrite to replace)", path=folder
        )
    make_folder(folder)
    return folder


def _sample_with_pdb(demo: _Demo, samples: int):
    from vaetraj.pipeline.generate import sample_file

    output = demo.folder / "samples.npz"
    report = sample_file(demo.model, output, samples, overwrite=demo.overwrite)
    return _with_pdb(report, demo.model, demo.overwrite)


def _optimize_with_pdb(demo: _Demo):
    from vaetraj.pipeline.optimize import OptimizeConfig, optimize_file

    output = demo.folder / "optimized.npz"
    report = optimize_file(demo.model, output, OptimizeConfig(), overwrite=demo.overwrite)
    return _with_pdb(report, demo.model, demo.overwrite)


def _plot(demo: _Demo):
    from vaetraj.pipeline.plot import plot_file

    folder = demo.folder
    return plot_file(
        demo.model,
        folder / "figures",
        latent=folder / "latent.h5",
        data=demo.aligned,
        samples=folder / "samples.npz",
        optimized=folder / "optimized.npz",
        color="rg",
        overwrite=demo.overwrite,
    )


def _evaluate_and_save(demo: _Demo):
    from vaetraj.pipeline.evaluate import EvaluateConfig, evaluate_file

    report = evaluate_file([demo.aligned], demo.model, EvaluateConfig())
    with atomic_output(demo.folder / "evaluation.json", overwrite=demo.overwrite) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=2))
    return report


def run_demo(
    directory: str | os.PathLike = "vaetraj-demo",
    *,
    epochs: int = 250,
    latent_dim: int | None = None,
    samples: int = 1000,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> DemoReport:
    """The whole pipeline on the built-in polymer, every output in `directory`.

    simulate (cached) -> align -> train -> encode -> sample -> optimize R_g ->
    evaluate -> plot.

    Args:
        directory: the folder.
        epochs: training epochs.
        latent_dim: None: train's default (docs/pages/method.md).
        samples: conformations sampled.
        overwrite: replace earlier outputs.
        progress: called as each step starts.

    Returns:
        Each step's one-line result and time.
    """
    from vaetraj.pipeline.align import AlignConfig, align_file
    from vaetraj.pipeline.encode import encode_file
    from vaetraj.pipeline.train import train_file

    started = time.perf_counter()
    model_config = ModelConfig(features=None, latent_dim=latent_dim)  # checked before writing
    train_config = TrainConfig(epochs=epochs)
    if samples < 1:
        raise UsageError(f"samples must be at least 1, got {samples}", fields=("samples",))
    demo = _Demo(_prepare_folder(directory, overwrite), overwrite, progress)
    folder, aligned, model = demo.folder, demo.aligned, demo.model
    demo.step("align", lambda: align_file(None, aligned, AlignConfig(), overwrite=overwrite))
    demo.step(
        "train",
        lambda: train_file(
            [aligned], model, model_config, train_config,
            checkpoint=folder / "model.ckpt.h5", overwrite=overwrite,
        ),
    )  # fmt: skip
    demo.step(
        "encode",
        lambda: encode_file(
            [aligned], model, folder / "latent.h5", recon=True, overwrite=overwrite
        ),
    )
    demo.step("sample", lambda: _sample_with_pdb(demo, samples))
    demo.step("optimize", lambda: _optimize_with_pdb(demo))
    demo.step("evaluate", lambda: _evaluate_and_save(demo))
    demo.step("plot", lambda: _plot(demo))
    return DemoReport(
        directory=str(folder),
        steps=demo.steps,
        wall_time_s=time.perf_counter() - started,
        notes=demo.notes,
    )


def _with_pdb(report, model: Path, overwrite: bool):
    """Also write the report's .npz output as a .pdb beside it (for VMD or PyMOL)."""
    import numpy as np

    from vaetraj.io.model_file import read_model_file
    from vaetraj.io.structures import write_structures

    source = Path(report.output)
    record = read_model_file(model)
    with np.load(source) as archive:
        xyz = archive["arr"]
    write_structures(
        source.with_suffix(".pdb"),
        xyz,
        topology_json=record.topology,
        units=record.units,
        overwrite=overwrite,
    )
    return report
