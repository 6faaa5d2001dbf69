"""Generated structures against the geometry check (issue 12): for each case, train with
the default settings, sample 1000 conformations and optimize R_g, and print the samples'
pass rate beside the held-out MD frames', before and after refinement, the sampled mean
bond against the data's, the share of samples that keep every stereocentre, and the
optimized R_g against the training minimum.

    python tests/benchmarks/quality_generate.py [--cases textbook demo ...] [--adk DIR]
        [--no-refine] [--tether-width W] [--json]

Cases (the default latent size unless --latent-dim): textbook
(../shared/data/polymer/long_paths.npz), demo (built-in 12-bead 2D polymer),
alanine-heavy (../shared/data/alanine-dipeptide, Kabsch), polymer-50x3d (built-in
50-bead 3D polymer), adk-ca (C-alpha trace of the AdK transition from the MDAnalysis test
data in --adk DIR, 400 epochs at batch 16). --tether-width sets sampling's refinement
tether in units of the decoder's error (default 3, TETHER_WIDTH), --optimize-tether-width
optimize's (default 1, OPTIMIZE_TETHER_WIDTH). Work files go to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from vaetraj import AlignConfig, PolymerConfig, ReadOptions
from vaetraj.errors import TrainingFailedError
from vaetraj.io.aligned import read_aligned
from vaetraj.metrics import compute_rg
from vaetraj.model import ModelConfig
from vaetraj.pipeline import structure
from vaetraj.pipeline.align import align_file
from vaetraj.pipeline.builtin import builtin_polymer
from vaetraj.pipeline.generate import sample_file
from vaetraj.pipeline.model import load_model
from vaetraj.pipeline.optimize import OptimizeConfig, optimize_file
from vaetraj.pipeline.train import train_file
from vaetraj.training import TrainConfig, split_blocks

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
CASES = ("textbook", "demo", "alanine-heavy", "polymer-50x3d", "adk-ca")


def _inputs(name: str, adk: Path | None):
    """(inputs, align config, read options, latent size (None: the default), train
    settings) or None."""
    kabsch = AlignConfig(method="kabsch")
    if name == "textbook":
        path = SHARED / "polymer" / "long_paths.npz"
        return ([path], AlignConfig(), ReadOptions(), None, {}) if path.exists() else None
    if name == "demo":
        return [builtin_polymer(PolymerConfig())[0]], AlignConfig(), ReadOptions(), None, {}
    if name == "polymer-50x3d":
        path, _ = builtin_polymer(PolymerConfig(beads=50, dim=3))
        return [path], AlignConfig(), ReadOptions(), None, {}
    if name == "alanine-heavy":
        data = SHARED / "alanine-dipeptide"
        if not data.exists():
            return None
        options = ReadOptions(top=data / "ala2.pdb", select="not element H")
        return [data / "ala2.dcd"], kabsch, options, None, {}
    if name == "adk-ca":
        if adk is None:
            return None
        options = ReadOptions(top=adk / "adk_closed.pdb", select="name CA")
        return [adk / "adk_dims.dcd"], kabsch, options, None, {"epochs": 400, "batch_size": 16}
    raise SystemExit(f"unknown case {name}")


def _latent_rg_r2(model_path: Path, aligned: Path) -> float:
    """How well the latent map tells R_g: R^2 of a 10-nearest-neighbour regression of
    R_g on the latent means, held-out frames predicted from the training frames."""
    data = read_aligned(aligned)
    model = load_model(model_path)
    xyz = data.xyz.astype(np.float32)
    weights, _ = structure.rg_weights(data.masses, xyz.shape[1])
    rg = np.asarray(jax.vmap(compute_rg, in_axes=(0, None))(xyz, weights))
    config = model.record.train_config
    train, val = split_blocks(
        [len(xyz)], config.val_fraction, blocks=config.val_blocks, seed=config.seed
    )
    z, _ = model.encode(xyz)
    distance = np.linalg.norm(z[val][:, None, :] - z[train][None, :, :], axis=-1)
    nearest = np.argsort(distance, axis=1)[:, :10]
    predicted = rg[train][nearest].mean(axis=1)
    return float(1 - np.sum((rg[val] - predicted) ** 2) / np.sum((rg[val] - rg[val].mean()) ** 2))


def run_case(
    name: str,
    folder: Path,
    adk: Path | None,
    refine: bool,
    overrides: dict,
    latent_dim: int | None,
    optimize_settings: dict,
) -> dict | None:
    inputs = _inputs(name, adk)
    if inputs is None:
        return None
    paths, align_config, options, latent, settings = inputs
    settings = {**settings, **overrides}
    latent = latent if latent_dim is None else latent_dim
    started = time.perf_counter()
    aligned, model = folder / f"{name}-aligned.h5", folder / f"{name}-model.h5"
    align_file([str(p) for p in paths], aligned, align_config, options, overwrite=True)
    try:
        report = train_file(
            [aligned],
            model,
            ModelConfig(latent_dim=latent),
            TrainConfig(**settings),
            overwrite=True,
        )
        status = "ok"
    except TrainingFailedError as failure:  # the model is written, marked failed
        report, status = failure.report, "failed"
    sampled = sample_file(
        model, folder / f"{name}-samples.npz", 1000, refine=refine, overwrite=True
    )
    optimized = optimize_file(
        model,
        folder / f"{name}-optimized.npz",
        OptimizeConfig(refine=refine, **optimize_settings),
        data=aligned,
        overwrite=True,
    )
    return {
        "case": name,
        "train": status,
        "ev_val": round(report.explained_variance_val, 3),
        "latent_rg_r2": round(_latent_rg_r2(model, aligned), 3),
        "data_pass": round(sampled.train_plausible_fraction, 3),
        "raw_pass": round(sampled.raw_plausible_fraction, 3)
        if sampled.raw_plausible_fraction is not None
        else round(sampled.plausible_fraction, 3),
        "sample_pass": round(sampled.plausible_fraction, 3),
        "pass_ratio": round(sampled.plausible_fraction / sampled.train_plausible_fraction, 3),
        "mean_bond_ratio": round(sampled.mean_bond / sampled.train_mean_bond, 3),
        "chirality_kept": round(1 - sampled.failures["chirality"], 4),
        "moved_median": None if sampled.moved_median is None else round(sampled.moved_median, 3),
        "opt_rg": round(optimized.rg, 3),
        "opt_bond_ratio": round(optimized.mean_bond / optimized.train_mean_bond, 3),
        "train_rg_min": round(optimized.train_rg_min, 3),
        "opt_plausible": optimized.plausible,
        "opt_nearest_rmsd": None
        if optimized.nearest_frame_rmsd is None
        else round(optimized.nearest_frame_rmsd, 3),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--adk", type=Path, default=None)
    parser.add_argument("--no-refine", action="store_true")
    parser.add_argument("--tether-width", type=float, default=None)
    parser.add_argument("--optimize-tether-width", type=float, default=None)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--latent-dim", type=int, default=None)
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE",
        help="a TrainConfig field for every case, e.g. --set beta=0.001",
    )  # fmt: skip
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        field, value = item.split("=", 1)
        overrides[field] = json.loads(value)
    if args.tether_width is not None:
        structure.TETHER_WIDTH = args.tether_width
    optimize_settings = {}
    if args.optimize_tether_width is not None:
        optimize_settings["tether_width"] = args.optimize_tether_width
    columns = ("case", "train", "ev_val", "latent_rg_r2", "data_pass", "raw_pass", "sample_pass", "pass_ratio",
               "mean_bond_ratio", "chirality_kept", "moved_median", "opt_rg", "opt_bond_ratio", "train_rg_min",
               "opt_plausible", "opt_nearest_rmsd", "seconds")  # fmt: skip
    if not args.json:
        print("| " + " | ".join(columns) + " |")
        print("|" + " --- |" * len(columns))
    with tempfile.TemporaryDirectory() as folder:
        for name in args.cases:
            row = run_case(
                name,
                Path(folder),
                args.adk,
                not args.no_refine,
                overrides,
                args.latent_dim,
                optimize_settings,
            )
            if row is None:
                print(f"skipping {name}: its data is not here", file=sys.stderr)
                continue
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                print("| " + " | ".join(str(row[c]) for c in columns) + " |", flush=True)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
