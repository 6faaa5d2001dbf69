"""Cost that follows the work (issue 15): `vaetraj train` on aligned files of 50 atoms in
3D at two sizes (default 100k and 1M frames), one epoch each, as in the issue:

    vaetraj train DATA.h5 --hidden 64 --layers 3 --batch-size 256 --epochs 1
        --val-fraction 0.01

For each size it reports the whole command's wall time, the time in the epochs (the
model's history) and outside them (start-up, reading and writing included), and the command's peak resident memory. The ratios in the same run:

- memory: (peak at the large size - peak at the small) / (data's growth). Target <= 2.
- time: the time outside the epochs at the large size. Target < 20 s (and its ratio to
  the small size's, which a cost that followed the frames would put near 10).

Each size is a fresh process (its peak is its own); the data are a built-in polymer run
of 50 beads, resampled with noise to the size wanted, aligned once by `vaetraj align`.

    python tests/benchmarks/bench_scale.py [--frames 100000 1000000] [--dir /tmp/scale]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from vaetraj.pipeline.model import load_model

ATOMS = 50
TRAIN = ["--hidden", "64", "--layers", "3", "--batch-size", "256", "--epochs", "1"]
TRAIN += ["--val-fraction", "0.01", "--min-explained", "0", "--json", "--overwrite"]
# runs a command and prints the peak resident memory of its process tree in bytes
_PEAK = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, file=sys.stderr); "
    "sys.exit(code)"
)


def vaetraj(*args: str) -> list[str]:
    return [sys.executable, "-m", "vaetraj", *args]


def make_data(frames: int, folder: Path) -> Path:
    """An aligned file of `frames` frames (made once, kept in `folder`)."""
    aligned = folder / f"scale_{frames}.h5"
    if aligned.exists():
        return aligned
    base = folder / "scale_base.npy"
    if not base.exists():
        subprocess.run(
            vaetraj("simulate", "polymer", "-o", str(base), "--beads", str(ATOMS), "--dim", "3",
                    "--frames", "20000", "--stride", "20", "--seed", "0", "--overwrite"),
            check=True, capture_output=True,
        )  # fmt: skip
    chain = np.load(base)
    rng = np.random.default_rng(frames)
    xyz = chain[rng.integers(0, len(chain), frames)]
    xyz = (xyz + rng.normal(0.0, 0.02, xyz.shape)).astype(np.float32)
    raw = folder / f"scale_{frames}.npy"
    np.save(raw, xyz)
    del xyz
    subprocess.run(vaetraj("align", str(raw), "-o", str(aligned), "--overwrite"), check=True,
                   capture_output=True)  # fmt: skip
    raw.unlink()
    return aligned


def measure(data: Path, folder: Path) -> dict:
    model = folder / f"model_{data.stem}.h5"
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", _PEAK, *vaetraj("train", str(data), "-o", str(model), *TRAIN)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    command_s = time.perf_counter() - started
    report = json.loads(run.stdout)
    peak = int(run.stderr.strip().splitlines()[-1])
    in_epochs = float(np.sum(load_model(model).history["seconds"]))
    return {
        "frames": report["frames"],
        "data_mb": round(data.stat().st_size / 1e6, 1),
        "command_s": round(command_s, 2),  # the whole command: start-up, read, write
        "train_wall_s": round(report["wall_time_s"], 2),  # the report's, from `train`
        "epoch_s": round(in_epochs, 2),
        "outside_epochs_s": round(command_s - in_epochs, 2),
        "peak_gb": round(peak / 1e9, 3),
        "density_points": report["density_points"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs=2, default=[100_000, 1_000_000])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/vaetraj-bench-scale"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    small, large = (measure(make_data(n, args.dir), args.dir) for n in args.frames)
    data_growth = (args.frames[1] - args.frames[0]) * ATOMS * 3 * 4
    growth = (large["peak_gb"] - small["peak_gb"]) * 1e9
    print(
        json.dumps(
            {
                "small": small,
                "large": large,
                "memory_growth_over_data_growth": round(growth / data_growth, 2),
                "outside_epochs_large_over_small": round(
                    large["outside_epochs_s"] / small["outside_epochs_s"], 2
                ),
                "targets": {"memory_growth_over_data_growth": "<= 2", "outside_epochs_s": "< 20"},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
