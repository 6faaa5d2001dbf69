"""Streaming training (issue 15): `vaetraj train` on an aligned file of 50 atoms in 3D,
streamed within `--memory-budget 64MB` against the same file trained in memory, as
ratios in the same run:

- throughput: streamed frames/s over in-memory frames/s (the report's `frames_per_s`,
  epochs after the first). Target >= 0.7.
- memory: the streamed command's peak resident memory, whole command (start-up, the
  normalization pass, the epochs, the assessment). Target < 1 GB on the large file.
- growth: the streamed peak on the large file over that on a file 10x smaller.
  Target < 1.1.

    python tests/benchmarks/bench_stream.py [--frames 200000 2000000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from bench_scale import _PEAK, make_data, vaetraj

TRAIN = ["--hidden", "64", "--layers", "3", "--batch-size", "256", "--val-fraction", "0.01"]
TRAIN += ["--min-explained", "0", "--json", "--overwrite"]


def measure(data: Path, folder: Path, budget: str, epochs: int) -> dict:
    model = folder / f"model_{data.stem}_{budget}.h5"
    command = vaetraj("train", str(data), "-o", str(model), "--epochs", str(epochs),
                      "--memory-budget", budget, *TRAIN)  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-c", _PEAK, *command], capture_output=True, text=True, check=True
    )
    report = json.loads(run.stdout)
    return {
        "frames": report["frames"],
        "file_mb": round(data.stat().st_size / 1e6, 1),
        "budget": budget,
        "streamed": report["streamed"],
        "frames_per_s": round(report["frames_per_s"]),
        "wall_s": round(report["wall_time_s"], 1),
        "val_loss": round(report["val_loss"], 3),
        "peak_gb": round(int(run.stderr.strip().splitlines()[-1]) / 1e9, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs=2, default=[200_000, 2_000_000])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/vaetraj-bench-scale"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    small, large = (make_data(n, args.dir) for n in args.frames)
    streamed_small = measure(small, args.dir, "64MB", args.epochs)
    streamed = measure(large, args.dir, "64MB", args.epochs)
    in_memory = measure(large, args.dir, "16GB", args.epochs)
    print(
        json.dumps(
            {
                "streamed_small": streamed_small,
                "streamed": streamed,
                "in_memory": in_memory,
                "throughput_streamed_over_in_memory": round(
                    streamed["frames_per_s"] / in_memory["frames_per_s"], 2
                ),
                "streamed_peak_large_over_small": round(
                    streamed["peak_gb"] / streamed_small["peak_gb"], 3
                ),
                "targets": {
                    "throughput_streamed_over_in_memory": ">= 0.7",
                    "streamed peak_gb": "< 1",
                    "streamed_peak_large_over_small": "< 1.1",
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
