"""The cost of refinement (issue 30, target c), as ratios within one run:

- `sample -n 500` refined against `--no-refine` on a protein of >= 1,500 heavy atoms
  (the adenylate kinase transition of the MDAnalysis test data, `--adk DIR` holding
  adk_closed.pdb and adk_dims.dcd; `pip download --no-deps mdanalysistests` has them);
- `optimize --objective rg` on all-atom alanine dipeptide against
  `sample -n 1000 --no-refine` (../shared/data or $VAETRAJ_SHARED_DATA).

    python tests/benchmarks/bench_refine.py [--adk DIR] [--only adk] [--epochs 100] [--runs 3]

Each command is timed as a whole process, the runs interleaved; the ratio is of medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(
    os.environ.get("VAETRAJ_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data")
)


def _timed(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(["vaetraj", *args], check=True, capture_output=True)
    return time.perf_counter() - started


def _ratio(name: str, slow: list[str], fast: list[str], runs: int) -> None:
    times: dict[str, list[float]] = {"slow": [], "fast": []}
    for _ in range(runs):
        times["fast"].append(_timed(fast))
        times["slow"].append(_timed(slow))
    slow_s, fast_s = statistics.median(times["slow"]), statistics.median(times["fast"])
    print(f"{name}: {slow_s:.1f} s against {fast_s:.1f} s: {slow_s / fast_s:.1f}x", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adk", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["alanine", "adk"], default=None)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp())
    alanine = DATA / "alanine-dipeptide"
    if alanine.exists() and args.only in (None, "alanine"):
        model = str(folder / "ala2.h5")
        subprocess.run(["vaetraj", "train", str(alanine / "ala2.dcd"), "--top",
                        str(alanine / "ala2.pdb"), "--method", "kabsch", "--epochs",
                        str(args.epochs), "-o", model], check=True, capture_output=True)  # fmt: skip
        _ratio(
            "optimize --objective rg (alanine, all atoms) / sample -n 1000 --no-refine",
            ["optimize", "-m", model, "--objective", "rg", "-o", str(folder / "o.npz"),
             "--overwrite"],
            ["sample", "-m", model, "-n", "1000", "--no-refine", "-o", str(folder / "s.npz"),
             "--overwrite"],
            args.runs,
        )  # fmt: skip
    if args.adk is not None and args.only in (None, "adk"):
        model, aligned = str(folder / "adk.h5"), str(folder / "adk-aligned.h5")
        # the DCD's header counts 500 frames, its body holds 98: kept with --allow-partial
        subprocess.run(["vaetraj", "align", str(args.adk / "adk_dims.dcd"), "--top",
                        str(args.adk / "adk_closed.pdb"), "--select", "not element H",
                        "--method", "kabsch", "--allow-partial", "-o", aligned],
                       check=True, capture_output=True)  # fmt: skip
        subprocess.run(["vaetraj", "train", aligned, "--epochs", str(args.epochs), "-o", model],
                       check=True, capture_output=True)  # fmt: skip
        _ratio(
            "sample -n 500 refined / --no-refine (AdK heavy atoms)",
            ["sample", "-m", model, "-n", "500", "-o", str(folder / "r.npz"), "--overwrite"],
            ["sample", "-m", model, "-n", "500", "--no-refine", "-o", str(folder / "n.npz"),
             "--overwrite"],
            args.runs,
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
