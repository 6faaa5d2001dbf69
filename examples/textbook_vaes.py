"""The textbook's first two VAEs on plain feature tables: the one-hot class VAE (with
the beta re-balancing experiment, beta 1 against 0.2) and the 1D regression VAE.

    python examples/textbook_vaes.py              # -> textbook-vaes/ (under a minute)

Both use `vaetraj.train_features` (on the command line: `vaetraj train table.npy
--features --likelihood categorical`), with the chapter's sizes: a 1D latent space and
16-unit hidden layers. The data are the chapter's synthetic set: 1024 draws from two
Gaussians, binned into 32 classes (one-hot) for the class VAE and used as they are
for the regression VAE.

What to expect: with beta 1 the KL term wins: every class is encoded near N(0, 1),
the decoder returns the marginal class distribution whatever z is, and samples match the
data's histogram while reconstruction is poor. With beta 0.2 the posteriors shrink and
reconstruction recovers the class, at some cost to the samples' histogram.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fresh_folder, parser, write_results  # noqa: E402

CLASSES = 32


def chapter_data(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x (1024,), class index (1024,), one-hot (1024, 32)): the chapter's mixture of
    N(-1, 0.5) and N(1, 0.25), binned into 32 equal bins over its range."""
    rng = np.random.default_rng(seed)
    which = rng.integers(0, 2, 1024)
    x = np.where(which == 0, rng.normal(-1.0, 0.5, 1024), rng.normal(1.0, 0.25, 1024))
    edges = np.histogram_bin_edges(x, bins=CLASSES)
    label = np.clip(np.digitize(x, edges[1:-1]), 0, CLASSES - 1)
    return x.astype(np.float32), label, np.eye(CLASSES, dtype=np.float32)[label]


def class_vae(one_hot, label, beta: float, epochs: int, seed: int) -> dict:
    from vaetraj import ModelConfig, TrainConfig, train_features

    model, _ = train_features(
        one_hot,
        ModelConfig(latent_dim=1, hidden=16, layers=3, likelihood="categorical"),
        # at beta 1 the posterior collapses, as the chapter shows: accept that model
        TrainConfig.textbook(epochs=epochs, beta=beta, lr=5e-2, seed=seed, min_explained=0),
    )
    mean, std = model.encode(one_hot)
    reconstructed = model.decode(mean)  # class probabilities at the posterior mean
    z = np.asarray(jax.random.normal(jax.random.key(seed + 1), (len(one_hot), 1)))
    sampled = model.decode(z)  # p(x|z) for z ~ N(0, 1), summed below as the textbook does
    data_hist = one_hot.sum(axis=0) / len(one_hot)
    sample_hist = sampled.sum(axis=0) / len(sampled)
    return {
        "beta": beta,
        "reconstruction_accuracy": float((reconstructed.argmax(axis=1) == label).mean()),
        "mean_posterior_mu": float(mean.mean()),
        "mean_posterior_std": float(std.mean()),
        "histogram_total_variation": float(0.5 * np.abs(sample_hist - data_hist).sum()),
        "_sample_hist": sample_hist,
        "_example": reconstructed[4],
    }


def regression_vae(x, epochs: int, seed: int) -> dict:
    from vaetraj import ModelConfig, TrainConfig, train_features
    from vaetraj.metrics import compute_wasserstein_1d

    decoder_std = 0.1  # the chapter's fixed decoder std, here in standardized units
    model, _ = train_features(
        x,
        ModelConfig(
            latent_dim=1, hidden=16, layers=3, likelihood="gaussian", decoder_std=decoder_std
        ),  # fmt: skip
        TrainConfig.textbook(epochs=epochs, beta=1.0, seed=seed),
    )
    mean, std = model.encode(x)
    reconstructed = model.decode(mean)[:, 0]
    key_z, key_x = jax.random.split(jax.random.key(seed + 2))
    z = np.asarray(jax.random.normal(key_z, (len(x), 1)))
    noise = np.asarray(jax.random.normal(key_x, (len(x),)))
    # draw from p(x|z), not only its mean: std is decoder_std in standardized units
    samples = model.decode(z)[:, 0] + decoder_std * model.normalization.std[0] * noise
    return {
        "reconstruction_rms": float(np.sqrt(np.mean((reconstructed - x) ** 2))),
        "data_std": float(x.std()),
        "mean_posterior_mu": float(mean.mean()),
        "mean_posterior_std": float(std.mean()),
        "w1_samples_vs_data": float(compute_wasserstein_1d(samples, x)),
        "_samples": samples,
        "_reconstructed": reconstructed,
    }


def plot(out: Path, x, one_hot, label, runs, regression) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    classes = np.arange(CLASSES)
    axes[0, 0].bar(classes, one_hot.mean(axis=0), color="gray")
    axes[0, 0].set(title="training classes", xlabel="class", ylabel="frequency")
    for axis, run in zip(axes[0, 1:], runs, strict=True):
        axis.bar(classes, run["_sample_hist"])
        axis.set(title=f"samples, beta {run['beta']:g}", xlabel="class")
    for run in runs:
        axes[1, 0].plot(classes, run["_example"], label=f"p(x|z), beta {run['beta']:g}")
    axes[1, 0].axvline(label[4], color="k", ls="--", label="x")
    axes[1, 0].set(title="reconstruction of one point", xlabel="class")
    axes[1, 0].legend(fontsize=8)
    bins = np.linspace(x.min() - 0.5, x.max() + 0.5, 64)
    axes[1, 1].hist(x, bins=bins, alpha=0.6, label="data")
    axes[1, 1].hist(regression["_samples"], bins=bins, alpha=0.6, label="VAE samples")
    axes[1, 1].set(title="regression VAE: samples", xlabel="x")
    axes[1, 1].legend(fontsize=8)
    axes[1, 2].plot(x, regression["_reconstructed"], ".", ms=3)
    axes[1, 2].plot([x.min(), x.max()], [x.min(), x.max()], color="gray", zorder=-1)
    axes[1, 2].set(title="regression VAE: reconstruction", xlabel="x", ylabel="decoder mean")
    fig.tight_layout()
    fig.savefig(out / "figures" / "textbook_vaes.png", dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parse = parser(__doc__.splitlines()[0], "textbook-vaes", epochs=32)
    parse.add_argument("--regression-epochs", type=int, default=64)
    args = parse.parse_args(argv)
    out = fresh_folder(args.output)
    (out / "figures").mkdir()
    x, label, one_hot = chapter_data(args.seed)
    np.save(out / "classes.npy", one_hot)  # for `vaetraj train classes.npy --features ...`
    runs = [class_vae(one_hot, label, beta, args.epochs, args.seed) for beta in (1.0, 0.2)]
    regression = regression_vae(x, args.regression_epochs, args.seed)
    plot(out, x, one_hot, label, runs, regression)

    def public(run: dict) -> dict:
        return {k: round(v, 4) for k, v in run.items() if not k.startswith("_")}

    return write_results(
        out,
        {
            "class_vae": [public(run) for run in runs],
            "majority_class_accuracy": round(float(one_hot.mean(axis=0).max()), 4),
            "regression_vae": public(regression),
            "figure": "figures/textbook_vaes.png",
        },
    )


if __name__ == "__main__":
    main()
