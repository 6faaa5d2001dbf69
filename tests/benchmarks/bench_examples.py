"""Each example at its default settings against the issue's budget (3 minutes on a
2-core CPU), with a same-run calibration so that figures from different machines can be
compared: a fixed JAX workload (float32 matmuls the size of the textbook's layers) is
timed first, and each example is also given as a multiple of it.

    python tests/benchmarks/bench_examples.py [--only aevb_toy,textbook_vaes]

Runs every example in its own process (as a user would), in a temporary folder.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = ("polymer_chapter", "alanine_dipeptide", "textbook_vaes", "rotation_curves", "aevb_toy")
BUDGET_S = 180.0

CALIBRATION = """
import time, jax, jax.numpy as jnp
x = jnp.ones((8192, 256), jnp.float32); w = jnp.ones((256, 256), jnp.float32) * 1e-3
f = jax.jit(lambda x, w: jnp.tanh(x @ w) @ w)
f(x, w).block_until_ready()
start = time.perf_counter()
for _ in range(200):
    f(x, w).block_until_ready()
print(time.perf_counter() - start)
"""


def main() -> None:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("--only", default=",".join(NAMES))
    args = parse.parse_args()
    done = subprocess.run([sys.executable, "-c", CALIBRATION], capture_output=True, text=True)
    unit = float(done.stdout.strip())
    print(f"calibration (200 jitted 8192x256x256 matmul pairs): {unit:.3f} s")
    print(f"{'example':<20} {'wall s':>8} {'budget':>8} {'x calib':>8}")
    for name in args.only.split(","):
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            run = subprocess.run(
                [sys.executable, str(EXAMPLES / f"{name}.py"), "-o", str(Path(folder) / name)],
                capture_output=True,
                text=True,
            )
            elapsed = time.perf_counter() - start
        status = "" if run.returncode == 0 else f"  FAILED: {run.stderr.strip()[-200:]}"
        print(
            f"{name:<20} {elapsed:8.1f} {elapsed / BUDGET_S:8.2f} {elapsed / unit:8.0f}{status}",
            flush=True,
        )


if __name__ == "__main__":
    main()
