"""Alanine dipeptide kinetics: a time-lagged latent space against a plain one and the
phi/psi torsions, and a Markov model of the latent path against the Ramachandran basins.

    python examples/alanine_kinetics.py           # -> alanine-kinetics/ (a few minutes)

Data: ../shared/data/alanine-dipeptide (ala2.dcd + ala2.pdb, 8000 frames 0.5 ps apart;
the DCD records no time, so --frame-time 0.5 gives it). The heavy atoms are
Kabsch-aligned, and two 2D latent spaces are trained with the CLI: a plain VAE
(frame t reconstructed) and a time-lagged one (frame t encoded, frame t + lag decoded;
--lag-ps 5 is 10 frames). Each trajectory is encoded, and `vaetraj kinetics` builds a
Markov model on the time-lagged latent path. Then, with mdtraj and deeptime directly:

- the VAMP-2 score at the lag of the time-lagged latent, the plain latent and the
  phi/psi torsions (as sin/cos), side by side, and the CLI's VAMP-2 beside deeptime's;
- the slowest implied timescale of the latent Markov model against that of a Markov
  model of the Ramachandran basins (beta/PPII, alpha-R) at the same lag;
- the two metastable states (PCCA+) of the latent model against the basins.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser, vaetraj, write_results  # noqa: E402
from alanine_dipeptide import BASINS, ala2_folder, basins_of, dihedrals  # noqa: E402

FRAME_PS = 0.5  # the data's README: one frame every 0.5 ps
HEAVY = "not element H"


def vamp2(series: np.ndarray, lag: int) -> float:
    """deeptime's VAMP-2 score of one time series at `lag` frames."""
    from deeptime.decomposition import VAMP

    return float(VAMP(lagtime=lag).fit(series.astype(np.float64)).fetch_model().score(2))


def basin_timescales(basin: np.ndarray, lags: list[int]) -> list[float]:
    """The slowest implied timescale (frames) of a reversible maximum-likelihood Markov
    model of the basin sequence, at each lag."""
    from deeptime.markov import TransitionCountEstimator
    from deeptime.markov.msm import MaximumLikelihoodMSM

    slowest = []
    for lag in lags:
        counts = TransitionCountEstimator(lagtime=lag, count_mode="sliding").fit_fetch(basin)
        msm = MaximumLikelihoodMSM(reversible=True).fit_fetch(counts)
        slowest.append(float(np.real(msm.timescales(1))[0]))
    return slowest


def state_basin_table(state: np.ndarray, basin: np.ndarray, states: int) -> np.ndarray:
    """Frames of each metastable state (rows) in each basin (columns); frames outside
    the Markov model's connected set (state -1) are left out."""
    table = np.zeros((states, len(BASINS)), int)
    kept = state >= 0
    np.add.at(table, (state[kept], basin[kept]), 1)
    return table


def plot(out: Path, angles, basin, plain, lagged, state, scores, timescales) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phi, psi = angles
    basin_colors = np.array(["#1f77b4", "#d62728", "#2ca02c"])
    state_colors = np.array(["#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"])
    fig, axes = plt.subplots(2, 3, figsize=(15, 9))
    ramachandran = dict(xlim=(-180, 180), ylim=(-180, 180), xlabel="phi (deg)", ylabel="psi (deg)")
    axes[0, 0].scatter(phi, psi, s=2, c=basin_colors[basin])
    axes[0, 0].set(title="MD frames by Ramachandran basin", **ramachandran)
    for ax, z, name in ((axes[0, 1], plain, "plain"), (axes[0, 2], lagged, "time-lagged")):
        ax.scatter(z[:, 0], z[:, 1], s=2, c=basin_colors[basin])
        ax.set(
            xlabel="z1", ylabel="z2", title=f"{name} latent by basin (VAMP-2 {scores[name]:.3f})"
        )
    for color, name in zip(basin_colors, BASINS, strict=True):
        axes[0, 0].scatter([], [], c=color, label=name)
    axes[0, 0].legend(loc="lower left", markerscale=2, fontsize=8)
    axes[1, 0].scatter(phi, psi, s=2, c=state_colors[state % len(state_colors)])
    axes[1, 0].set(title="MD frames by metastable state (PCCA+)", **ramachandran)
    axes[1, 1].scatter(lagged[:, 0], lagged[:, 1], s=2, c=state_colors[state % len(state_colors)])
    axes[1, 1].set(xlabel="z1", ylabel="z2", title="time-lagged latent by metastable state")
    lags_ps = np.asarray(timescales["lags"]) * timescales["frame_ps"]
    for name, style in (("time-lagged latent", "o-"), ("plain latent", "s--"),
                        ("basins", "^:")):  # fmt: skip
        axes[1, 2].plot(lags_ps, np.asarray(timescales[name]) * timescales["frame_ps"], style,
                        label=name)  # fmt: skip
    axes[1, 2].set(xlabel="lag (ps)", ylabel="slowest implied timescale (ps)",
                   title="slowest implied timescale", ylim=(0, None))  # fmt: skip
    axes[1, 2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "figures" / "kinetics.png", dpi=100)
    plt.close(fig)


