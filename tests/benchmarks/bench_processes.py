"""Data-parallel training over processes against one process, on the same cores, in the
same run: `vaetraj train` of the textbook setting (2,048 frames, 12 beads in 2D,
`--epochs 20 --seed 0`) as

1. one process on cores 0 and 1 (XLA's CPU backend uses both for each step), and
2. two processes joined on 127.0.0.1, one on core 0 and one on core 1 (each sums its
   half of the batch; one gloo all-reduce per step adds the gradients up),

at batch 32 and 256. The throughput is the report's `frames_per_s` (epochs after the
first, which compiles); the losses are the reports' final training and validation
losses. Targets: two processes at >= 0.7x one at batch 32, >= 0.9x at batch 256, the
losses within 2%.

    python tests/benchmarks/bench_processes.py [--data long_paths.npz] [--repeats 2]

It also prints what the Scaling page's projection is built from: the time of a step's
compute alone (one process, one core) and of an all-reduce of the gradient's bytes
(two processes, measured as the difference), per batch size.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

SHARED = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "polymer" / "long_paths.npz"
)
EPOCHS = 20


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _argv(data: Path, model: Path, batch: int) -> list[str]:
    return [
        sys.executable, "-m", "vaetraj", "train", str(data), "-o", str(model), "--epochs",
        str(EPOCHS), "--batch-size", str(batch), "--seed", "0", "--json", "--overwrite",
    ]  # fmt: skip


def _report(output: str) -> dict:
    return json.loads(output)


def one_process(data: Path, folder: Path, batch: int, cores: str) -> dict:
    done = subprocess.run(
        ["taskset", "-c", cores, *_argv(data, folder / "one.h5", batch)],
        capture_output=True, text=True, check=True, env=_environment(),
    )  # fmt: skip
    return _report(done.stdout)


def two_processes(data: Path, folder: Path, batch: int) -> dict:
    joined = ["--coordinator", f"127.0.0.1:{_port()}", "--num-processes", "2"]
    runs = [
        subprocess.Popen(
            [
                "taskset",
                "-c",
                str(index),
                *_argv(data, folder / "two.h5", batch),
                *joined,
                "--process-id",
                str(index),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_environment(),
        )  # fmt: skip
        for index in (0, 1)
    ]
    outputs = [run.communicate(timeout=900) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        if run.returncode:
            raise RuntimeError(f"a process failed ({run.returncode}): {err.strip()[-400:]}")
    return _report(outputs[0][0])


def _environment() -> dict[str, str]:
    return {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}


def _losses(report: dict) -> tuple[float, float]:
    return report["train_loss"], report["val_loss"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        data = args.data or (SHARED if SHARED.exists() else _simulated(folder))
        results = {}
        for batch in (32, 256):
            one = [one_process(data, folder, batch, "0,1") for _ in range(args.repeats)]
            single = [one_process(data, folder, batch, "0") for _ in range(args.repeats)]
            two = [two_processes(data, folder, batch) for _ in range(args.repeats)]
            best = {
                name: max(runs, key=lambda r: r["frames_per_s"])
                for name, runs in (("one", one), ("single_core", single), ("two", two))
            }
            rates = {name: report["frames_per_s"] for name, report in best.items()}
            frames = len(np.load(data)["arr"]) if data.suffix == ".npz" else None
            results[f"batch{batch}"] = {
                "frames_per_s": {name: round(rate) for name, rate in rates.items()},
                "two_over_one": round(rates["two"] / rates["one"], 2),
                "loss_one": [round(v, 3) for v in _losses(best["one"])],
                "loss_two": [round(v, 3) for v in _losses(best["two"])],
                "loss_change": [
                    round(b / a - 1, 4)
                    for a, b in zip(_losses(best["one"]), _losses(best["two"]), strict=True)
                ],
                # per step: a process's compute on one core (its half batch is at most
                # this) and what the pair adds beyond it
                "step_ms_one_core": round(1e3 * batch / rates["single_core"], 3),
                "step_ms_two_processes": round(1e3 * batch / rates["two"], 3),
                "frames": frames,
            }
        # one core's step as fixed + per-frame cost (the scaling model's inputs)
        small, large = (results[f"batch{b}"]["step_ms_one_core"] for b in (32, 256))
        frame_ms = (large - small) / (256 - 32)
        results["one_core_step"] = {
            "fixed_ms": round(small - 32 * frame_ms, 3),
            "per_frame_us": round(1e3 * frame_ms, 2),
        }
        results["targets"] = {"batch32": 0.7, "batch256": 0.9, "loss_change": 0.02}
        print(json.dumps(results, indent=1))


def _simulated(folder: Path) -> Path:
    from vaetraj import PolymerConfig, simulate_polymer

    frames = simulate_polymer(PolymerConfig(frames=2048, stride=100, equilibration=5000), seed=3)
    np.savez(folder / "polymer.npz", arr=frames)
    return folder / "polymer.npz"


if __name__ == "__main__":
    main()
