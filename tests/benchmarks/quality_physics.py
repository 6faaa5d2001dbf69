"""Generated polymer structures judged by the potential the data came from (issue 30):
the built-in simulator's own energy (`vaetraj.simulate.make_polymer_energy`), the
data's bond-length and angle spreads and its closest 1-3 pair. Nothing here uses
vaetraj's own judge: this is the outside yardstick.

    python tests/benchmarks/quality_physics.py [DIR] [--beads 12 --dim 2] [--json]
        [--optimize-seeds N]

DIR holds a demo's outputs (aligned.h5, samples.npz, optimized.npz); without it,
`vaetraj demo` runs into a temporary folder first. The aligned frames are the MD
reference (alignment moves frames rigidly: the energy is unchanged).

--optimize-seeds N reruns `optimize --objective rg` on the demo's model with search
seeds 0..N-1 and judges each answer by the same yardstick: R_g below the training
minimum, the simulator's energy inside the frames' [p1, p99], no pair two apart closer
than the frames' closest. One run picks the most extreme of hundreds of candidates, so
whether it meets all three is decided at the edge of every range: the share over seeds
is the figure, not one run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

from vaetraj.io.aligned import read_aligned
from vaetraj.simulate import PolymerConfig, make_polymer_energy


def _chain_geometry(xyz: np.ndarray) -> dict[str, np.ndarray]:
    """Bond lengths (frames, beads-1), bond angles (frames, beads-2) and 1-3 distances."""
    bonds = xyz[:, 1:] - xyz[:, :-1]
    length = np.linalg.norm(bonds, axis=-1)
    a, b = -bonds[:, :-1], bonds[:, 1:]
    cosine = np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return {
        "bond": length,
        "angle": np.arccos(np.clip(cosine, -1, 1)),
        "one_three": np.linalg.norm(xyz[:, 2:] - xyz[:, :-2], axis=-1),
    }


def judge(md: np.ndarray, generated: dict[str, np.ndarray], config: PolymerConfig) -> dict:
    energy = jax.jit(jax.vmap(make_polymer_energy(config)))
    md_energy = np.asarray(energy(md))
    low, median, high = np.percentile(md_energy, [1, 50, 99])
    md_geometry = _chain_geometry(md)
    result = {
        "md": {
            "frames": len(md),
            "energy_p1_p50_p99": [float(low), float(median), float(high)],
            "bond_spread": float(md_geometry["bond"].std()),
            "angle_spread": float(md_geometry["angle"].std()),
            "closest_one_three": float(md_geometry["one_three"].min()),
            "rg_min": float(_rg(md).min()),
        }
    }
    for name, xyz in generated.items():
        values = np.asarray(energy(xyz))
        geometry = _chain_geometry(xyz)
        result[name] = {
            "structures": len(xyz),
            "inside_md_energy_range": float(np.mean((values >= low) & (values <= high))),
            "colder_than_md_p1": float(np.mean(values < low)),
            "hotter_than_md_p99": float(np.mean(values > high)),
            "energy_median": float(np.median(values)),
            "bond_spread_ratio": float(geometry["bond"].std() / md_geometry["bond"].std()),
            "angle_spread_ratio": float(geometry["angle"].std() / md_geometry["angle"].std()),
            "closest_one_three": float(geometry["one_three"].min()),
            "rg_min": float(_rg(xyz).min()),
        }
    return result


def optimize_seeds(folder: Path, md: np.ndarray, seeds: int, config: PolymerConfig) -> dict:
    """Each search seed's answer judged by the simulator's energy, its closest 1-3 pair
    and its R_g against the frames'; and the share of seeds that meet all three."""
    from vaetraj.pipeline.model import load_model
    from vaetraj.pipeline.optimize import OptimizeConfig, optimize

    model = load_model(folder / "model.h5")
    energy = jax.jit(jax.vmap(make_polymer_energy(config)))
    low, high = np.percentile(np.asarray(energy(md)), [1, 99])
    closest, rg_min = float(_chain_geometry(md)["one_three"].min()), float(_rg(md).min())
    rows = []
    for seed in range(seeds):
        xyz = optimize(model, OptimizeConfig(seed=seed)).xyz[None]
        value = float(np.asarray(energy(xyz))[0])
        row = {
            "seed": seed,
            "rg": float(_rg(xyz)[0]),
            "energy": value,
            "closest_one_three": float(_chain_geometry(xyz)["one_three"].min()),
        }
        row["below_rg_min"] = row["rg"] < rg_min
        row["energy_inside"] = bool(low <= value <= high)
        row["one_three_ok"] = row["closest_one_three"] >= closest
        rows.append(row)
    met = [r["below_rg_min"] and r["energy_inside"] and r["one_three_ok"] for r in rows]
    return {
        "md": {"rg_min": rg_min, "energy_p1_p99": [float(low), float(high)],
               "closest_one_three": closest},
        "seeds": rows,
        "share_meeting_all": float(np.mean(met)),
        "share_below_rg_min": float(np.mean([r["below_rg_min"] for r in rows])),
        "share_energy_inside": float(np.mean([r["energy_inside"] for r in rows])),
        "share_one_three_ok": float(np.mean([r["one_three_ok"] for r in rows])),
    }  # fmt: skip


def _rg(xyz: np.ndarray) -> np.ndarray:
    centred = xyz - xyz.mean(axis=1, keepdims=True)
    return np.sqrt(np.mean(np.sum(centred**2, -1), -1))


def _structures(path: Path) -> np.ndarray:
    with np.load(path) as data:
        return np.asarray(data[data.files[0]], np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path)
    parser.add_argument("--beads", type=int, default=12)
    parser.add_argument("--dim", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--optimize-seeds", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    folder = args.folder
    if folder is None:
        folder = Path(tempfile.mkdtemp()) / "demo"
        subprocess.run(["vaetraj", "demo", str(folder)], check=True, stdout=subprocess.DEVNULL)
    md = np.asarray(read_aligned(folder / "aligned.h5").xyz, np.float32)
    generated = {
        name: _structures(folder / f"{name}.npz")
        for name in ("samples", "optimized")
        if (folder / f"{name}.npz").exists()
    }
    config = PolymerConfig(beads=args.beads, dim=args.dim)
    result = judge(md, generated, config)
    if args.optimize_seeds:
        result["optimize_seeds"] = optimize_seeds(folder, md, args.optimize_seeds, config)
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
