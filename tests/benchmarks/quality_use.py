"""Quality of a trained model in use, textbook setting (long_paths.npz, principal
alignment, 250 epochs), for each (latent size, beta) given:

- sample fidelity: mean 1-Wasserstein distance over the 66 pairwise distances between
  the data and 2048 samples (target < 0.2; the textbook's model reaches 0.46), from the
  latent density and from N(0, I);
- the samples' mean bond length against the data's 0.72 (target: within 10%);
- optimize --objective rg: R_g of the result against the training minimum 0.456, and
  whether it is plausible (bonds and contacts against the data).

    python tests/benchmarks/quality_use.py [--settings 2,0.01 4,0.01 8,0.001]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from vaetraj import AlignConfig, align
from vaetraj.model import ModelConfig
from vaetraj.pipeline.evaluate import EvaluateConfig, evaluate
from vaetraj.pipeline.optimize import OptimizeConfig, optimize
from vaetraj.pipeline.train import TrainingSet, train
from vaetraj.training import TrainConfig

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "polymer"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--settings", nargs="+", default=["2,0.01", "4,0.01", "8,0.001"])
    parser.add_argument("--epochs", type=int, default=250)
    args = parser.parse_args()
    raw = np.load(DATA / "long_paths.npz")["arr"]
    aligned = align(raw, AlignConfig()).xyz
    results = []
    for setting in args.settings:
        latent, beta = setting.split(",")
        started = time.perf_counter()
        model, report = train(
            TrainingSet.from_array(aligned),
            ModelConfig(latent_dim=int(latent)),
            TrainConfig(epochs=args.epochs, beta=float(beta)),
        )
        row = {"latent_dim": int(latent), "beta": float(beta), "recon": report.recon_rmsd_train}
        for prior in ("density", "standard"):
            scores = evaluate(model, raw, EvaluateConfig(samples=2048, prior=prior, seed=1))
            row[prior] = {
                "w1_pairwise": round(scores.w1_pairwise_mean, 3),
                "mean_bond": round(scores.sample_mean_bond, 3),
                "bond_error": round(scores.sample_mean_bond / scores.data_mean_bond - 1, 3),
                "plausible": round(scores.sample_plausible_fraction, 3),
            }
        best = optimize(model, OptimizeConfig()).report
        row["optimize"] = {
            "rg": round(best.rg, 3),
            "train_rg_min": round(best.train_rg_min, 3),
            "more_compact_than_training": best.beyond_training,
            "plausible": best.plausible,
            "closest_nonbonded": round(best.closest_nonbonded, 3),
            "seconds": round(best.optimize_time_s, 2),
        }
        row["wall_s"] = round(time.perf_counter() - started, 1)
        results.append(row)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
