"""The learned coordinate drives real MD: alanine dipeptide biased along vaetraj's
latent, reweighted, retrained, biased again (docs/pages/bias-example.md).

Round 1 trains on the 4 ns of unbiased frames (which never visit alpha-L, phi > 0):
torsion features (phi, psi), a 2D latent space. Each round then runs well-tempered
metadynamics along z0 and z1 (`vaetraj bias`), measures where the frames went (phi/psi
basins, crossings of phi = 0 each way) and the reweighted free energies of the basins,
and the next round retrains on that round's frames with their weights
(`train --weights`). It stops when alpha-L has been entered and left and the free
energies are within --tolerance of the reference, or after --rounds rounds.

    python examples/alanine_bias/loop.py --ns 3 --rounds 3 \
        --reference reference.npz -o bias-loop

The reference is `reference_phipsi.py`'s output: metadynamics along phi and psi
themselves. Commands run as `vaetraj ...` processes, as a user would type them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import h5py
import mdtraj as md
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from basins import KT, free_energies, torsions, transitions  # noqa: E402

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "alanine-dipeptide"


def vaetraj(*args: object) -> dict:
    done = subprocess.run(["vaetraj", *map(str, args), "--json"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"vaetraj {args[0]} failed: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def reference_energies(path: Path, skip: float) -> dict:
    ref = np.load(path)
    keep = slice(int(len(ref["phi"]) * skip), None)
    log_w = (ref["bias"] - ref["ct"])[keep] / KT
    energies = free_energies(ref["phi"][keep], ref["psi"][keep], np.exp(log_w - log_w.max()))
    return {**energies, "ns": float(ref["time"][-1] / 1000), **transitions(ref["phi"])}


def one_round(k: int, train_input: list[str], weights: Path | None, args, out: Path) -> dict:
    model, bias, frames = out / f"model{k}.h5", out / f"bias{k}.h5", out / f"biased{k}.dcd"
    pdb = args.data / "ala2.pdb"
    extra = ["--weights", weights] if weights is not None else []
    trained = vaetraj("train", *train_input, "--top", pdb, "--featurize", "torsions",
                      "--latent-dim", "2", "--epochs", args.epochs, "--seed", args.seed + k, *extra,
                      "-o", model, "--overwrite")  # fmt: skip
    steps = int(round(args.ns * 1000 / 0.004))
    run = vaetraj("bias", pdb, "-m", model, "--cv", "0,1", "--steps", steps, "--seed", args.seed + k,
                  "-o", bias, "--trajectory", frames, "--overwrite")  # fmt: skip
    phi, psi = torsions(md.load(str(frames), top=str(pdb)))
    with h5py.File(bias) as handle:
        weights_k = handle["weights"][()]
    keep = slice(int(len(phi) * args.skip), None)
    return {
        "round": k,
        "trained_on": [str(p) for p in train_input] + ([f"weights {weights}"] if weights else []),
        "explained_variance_val": trained.get("explained_variance_val"),
        "ns": run["simulated_ns"],
        "ms_per_step": run["ms_per_step"],
        "effective_fraction": run["effective_fraction"],
        **free_energies(phi[keep], psi[keep], weights_k[keep]),
        **transitions(phi),
    }


def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--ns", type=float, default=3.0, help="biased ns per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--skip", type=float, default=0.1, help="metadynamics' transient")
    parser.add_argument("--tolerance", type=float, default=2.0, help="kJ/mol")
    parser.add_argument("--seed", type=int, default=0, help="round k trains and runs with seed + k")
    parser.add_argument("-o", "--output", type=Path, default=Path("bias-loop"))
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    reference = reference_energies(args.reference, args.skip)
    unbiased = free_energies(
        *torsions(md.load(str(args.data / "ala2.dcd"), top=str(args.data / "ala2.pdb")))
    )
    rounds = []
    train_input, weights = [str(args.data / "ala2.dcd")], None
    for k in range(1, args.rounds + 1):
        result = one_round(k, train_input, weights, args, args.output)
        rounds.append(result)
        both_ways = result["into_alpha_L"] > 0 and result["out_of_alpha_L"] > 0
        close = all(
            result[b] is not None and reference[b] is not None
            and abs(result[b] - reference[b]) <= args.tolerance
            for b in ("alpha_R", "alpha_L")
        )  # fmt: skip
        result["alpha_L_both_ways"], result["within_tolerance"] = both_ways, close
        print(json.dumps(result), flush=True)
        if both_ways and close:
            break
        train_input = [str(args.output / f"biased{k}.dcd")]
        weights = args.output / f"bias{k}.h5"
    summary = {"reference": reference, "unbiased_4ns": unbiased, "rounds": rounds}
    (args.output / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
