"""Generated polymer structures judged by the potential the data came from (issue 30):
the built-in simulator's own energy (`vaetraj.simulate.make_polymer_energy`), the
data's bond-length and angle spreads and its closest 1-3 pair. Nothing here uses
vaetraj's own judge: this is the outside yardstick.

    python tests/benchmarks/quality_physics.py [DIR] [--beads 12 --dim 2] [--json]

DIR holds a demo's outputs (aligned.h5, samples.npz, optimized.npz); without it,
`vaetraj demo` runs into a temporary folder first. The aligned frames are the MD
reference (alignment moves frames rigidly: the energy is unchanged).
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
    result = judge(md, generated, PolymerConfig(beads=args.beads, dim=args.dim))
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