def _commands(out: Path, args, stride: int, lag: int) -> dict:
    """Align, train both models, encode with each, and the kinetics of both paths."""
    read = ["--top", "ala2.pdb", "--stride", stride, "--frame-time", FRAME_PS]
    vaetraj("align", "ala2.dcd", *read, "--select", HEAVY, "--method", "kabsch",
            "-o", "aligned.h5", cwd=out)  # fmt: skip
    done = {}
    for name, extra in (("plain", []), ("lagged", ["--lag", lag])):
        done[f"train_{name}"] = vaetraj(
            "train", "aligned.h5", "-o", f"{name}.h5", "--epochs", args.epochs, "--latent-dim", 2,
            "--kl-warmup", 10, "--seed", args.seed, *extra, cwd=out,
        )  # fmt: skip
        vaetraj("encode", "ala2.dcd", *read, "-m", f"{name}.h5", "-o", f"{name}_latent.h5",
                cwd=out)  # fmt: skip
    lags = ",".join(str(n) for n in _its_lags(lag))
    done["kinetics_lagged"] = vaetraj(
        "kinetics", "lagged_latent.h5", "--lag", lag, "--clusters", args.clusters, "--lags", lags,
        "--seed", args.seed, "-o", "kinetics.h5", "--figures", "figures/lagged", cwd=out,
    )  # fmt: skip
    done["kinetics_plain"] = vaetraj(
        "kinetics", "plain_latent.h5", "--lag", lag, "--clusters", args.clusters, "--lags", lags,
        "--seed", args.seed, "--figures", "figures/plain", cwd=out,
    )  # fmt: skip
    return done


def _its_lags(lag: int) -> list[int]:
    return sorted({max(1, lag // 4), max(1, lag // 2), lag, 2 * lag, 3 * lag, 4 * lag})


def main(argv: list[str] | None = None) -> dict:
    parse = parser(__doc__.splitlines()[0], "alanine-kinetics", epochs=60)
    parse.add_argument("--lag-ps", type=float, default=5.0, help="the lag, in ps")
    parse.add_argument("--stride", type=int, default=1, help="keep every Nth frame")
    parse.add_argument("--clusters", type=int, default=100, help="k-means clusters")
    parse.add_argument("--data", type=Path, default=None, help="folder with ala2.dcd/.pdb")
    args = parse.parse_args(argv)
    frame_ps = FRAME_PS * args.stride
    lag = max(1, round(args.lag_ps / frame_ps))
    out = ala2_folder(args.data, args.output)
    done = _commands(out, args, args.stride, lag)

    import h5py
    import mdtraj as md

    from vaetraj import read_latent

    traj = md.load(out / "ala2.dcd", top=out / "ala2.pdb", stride=args.stride)
    phi, psi = dihedrals(traj)
    basin = basins_of(phi, psi)
    torsions = np.radians(np.stack([phi, psi], 1))
    latent = {name: read_latent(out / f"{name}_latent.h5").mean for name in ("plain", "lagged")}
    scores = {
        "time-lagged": vamp2(latent["lagged"], lag),
        "plain": vamp2(latent["plain"], lag),
        "phi/psi (sin, cos)": vamp2(np.concatenate([np.sin(torsions), np.cos(torsions)], 1), lag),
    }
    cli = done["kinetics_lagged"]
    its_lags = cli["its_lags"]
    timescales = {
        "lags": its_lags,
        "frame_ps": frame_ps,
        "time-lagged latent": [row[0] for row in cli["its"]],
        "plain latent": [row[0] for row in done["kinetics_plain"]["its"]],
        "basins": basin_timescales(basin, its_lags),
    }
    with h5py.File(out / "kinetics.h5", "r") as handle:
        state = handle["metastable"][()]
    table = state_basin_table(state, basin, cli["states"])
    plot(out, (phi, psi), basin, latent["plain"], latent["lagged"], state,
         {"time-lagged": scores["time-lagged"], "plain": scores["plain"]}, timescales)  # fmt: skip
    at_lag = its_lags.index(lag)
    return write_results(
        out, _results(done, scores, timescales, at_lag, table, basin, lag, frame_ps)
    )


def _results(done, scores, timescales, at_lag, table, basin, lag, frame_ps) -> dict:
    cli = done["kinetics_lagged"]
    slowest = {name: timescales[name][at_lag] for name in ("time-lagged latent", "plain latent",
                                                            "basins")}  # fmt: skip
    return {
        "frames": len(basin),
        "frame_time_ps": frame_ps,
        "lag_frames": lag,
        "lag_ps": lag * frame_ps,
        "basin_fractions": dict(zip(BASINS, np.bincount(basin, minlength=3).tolist(), strict=True)),
        "vamp2": {name: round(value, 4) for name, value in scores.items()},
        "vamp2_kinetics_cli": round(cli["vamp2"], 4),
        "slowest_timescale_frames": {name: round(value, 2) for name, value in slowest.items()},
        "slowest_timescale_ps": {
            name: round(value * frame_ps, 2) for name, value in slowest.items()
        },
        "timescale_ratio_to_basins": round(slowest["time-lagged latent"] / slowest["basins"], 3),
        "kinetics_frame_time_ps": cli["frame_time_ps"],
        "metastable_weights": [round(w, 3) for w in cli["stationary_weights"]],
        "state_by_basin_frames": table.tolist(),
        "state_basin_purity": round(float(table.max(axis=1).sum() / max(1, table.sum())), 4),
        "ck_max_error": cli["ck_max_error"],
        "explained_variance": {
            "plain (frame t)": round(done["train_plain"]["explained_variance_train"], 4),
            "time-lagged (frame t + lag)": round(
                done["train_lagged"]["explained_variance_train"], 4
            ),
        },
        "active_units": {
            "plain": done["train_plain"]["active_units"],
            "time-lagged": done["train_lagged"]["active_units"],
        },  # fmt: skip
        "figure": "figures/kinetics.png",
    }


if __name__ == "__main__":
    main()
