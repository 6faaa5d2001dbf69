"""Free energies of alanine dipeptide's basins (alpha-R, beta, alpha-L, relative to
beta) from phi/psi and per-frame weights: the yardstick of the bias loop.

Basins: alpha-L where phi > 0; otherwise alpha-R where -120 <= psi < 50 degrees, and
beta (with PPII) elsewhere. F_X = -kT ln(P_X / P_beta), P the weighted share of frames.

    python examples/alanine_bias/basins.py --unbiased ala2.dcd --top ala2.pdb \
        --reference reference.npz --biased bias.h5 biased.dcd

Each --biased pair is a `vaetraj bias` output and its trajectory: the frames' phi/psi
come from the trajectory, the weights from the bias file (the first --skip of the
frames left out: metadynamics' transient).
"""

from __future__ import annotations

import argparse
import json

import mdtraj as md
import numpy as np

KT = 0.0083144626 * 300.0  # kJ/mol


def basin_of(phi: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """0 beta, 1 alpha-R, 2 alpha-L (radians in)."""
    phi, psi = np.degrees(phi), np.degrees(psi)
    alpha_r = (phi <= 0) & (psi >= -120) & (psi < 50)
    return np.where(phi > 0, 2, np.where(alpha_r, 1, 0))


def free_energies(phi, psi, weights=None) -> dict[str, float | None]:
    """F of alpha-R and alpha-L relative to beta (kJ/mol); None for an unvisited basin."""
    weights = np.ones(len(phi)) if weights is None else np.asarray(weights)
    basin = basin_of(phi, psi)
    share = np.array([weights[basin == b].sum() for b in range(3)]) / weights.sum()
    out: dict[str, float | None] = {}
    for name, b in (("alpha_R", 1), ("alpha_L", 2)):
        out[name] = (
            None if share[b] == 0 or share[0] == 0 else float(-KT * np.log(share[b] / share[0]))
        )
    out["frames_alpha_L"] = int(np.sum(basin == 2))
    return out


def transitions(phi: np.ndarray) -> dict[str, int]:
    """Crossings of phi = 0 between the phi < 0 basins and alpha-L, each way, counted
    once the new side is held (|phi| beyond 30 degrees: no recrossing noise)."""
    side, into, out = None, 0, 0
    for value in np.degrees(phi):
        now = "L" if value > 30 else "R" if value < -30 else side
        if side is not None and now != side:
            into, out = into + (now == "L"), out + (now == "R")
        side = now
    return {"into_alpha_L": into, "out_of_alpha_L": out}


def torsions(trajectory: md.Trajectory) -> tuple[np.ndarray, np.ndarray]:
    _, phi = md.compute_phi(trajectory)
    _, psi = md.compute_psi(trajectory)
    return phi[:, 0], psi[:, 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", required=True)
    parser.add_argument("--unbiased")
    parser.add_argument("--reference", help="reference_phipsi.py's .npz")
    parser.add_argument(
        "--biased", nargs=2, action="append", default=[], metavar=("BIAS_H5", "TRAJ")
    )
    parser.add_argument("--skip", type=float, default=0.1)
    args = parser.parse_args()
    rows = {}
    if args.unbiased:
        rows["unbiased"] = free_energies(*torsions(md.load(args.unbiased, top=args.top)))
    if args.reference:
        ref = np.load(args.reference)
        keep = slice(int(len(ref["phi"]) * args.skip), None)
        log_w = (ref["bias"] - ref["ct"])[keep] / KT
        rows["reference (phi/psi metad, reweighted)"] = {
            **free_energies(ref["phi"][keep], ref["psi"][keep], np.exp(log_w - log_w.max())),
            **transitions(ref["phi"]),
        }
    import h5py

    for bias_file, trajectory in args.biased:
        phi, psi = torsions(md.load(trajectory, top=args.top))
        with h5py.File(bias_file) as handle:
            weights = handle["weights"][()]
        keep = slice(int(len(phi) * args.skip), None)
        rows[bias_file] = {**free_energies(phi[keep], psi[keep], weights[keep]), **transitions(phi)}
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
