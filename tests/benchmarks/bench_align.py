"""Alignment speed, measured as ratios against baselines in the same run.

    python tests/benchmarks/bench_align.py [--frames 100000] [--kabsch-frames 10000] [--atoms 1000]

1. principal-axis alignment of 100k frames x 12 beads in 2D, against a per-frame NumPy
   loop with np.linalg.eigh (the textbook's way). Target: >= 20x.
2. Kabsch superposition of 10k frames of a 1000-atom system onto frame 0, against
   mdtraj.superpose. Target: >= 1x.
Both run the public in-memory API `vaetraj.align` (arrays in, arrays out), best of 3
after one warm-up call (which compiles).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _timing import best_time


def numpy_principal_loop(xyz):
    out = np.empty_like(xyz)
    for i, frame in enumerate(xyz):
        centred = frame - frame.mean(axis=0)
        _, vectors = np.linalg.eigh(centred.T @ centred)
        out[i] = centred @ vectors[:, ::-1]
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--kabsch-frames", type=int, default=10_000)
    parser.add_argument("--atoms", type=int, default=1000)
    args = parser.parse_args()

    import jax
    import mdtraj as md

    from vaetraj import AlignConfig, align

    rng = np.random.default_rng(0)
    results = {"device": str(jax.devices()[0]), "jax": jax.__version__}

    chain = np.cumsum(rng.normal(size=(args.frames, 12, 2)), axis=1).astype(np.float32)
    align(chain[:10])
    align(chain)  # compile for the full block size
    ours = best_time(lambda: align(chain), warm_up=False)
    baseline = best_time(lambda: numpy_principal_loop(chain), 1, warm_up=False)
    results["principal"] = {
        "frames": args.frames,
        "vaetraj_s": ours,
        "numpy_loop_s": baseline,
        "speedup": baseline / ours,
    }

    reference = rng.normal(size=(args.atoms, 3)).astype(np.float32)
    frames = (reference + 0.1 * rng.normal(size=(args.kabsch_frames, args.atoms, 3))).astype(
        np.float32
    )
    topology = md.Topology()
    residue = topology.add_residue("X", topology.add_chain())
    for _ in range(args.atoms):
        topology.add_atom("C", md.element.carbon, residue)
    config = AlignConfig(method="kabsch", reference=0)
    align(frames, config)
    ours = best_time(lambda: align(frames, config), warm_up=False)

    def mdtraj_superpose():
        trajectory = md.Trajectory(frames.copy(), topology)
        trajectory.superpose(trajectory, 0)

    baseline = best_time(mdtraj_superpose, warm_up=False)
    results["kabsch"] = {
        "frames": args.kabsch_frames,
        "atoms": args.atoms,
        "vaetraj_s": ours,
        "mdtraj_superpose_s": baseline,
        "speedup": baseline / ours,
    }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
