"""The textbook's bead-spring polymer chapter, end to end with the vaetraj CLI.

    python examples/polymer_chapter.py            # -> polymer-chapter/ (about 1 minute)

Trains on the chapter's 2D, 12-bead trajectory (../shared/data/polymer/long_paths.npz),
or on the built-in polymer simulator when that folder is absent, and reproduces the
chapter's results: the latent trajectory of paths.npz, generated conformations against
the training frames, pairwise-distance marginals, and radius-of-gyration minimization
in latent space against the most compact training frame. Figures are PNGs in
polymer-chapter/figures/, the numbers in polymer-chapter/results.json.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fresh_folder, parser, shared_data, vaetraj, write_results  # noqa: E402


def get_data(folder: Path, *, builtin: bool, frames: int) -> str:
    """long_paths.npz (training) and paths.npz (a denser trajectory to encode) in folder:
    the chapter's files, or the built-in simulator's."""
    data = shared_data()
    if not builtin and data is not None and (data / "polymer" / "long_paths.npz").exists():
        for name in ("long_paths.npz", "paths.npz"):
            shutil.copy(data / "polymer" / name, folder / name)
        return "the chapter's trajectories (shared/data/polymer)"
    vaetraj("simulate", "polymer", "-o", "long_paths.npz", "--frames", frames, cwd=folder)
    dense = ("--frames", max(frames // 4, 16), "--stride", 20, "--seed", 1)
    vaetraj("simulate", "polymer", "-o", "paths.npz", *dense, cwd=folder)
    return "the built-in polymer simulator" + ("" if builtin else " (shared/data not found)")


def main(argv: list[str] | None = None) -> dict:
    parse = parser(__doc__.splitlines()[0], "polymer-chapter", epochs=250)
    parse.add_argument("--samples", type=int, default=1000, help="conformations to generate")
    parse.add_argument(
        "--latent-dim", type=int, default=None, help="default: vaetraj's (4; the chapter's is 2)"
    )
    parse.add_argument(
        "--builtin", action="store_true", help="simulate the polymer even when the data exist"
    )
    parse.add_argument("--frames", type=int, default=2048, help="frames to simulate (--builtin)")
    args = parse.parse_args(argv)
    out = fresh_folder(args.output)
    source = get_data(out, builtin=args.builtin, frames=args.frames)

    vaetraj("align", "long_paths.npz", "-o", "aligned.h5", "--method", "principal", cwd=out)
    latent = () if args.latent_dim is None else ("--latent-dim", args.latent_dim)
    train = vaetraj("train", "aligned.h5", "-o", "model.h5", "--epochs", args.epochs,
                    *latent, "--seed", args.seed, cwd=out)  # fmt: skip
    encode = vaetraj("encode", "paths.npz", "-o", "latent.h5", cwd=out)
    sample = vaetraj("sample", "-n", args.samples, "-o", "samples.npz", "--seed", args.seed,
                     cwd=out)  # fmt: skip
    vaetraj("sample", "-n", 8, "-o", "samples.pdb", "--seed", args.seed, cwd=out)
    best = vaetraj("optimize", "--objective", "rg", "-o", "optimized.npz", "--seed", args.seed,
                   cwd=out)  # fmt: skip
    evaluation = vaetraj("evaluate", "long_paths.npz", "--samples", args.samples, cwd=out)
    plots = vaetraj("plot", "-o", "figures", "--latent", "latent.h5", "--color", "time",
                    "--samples", "samples.npz", "--optimized", "optimized.npz", cwd=out)  # fmt: skip
    return write_results(
        out,
        {
            "data": source,
            "train_frames": train["train_frames"],
            "recon_rmsd_train": round(train["recon_rmsd_train"], 4),
            "kl_per_dim": [round(v, 3) for v in train["kl_per_dim"]],
            "latent_path_frames": encode["frames"],
            "latent_path_range": [encode["mean_min"], encode["mean_max"]],
            "sample_plausible_fraction": sample["plausible_fraction"],
            "data_plausible_fraction": sample["train_plausible_fraction"],
            "w1_pairwise_mean": round(evaluation["w1_pairwise_mean"], 4),
            "sample_mean_bond": round(evaluation["sample_mean_bond"], 4),
            "data_mean_bond": round(evaluation["data_mean_bond"], 4),
            "optimized_rg": round(best["rg"], 4),
            "train_rg_min": round(best["train_rg_min"], 4),
            "optimized_beyond_training": best["beyond_training"],
            "optimized_plausible": best["plausible"],
            "figures": sorted(Path(p).name for p in plots["figures"]),
        },
    )


if __name__ == "__main__":
    main()
