"""Training quality over the grid of molecules the defaults were chosen on (issue 11):
the textbook polymer, the built-in polymer in 2D and 3D (12, 50, 214 beads), alanine
dipeptide (heavy atoms, all atoms) and short paths (cases 1-3), each trained with the
default settings (or TRAIN_JSON on top of them), one row per case and seed.

    python tests/benchmarks/quality_grid.py [--cases textbook demo ...] [--seeds 0 1 2]
        [--train '{"lr": 1e-2}'] [--adk DIR] [--json]

Columns: explained variance (training, validation blocks) against PCA with as many
components, validation over training reconstruction RMSD, the 1D latent's rank
correlation with the frame index for the path cases, and paths.npz RMSD for the
textbook case. Simulated polymers are cached in vaetraj's cache folder; the 214-bead
chain takes several minutes the first time. The shared data (../shared/data) gives the
textbook and alanine cases; `--adk DIR` (adk_dims.dcd and adk_closed.pdb from the
MDAnalysis test data) gives case 3 as the real AdK transition, else a synthetic hinge.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from vaetraj import AlignConfig, PolymerConfig, ReadOptions, align
from vaetraj.errors import NumericalError, TrainingFailedError
from vaetraj.model import ModelConfig
from vaetraj.pipeline.builtin import builtin_polymer
from vaetraj.pipeline.train import train
from vaetraj.training import TrainConfig

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/trajectories.py
KABSCH = AlignConfig(method="kabsch")


def _polymer(beads: int, dim: int) -> np.ndarray:
    path, _ = builtin_polymer(PolymerConfig(beads=beads, dim=dim))
    return np.load(path)["arr"]


def _case_data(name: str, adk: Path | None) -> tuple[np.ndarray, int, dict]:
    """(aligned frames, latent size (None: the tool's default), train settings of the
    case)."""
    if name in ("textbook", "case4"):  # case 4: --lr 1.0, far too high
        xyz = align(np.load(SHARED / "polymer" / "long_paths.npz")["arr"]).xyz
        return xyz, None, {"lr": 1.0} if name == "case4" else {}
    if name == "demo":
        return align(_polymer(12, 2)).xyz, 4, {}
    if name.startswith("polymer-"):  # polymer-50x3d
        beads, dim = name.removeprefix("polymer-").removesuffix("d").split("x")
        return align(_polymer(int(beads), int(dim))).xyz, None, {}
    if name.startswith("alanine-"):
        select = "not element H" if name == "alanine-heavy" else None
        data = SHARED / "alanine-dipeptide"
        options = ReadOptions(top=data / "ala2.pdb", select=select)
        return align(str(data / "ala2.dcd"), KABSCH, options).xyz, None, {}
    path = {"epochs": 400, "batch_size": 16}
    chain = _polymer(214, 3)
    if name == "case1":  # the first 98 frames of the 214-bead chain
        return align(chain[:98]).xyz, 1, path
    if name == "case2":  # 98 frames from its first to its last frame, plus noise
        rng = np.random.default_rng(0)
        s = np.linspace(0, 1, 98)[:, None, None]
        frames = (1 - s) * chain[0] + s * chain[-1] + rng.normal(scale=0.1, size=(98, 214, 3))
        return align(frames).xyz, 1, path
    if name == "case3":
        if adk is not None:  # C-alpha atoms of the AdK closed-to-open transition
            options = ReadOptions(top=adk / "adk_closed.pdb", select="name CA")
            return align(str(adk / "adk_dims.dcd"), KABSCH, options).xyz, 1, {}
        from trajectories import hinge_path

        return align(hinge_path(), KABSCH).xyz, 1, {}
    raise SystemExit(f"unknown case {name}")


CASES = ("textbook", "demo", "polymer-12x2d", "polymer-12x3d", "polymer-50x3d",
         "polymer-214x3d", "alanine-heavy", "alanine-all", "case1", "case2", "case3",
         "case4")  # fmt: skip


def _rank_correlation(a: np.ndarray) -> float:
    ranks = np.argsort(np.argsort(a))
    return float(abs(np.corrcoef(ranks, np.arange(len(a)))[0, 1]))


def run_case(name: str, seed: int, extra: dict, adk: Path | None) -> dict:
    xyz, latent, settings = _case_data(name, adk)
    started = time.perf_counter()
    config = TrainConfig(**{**extra, **settings, "seed": seed})  # the case's own settings win
    row = {"case": name, "seed": seed, "frames": xyz.shape[0], "features": xyz[0].size}
    model_config = ModelConfig(features=xyz[0].size, latent_dim=latent)
    row["latent"] = model_config.latent_dim
    try:
        model, report = train(xyz, model_config, config)
        row["status"] = "ok"
    except TrainingFailedError as failure:  # exit 3, the model written for inspection
        model, report = failure.model, failure.report
        row["status"] = "failed"
    except NumericalError as error:  # exit 3: diverged beyond recovery
        return {**row, "status": f"diverged: {error}"}
    row.update(
        explained_train=round(report.explained_variance_train, 3),
        explained_val=round(report.explained_variance_val, 3),
        pca=round(report.pca_explained_variance, 3),
        val_gap=round(report.val_gap, 2),
        kept_epoch=report.kept_epoch,
        recoveries=len(report.recoveries),
    )
    if model_config.latent_dim == 1:
        mean, _ = model.encode(xyz)
        row["rank_correlation"] = round(_rank_correlation(mean[:, 0]), 3)
    if name == "textbook":
        paths = align(np.load(SHARED / "polymer" / "paths.npz")["arr"]).xyz
        mean, _ = model.encode(paths)
        error = np.sqrt(np.sum((model.decode(mean) - paths) ** 2, axis=-1).mean(axis=1))
        row["paths_rmsd"] = round(float(error.mean()), 4)
    row["seconds"] = round(time.perf_counter() - started, 1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--train", default="{}", help="TrainConfig fields on the defaults")
    parser.add_argument("--adk", type=Path, default=None)
    parser.add_argument("--json", action="store_true", help="one JSON row per line")
    args = parser.parse_args()
    columns = ("case", "seed", "frames", "features", "latent", "status", "explained_train",
               "explained_val", "pca", "val_gap", "rank_correlation", "paths_rmsd",
               "kept_epoch", "recoveries", "seconds")  # fmt: skip
    if not args.json:
        print("| " + " | ".join(columns) + " |")
        print("|" + " --- |" * len(columns))
    for name in args.cases:
        needs_shared = name in ("textbook", "case4") or name.startswith("alanine-")
        if needs_shared and not SHARED.exists():
            print(f"skipping {name}: {SHARED} not found", file=sys.stderr)
            continue
        for seed in args.seeds:
            row = run_case(name, seed, json.loads(args.train), args.adk)
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print("| " + " | ".join(str(row.get(c, "")) for c in columns) + " |", flush=True)


if __name__ == "__main__":
    main()
