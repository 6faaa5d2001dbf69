"""Alanine dipeptide: a real OpenMM trajectory through vaetraj, with the latent space
checked against the Ramachandran basins.

    python examples/alanine_dipeptide.py          # -> alanine-dipeptide/ (about 1 minute)

Data: ../shared/data/alanine-dipeptide (ala2.dcd + ala2.pdb, 8000 frames, AMBER ff14SB
in implicit solvent). The heavy atoms (or --atoms all) are Kabsch-aligned on the first
frame and a 2D latent space is trained on them with the CLI. Then, in Python with
mdtraj: each frame's basin (beta/PPII, alpha-R, alpha-L) from its phi/psi; the latent
map coloured by basin; how well the latent space separates the basins (the accuracy of
a k-nearest-neighbour vote of latent neighbours from the first half of the trajectory
on the frames of the second half); and sampled structures written as PDB, checked for
plausibility and for their own phi/psi basins.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fresh_folder, parser, shared_data, vaetraj, write_results  # noqa: E402

BASINS = ("beta/PPII", "alpha-R", "alpha-L")
SELECTIONS = {"heavy": "not element H", "all": "all"}


def basins_of(phi: np.ndarray, psi: np.ndarray) -> np.ndarray:
    """Basin index per frame from phi/psi in degrees: alpha-L for phi > 0, alpha-R for
    -125 < psi < 50, else beta/PPII (the usual boxes on the Ramachandran plot)."""
    alpha_r = (psi > -125) & (psi < 50)
    return np.where(phi > 0, 2, np.where(alpha_r, 1, 0))


def dihedrals(traj) -> tuple[np.ndarray, np.ndarray]:
    import mdtraj as md

    _, phi = md.compute_phi(traj)
    _, psi = md.compute_psi(traj)
    return np.degrees(phi[:, 0]), np.degrees(psi[:, 0])


def knn_accuracy(train_z, train_label, test_z, test_label, k: int = 15) -> float:
    """Share of test points whose k nearest training points (Euclidean, latent) vote
    for their own label."""
    hits = 0
    for start in range(0, len(test_z), 1024):
        part = test_z[start : start + 1024]
        distance = ((part[:, None, :] - train_z[None, :, :]) ** 2).sum(-1)
        nearest = np.argpartition(distance, k, axis=1)[:, :k]
        votes = np.apply_along_axis(np.bincount, 1, train_label[nearest], minlength=3)
        hits += int((votes.argmax(axis=1) == test_label[start : start + 1024]).sum())
    return hits / len(test_z)


def plot(out: Path, phi, psi, basin, z, sample_phi, sample_psi) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = np.array(["#1f77b4", "#d62728", "#2ca02c"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    axes[0].scatter(phi, psi, s=2, c=colors[basin])
    axes[0].set(xlim=(-180, 180), ylim=(-180, 180), xlabel="phi (deg)", ylabel="psi (deg)",
                title="MD frames, by basin")  # fmt: skip
    axes[1].scatter(z[:, 0], z[:, 1], s=2, c=colors[basin])
    axes[1].set(xlabel="z1", ylabel="z2", title="latent means, by basin")
    axes[2].scatter(sample_phi, sample_psi, s=6, c=colors[basins_of(sample_phi, sample_psi)])
    axes[2].set(xlim=(-180, 180), ylim=(-180, 180), xlabel="phi (deg)", ylabel="psi (deg)",
                title="sampled structures")  # fmt: skip
    for color, name in zip(colors, BASINS, strict=True):
        axes[1].scatter([], [], c=color, label=name)
    axes[1].legend(loc="best", markerscale=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "figures" / "ramachandran_latent.png", dpi=110)
    plt.close(fig)


def ala2_folder(data: Path | None, output: Path) -> Path:
    """A fresh output folder with a figures/ folder and a copy of ala2.dcd and
    ala2.pdb from `data` (default: the shared data); exits when they are not there."""
    data = data or (shared_data() or Path("/nonexistent")) / "alanine-dipeptide"
    if not (data / "ala2.dcd").exists():
        sys.exit(f"{data}: no ala2.dcd here; pass --data FOLDER (see ../shared/data)")
    out = fresh_folder(output)
    (out / "figures").mkdir()
    for name in ("ala2.dcd", "ala2.pdb"):
        shutil.copy(data / name, out / name)
    return out


def main(argv: list[str] | None = None) -> dict:
    parse = parser(__doc__.splitlines()[0], "alanine-dipeptide", epochs=60)
    parse.add_argument("--atoms", choices=sorted(SELECTIONS), default="heavy")
    parse.add_argument("--stride", type=int, default=1, help="keep every Nth frame")
    parse.add_argument("--samples", type=int, default=500, help="structures to sample")
    parse.add_argument("--data", type=Path, default=None, help="folder with ala2.dcd/.pdb")
    args = parse.parse_args(argv)
    out = ala2_folder(args.data, args.output)

    select = SELECTIONS[args.atoms]
    vaetraj("align", "ala2.dcd", "--top", "ala2.pdb", "--select", select, "--method", "kabsch",
            "--stride", args.stride, "-o", "aligned.h5", cwd=out)  # fmt: skip
    train = vaetraj("train", "aligned.h5", "-o", "model.h5", "--epochs", args.epochs,
                    "--latent-dim", 2, "--kl-warmup", 10, "--seed", args.seed, cwd=out)  # fmt: skip
    vaetraj("encode", "ala2.dcd", "--top", "ala2.pdb", "--stride", args.stride, "-o", "latent.h5",
            cwd=out)  # fmt: skip
    sample = vaetraj("sample", "-n", args.samples, "-o", "samples.pdb", "--seed", args.seed,
                     cwd=out)  # fmt: skip

    import mdtraj as md

    from vaetraj import read_latent

    traj = md.load(out / "ala2.dcd", top=out / "ala2.pdb", stride=args.stride)
    phi, psi = dihedrals(traj)
    basin = basins_of(phi, psi)
    z = read_latent(out / "latent.h5").mean
    half = len(z) // 2
    accuracy = knn_accuracy(z[:half], basin[:half], z[half:], basin[half:])
    majority = float(np.bincount(basin[half:], minlength=3).max() / (len(z) - half))
    samples = md.load(out / "samples.pdb")
    sample_phi, sample_psi = dihedrals(samples)
    sample_basin = basins_of(sample_phi, sample_psi)
    plot(out, phi, psi, basin, z, sample_phi, sample_psi)
    return write_results(
        out,
        {
            "atoms": f"{train['atoms']} ({args.atoms})",
            "frames": len(z),
            "recon_rmsd_train_nm": round(train["recon_rmsd_train"], 4),
            "basin_fractions": dict(
                zip(BASINS, np.bincount(basin, minlength=3).tolist(), strict=True)
            ),  # fmt: skip
            "knn_basin_accuracy": round(accuracy, 4),
            "majority_baseline": round(majority, 4),
            "sample_plausible_fraction": sample["plausible_fraction"],
            "data_plausible_fraction": sample["train_plausible_fraction"],
            "sample_mean_bond_nm": round(sample["mean_bond"], 4),
            "data_mean_bond_nm": round(sample["train_mean_bond"], 4),
            "sample_basin_fractions": dict(
                zip(
                    BASINS,
                    (np.bincount(sample_basin, minlength=3) / len(sample_basin)).round(3).tolist(),
                    strict=True,
                )
            ),  # fmt: skip
            "figure": "figures/ramachandran_latent.png",
        },
    )


if __name__ == "__main__":
    main()
