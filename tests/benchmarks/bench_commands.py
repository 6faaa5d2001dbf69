"""How soon small commands answer, as ratios to a trivial JAX program measured in the
same run (`python -c "import jax; jax.numpy.ones(3).sum().block_until_ready()"`: the
least any JAX command can take here):

- `vaetraj decode --z` of one point, `vaetraj sample -n 10` (both with their default
  refinement) and `vaetraj encode` of 2,048 frames;
- with a warm compilation cache (target: each at most 1.3x the trivial program), and
  cold (`VAETRAJ_NO_CACHE=1`: every program compiled, as before the cache).

The model is trained here on the textbook polymer (the shared data when present, else
the built-in polymer), 5 epochs: how fast a command answers does not depend on how well
its model was trained.

    python tests/benchmarks/bench_commands.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "polymer" / "long_paths.npz"
)
TRIVIAL = [sys.executable, "-c", "import jax; jax.numpy.ones(3).sum().block_until_ready()"]


def _vaetraj(*args: object) -> list[str]:
    return [sys.executable, "-m", "vaetraj", *map(str, args)]


def _seconds(argv: list[str], environment: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=environment, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()[-300:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        environment = {**os.environ, "VAETRAJ_CACHE_DIR": str(folder / "cache")}
        environment.pop("JAX_COMPILATION_CACHE_DIR", None)
        data = SHARED if SHARED.exists() else folder / "polymer.npz"
        if not SHARED.exists():
            subprocess.run(_vaetraj("simulate", "polymer", "-o", data), env=environment, check=True)
        model = folder / "model.h5"
        subprocess.run(
            _vaetraj("train", data, "-o", model, "--epochs", 5, "--seed", 0),
            env=environment, check=True, capture_output=True,
        )  # fmt: skip
        latent = subprocess.run(
            _vaetraj("encode", data, "-m", model, "-o", folder / "probe.h5", "--json"),
            env=environment, check=True, capture_output=True, text=True,
        )  # fmt: skip
        dims = json.loads(latent.stdout)["latent_dim"]
        commands = {
            "decode_one_point": _vaetraj(
                "decode", "--z", ",".join(["0.1"] * dims), "-m", model, "-o", folder / "d.npz",
                "--overwrite",
            ),
            "sample_10": _vaetraj("sample", "-n", 10, "-m", model, "-o", folder / "s.npz", "--overwrite"),
            "encode_2048": _vaetraj("encode", data, "-m", model, "-o", folder / "e.h5", "--overwrite"),
        }  # fmt: skip
        cold = {**environment, "VAETRAJ_NO_CACHE": "1"}
        for argv in commands.values():  # the warm-up: fills the cache
            _seconds(argv, environment)
        times: dict[str, dict[str, list[float]]] = {"trivial_jax": {"runs": []}}
        for name in commands:
            times[name] = {"warm": [], "cold": []}
        for _ in range(args.repeats):  # interleaved, so drift hits every figure alike
            times["trivial_jax"]["runs"].append(_seconds(TRIVIAL, environment))
            for name, argv in commands.items():
                times[name]["warm"].append(_seconds(argv, environment))
                times[name]["cold"].append(_seconds(argv, cold))
        base = statistics.median(times["trivial_jax"]["runs"])
        report: dict[str, object] = {"trivial_jax_s": round(base, 2)}
        for name in commands:
            warm, cold_s = (statistics.median(times[name][kind]) for kind in ("warm", "cold"))
            report[name] = {
                "warm_s": round(warm, 2),
                "cold_s": round(cold_s, 2),
                "warm_over_trivial": round(warm / base, 2),
                "cold_over_trivial": round(cold_s / base, 2),
            }
        report["target_warm_over_trivial"] = 1.3
        print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
