"""vaetraj: learn and use the latent space of a molecular trajectory.

The public API is imported lazily, so `import vaetraj` (and `vaetraj --help`) does not
pay for JAX until a function that needs it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from vaetraj._version import __version__

_EXPORTS = {
    "align": "vaetraj.pipeline.align",
    "align_file": "vaetraj.pipeline.align",
    "AlignConfig": "vaetraj.configs",
    "AlignReport": "vaetraj.pipeline.align",
    "AlignedTrajectory": "vaetraj.pipeline.align",
    "load_trajectory": "vaetraj.pipeline.load",
    "ReadOptions": "vaetraj.configs",
    "FeaturizeConfig": "vaetraj.configs",
    "KineticsConfig": "vaetraj.configs",
    "Trajectory": "vaetraj.io.trajectory",
    "read_aligned": "vaetraj.io.aligned",
    "PolymerConfig": "vaetraj.simulate",
    "simulate_polymer": "vaetraj.pipeline.simulate",
    "simulate_polymer_file": "vaetraj.pipeline.simulate",
    "builtin_polymer": "vaetraj.pipeline.builtin",
    "ModelConfig": "vaetraj.configs",
    "TrainConfig": "vaetraj.configs",
    "train": "vaetraj.pipeline.train",
    "train_file": "vaetraj.pipeline.train",
    "train_features": "vaetraj.pipeline.train",
    "TrainReport": "vaetraj.pipeline.train",
    "Model": "vaetraj.pipeline.model",
    "load_model": "vaetraj.pipeline.model",
    "encode": "vaetraj.pipeline.encode",
    "encode_file": "vaetraj.pipeline.encode",
    "LatentPath": "vaetraj.pipeline.encode",
    "read_latent": "vaetraj.io.latent",
    "sample": "vaetraj.pipeline.generate",
    "sample_file": "vaetraj.pipeline.generate",
    "decode_file": "vaetraj.pipeline.generate",
    "optimize": "vaetraj.pipeline.optimize",
    "optimize_file": "vaetraj.pipeline.optimize",
    "OptimizeConfig": "vaetraj.configs",
    "evaluate": "vaetraj.pipeline.evaluate",
    "evaluate_file": "vaetraj.pipeline.evaluate",
    "EvaluateConfig": "vaetraj.configs",
    "plot_file": "vaetraj.pipeline.plot",
    "run_demo": "vaetraj.pipeline.demo",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from vaetraj.configs import (
        AlignConfig,
        EvaluateConfig,
        FeaturizeConfig,
        KineticsConfig,
        ModelConfig,
        OptimizeConfig,
        ReadOptions,
        TrainConfig,
    )
    from vaetraj.io.aligned import read_aligned
    from vaetraj.io.latent import read_latent
    from vaetraj.io.trajectory import Trajectory
    from vaetraj.pipeline.align import AlignedTrajectory, AlignReport, align, align_file
    from vaetraj.pipeline.builtin import builtin_polymer
    from vaetraj.pipeline.demo import run_demo
    from vaetraj.pipeline.encode import LatentPath, encode, encode_file
    from vaetraj.pipeline.evaluate import evaluate, evaluate_file
    from vaetraj.pipeline.generate import decode_file, sample, sample_file
    from vaetraj.pipeline.load import load_trajectory
    from vaetraj.pipeline.model import Model, load_model
    from vaetraj.pipeline.optimize import optimize, optimize_file
    from vaetraj.pipeline.plot import plot_file
    from vaetraj.pipeline.simulate import simulate_polymer, simulate_polymer_file
    from vaetraj.pipeline.train import TrainReport, train, train_features, train_file
    from vaetraj.simulate import PolymerConfig


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vaetraj' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
