"""The bias loop's figure: the reference free energy over phi and psi (metadynamics
along them), the same from one round's latent-biased frames and their weights, and
those frames on the latent map, coloured by basin.

    python examples/alanine_bias/figure.py --reference reference.npz \
        --biased bias-loop/bias1.h5 bias-loop/biased1.dcd -o bias_loop.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import h5py
import matplotlib
import mdtraj as md
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from basins import KT, basin_of, torsions  # noqa: E402

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "alanine-dipeptide"


def _surface(axis, phi, psi, weights, title: str):
    density, xs, ys = np.histogram2d(np.degrees(phi), np.degrees(psi), bins=45,
                                     range=[[-180, 180], [-180, 180]], weights=weights,
                                     density=True)  # fmt: skip
    with np.errstate(divide="ignore"):
        energy = -KT * np.log(density.T)
    energy -= energy[np.isfinite(energy)].min()
    image = axis.pcolormesh(xs, ys, np.where(energy < 30, energy, np.nan), vmin=0, vmax=30)
    axis.set(xlabel="phi (degrees)", ylabel="psi (degrees)", title=title)
    return image


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--biased", nargs=2, type=Path, required=True, metavar=("BIAS_H5", "TRAJ"))
    parser.add_argument("--top", type=Path, default=DATA / "ala2.pdb")
    parser.add_argument("--skip", type=float, default=0.1)
    parser.add_argument("-o", "--output", type=Path, default=Path("bias_loop.png"))
    args = parser.parse_args(argv)
    ref = np.load(args.reference)
    keep = slice(int(len(ref["phi"]) * args.skip), None)
    log_w = (ref["bias"] - ref["ct"])[keep] / KT
    phi, psi = torsions(md.load(str(args.biased[1]), top=str(args.top)))
    with h5py.File(args.biased[0]) as handle:
        weights, cv = handle["weights"][()], handle["cv"][()]
    mine = slice(int(len(phi) * args.skip), None)
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    _surface(axes[0], ref["phi"][keep], ref["psi"][keep], np.exp(log_w - log_w.max()),
             "reference: metadynamics along phi, psi")  # fmt: skip
    image = _surface(axes[1], phi[mine], psi[mine], weights[mine],
                     "latent-biased frames, reweighted")  # fmt: skip
    figure.colorbar(image, ax=axes[:2], label="free energy (kJ/mol)")
    names = ("beta", "alpha-R", "alpha-L")
    basin = basin_of(phi, psi)
    for b, colour in zip(range(3), ("tab:blue", "tab:orange", "tab:red"), strict=True):
        chosen = basin == b
        axes[2].scatter(cv[chosen, 0], cv[chosen, 1], s=2, color=colour, label=names[b])
    axes[2].set(xlabel="z0", ylabel="z1", title="the biased frames on the latent map")
    axes[2].legend(markerscale=4)
    figure.savefig(args.output, dpi=110, bbox_inches="tight")


if __name__ == "__main__":
    main()
