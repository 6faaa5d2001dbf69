"""The cost of a biased step (issue 33): alanine dipeptide on OpenMM's CPU platform
(AMBER ff14SB + OBC2, 4 fs, one thread, as `vaetraj bias` runs it), a step with
vaetraj's latent force against a step without, side by side in one process.

    python tests/benchmarks/bench_bias.py [--model model.h5] [--steps 5000] [--runs 3]
    python tests/benchmarks/bench_bias.py --only unbiased --steps 20000   # one of them,
                                                                            # for timing a whole process

Without --model a model is trained first (torsions, latent 2, 40 epochs: what the bias
loop's first round uses). Each setting runs `--steps` steps `--runs` times, the
settings interleaved; the ratio is of the medians. Settings: unbiased; umbrella along
z0 (one latent force); metad along z0 and along z0, z1 (one evaluation a step serves
both). The target: a biased step within 3x an unbiased one.
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
SETTINGS = {
    "unbiased": None,
    "umbrella z0": {"method": "umbrella", "cv": (0,), "center": (0.0,)},
    "metad z0": {"method": "metad", "cv": (0,)},
    "metad z0,z1": {"method": "metad", "cv": (0, 1)},
}


def _model(folder: Path) -> Path:
    path = folder / "model.h5"
    ala = DATA / "alanine-dipeptide"
    subprocess.run(["vaetraj", "train", str(ala / "ala2.dcd"), "--top", str(ala / "ala2.pdb"),
                    "--featurize", "torsions", "--latent-dim", "2", "--epochs", "40",
                    "-o", str(path)], check=True, capture_output=True)  # fmt: skip
    return path


def _simulation(model_path: Path, setting: dict | None):
    from vaetraj.configs import BiasConfig
    from vaetraj.openmm._systems import file_setup
    from vaetraj.openmm.run import _bias, _simulation
    from vaetraj.pipeline.model import load_model

    setup = file_setup(DATA / "alanine-dipeptide" / "ala2.pdb")
    config = BiasConfig(**(setting or {}))
    bias = None
    if setting is not None:
        bias, _ = _bias(setup, load_model(model_path), config, setup.temperature)
    simulation = _simulation(setup, config, setup.temperature, setup.time_step)
    simulation.context.setPositions(setup.positions)
    simulation.minimizeEnergy()
    return simulation, bias


def _per_step(simulation, bias, steps: int) -> float:
    started = time.perf_counter()
    if bias is None:
        simulation.step(steps)
    else:
        bias.step(simulation, steps)
    return (time.perf_counter() - started) / steps


def main() -> None:
    from vaetraj.openmm import prefer_synchronous_jax

    prefer_synchronous_jax()  # as `vaetraj bias` runs
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=[name.split()[0] for name in SETTINGS])
    args = parser.parse_args()
    if not (DATA / "alanine-dipeptide" / "ala2.pdb").exists():
        sys.exit(f"no alanine dipeptide data at {DATA}: set VAETRAJ_SHARED_DATA")
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or _model(Path(folder))
        chosen = {name: s for name, s in SETTINGS.items() if args.only in (None, name.split()[0])}
        runs = {name: _simulation(model, setting) for name, setting in chosen.items()}
        for simulation, bias in runs.values():  # warm-up: compilation, first steps
            _per_step(simulation, bias, 200)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.runs):
            for name, (simulation, bias) in runs.items():
                times[name].append(_per_step(simulation, bias, args.steps))
    base = statistics.median(times["unbiased"]) if "unbiased" in times else None
    for name, values in times.items():
        median = statistics.median(values)
        ratio = "" if base is None else f"  {median / base:.2f}x unbiased"
        print(f"{name:14s} {median * 1e3:.3f} ms/step (min {min(values) * 1e3:.3f}, "
              f"max {max(values) * 1e3:.3f}){ratio}")  # fmt: skip


if __name__ == "__main__":
    main()
