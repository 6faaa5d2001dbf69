"""Model quality in the textbook setting: train on long_paths.npz, score on paths.npz.

    python tests/benchmarks/quality_train.py [--epochs 250] [--latent-dim 2] [--beta 0.01]

The textbook's model reaches a reconstruction RMSD of 0.54 on its training frames and
0.42 on paths.npz; prints ours (per bead, in the data's units), KL and active units.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from vaetraj import AlignConfig, align
from vaetraj.model import ModelConfig
from vaetraj.pipeline.train import train
from vaetraj.training import TrainConfig

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "polymer"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=250)
    parser.add_argument("--latent-dim", type=int, default=2)
    parser.add_argument("--beta", type=float, default=0.01)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--schedule", default="cosine")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--warmup-epochs", type=int, default=5)
    args = parser.parse_args()
    train_xyz = align(np.load(DATA / "long_paths.npz")["arr"], AlignConfig()).xyz
    test_xyz = align(np.load(DATA / "paths.npz")["arr"], AlignConfig()).xyz
    started = time.perf_counter()
    model, report = train(
        train_xyz,
        ModelConfig(latent_dim=args.latent_dim),
        TrainConfig(
            epochs=args.epochs,
            beta=args.beta,
            lr=args.lr,
            schedule=args.schedule,
            val_fraction=args.val_fraction,
            warmup_epochs=args.warmup_epochs,
        ),
    )
    seconds = time.perf_counter() - started

    def rmsd(xyz):
        mean, _ = model.encode(xyz)
        return float(np.sqrt(np.sum((model.decode(mean) - xyz) ** 2, -1).mean(1)).mean())

    print(
        json.dumps(
            {
                "epochs": args.epochs,
                "latent_dim": args.latent_dim,
                "beta": args.beta,
                "lr": args.lr,
                "schedule": args.schedule,
                "recon_rmsd_all_long_paths": rmsd(train_xyz),
                "recon_rmsd_train_split": report.recon_rmsd_train,
                "recon_rmsd_val_split": report.recon_rmsd_val,
                "recon_rmsd_paths": rmsd(test_xyz),
                "kl_per_dim": report.kl_per_dim,
                "active_units": report.active_units,
                "best_epoch": report.best_epoch,
                "kept_epoch": report.kept_epoch,
                "warmup_epochs": args.warmup_epochs,
                "train_seconds": round(seconds, 1),
                "textbook": {"train": 0.54, "paths": 0.42},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
