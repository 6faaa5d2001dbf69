"""The AEVB notes' 2D toy: why a plain autoencoder with a 1D bottleneck cannot
generate, and what a learned decoder variance adds to a VAE.

    python examples/aevb_toy.py                   # -> aevb-toy/ (under a minute)

Data: two Gaussian clusters in 2D. Three models with a 1D latent space, all trained
with `vaetraj.train_features`:

- a plain autoencoder: beta 0, so nothing ties the codes to a prior; its decoder maps a
  line to a curve, so everything it makes lies on that curve;
- VAEs with a fixed decoder std (the `gaussian` likelihood), 0.1 and 1 in
  standardized units: the std is a guess the user has to tune;
- a VAE whose decoder also predicts the std of each coordinate (`gaussian-learned`).

The VAEs take 3 posterior draws per point, as in the notes, and a KL warm-up.

New points are x = mean(z) + std(z) * noise with z from the prior (for the
autoencoder: from a normal fitted to its codes, the best one can do without a prior).
Reported: the energy distance of the generated points to held-out data (0 for the
same distribution) and, per cluster, the generated area (the determinant of the
covariance) against the data's.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import fresh_folder, parser, write_results  # noqa: E402

CENTRES = np.array([[0.0, 0.0], [5.0, 5.0]])


def clusters(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n points, half around each centre with unit covariance, and their cluster."""
    rng = np.random.default_rng(seed)
    which = rng.integers(0, 2, n)
    return (CENTRES[which] + rng.normal(size=(n, 2))).astype(np.float32), which


def _decoder_outputs(model, z: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """Mean and std of p(x|z) in standardized units, from the decoder kernel."""
    from vaetraj.model import decode_frame

    params = jax.tree.map(jnp.asarray, model.params)
    return jax.vmap(lambda zi: decode_frame(params, zi, model.config))(jnp.asarray(z))


def generate(model, z: np.ndarray, key: jax.Array) -> np.ndarray:
    """Draws from p(x|z) in data units: the decoder's mean plus its std times noise."""
    mean, std = _decoder_outputs(model, z)
    if model.config.likelihood == "mse":  # a plain autoencoder has no noise model
        std = jnp.zeros_like(std)
    x = mean + std * jax.random.normal(key, mean.shape)
    norm = model.normalization
    return np.asarray(x) * norm.std + norm.mean


def energy_distance(a: np.ndarray, b: np.ndarray) -> float:
    """2 E|A-B| - E|A-A'| - E|B-B'|: zero only when the distributions agree."""

    def mean_distance(p, q):
        return float(np.sqrt(((p[:, None] - q[None]) ** 2).sum(-1)).mean())

    return 2 * mean_distance(a, b) - mean_distance(a, a) - mean_distance(b, b)


def area_ratio(points: np.ndarray) -> list[float]:
    """det(cov) of the generated points nearest each centre, over the data's (1)."""
    nearest = np.argmin(((points[:, None] - CENTRES[None]) ** 2).sum(-1), axis=1)
    return [
        float(np.linalg.det(np.cov(points[nearest == k].T))) if (nearest == k).sum() > 2 else 0.0
        for k in range(len(CENTRES))
    ]


def plot(out: Path, data, made: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(made) + 1, figsize=(3.3 * (len(made) + 1), 3.6), sharey=True)
    axes[0].plot(data[:, 0], data[:, 1], ".", ms=2, color="gray")
    axes[0].set(title="data", xlabel="x1", ylabel="x2")
    for axis, (name, (points, reconstructed)) in zip(axes[1:], made.items(), strict=True):
        axis.plot(data[:, 0], data[:, 1], ".", ms=2, color="0.85")
        axis.plot(points[:, 0], points[:, 1], ".", ms=2, label="generated")
        axis.plot(reconstructed[:, 0], reconstructed[:, 1], ".", ms=2, color="C3",
                  label="reconstructed")  # fmt: skip
        axis.set(title=name, xlabel="x1")
    axes[-1].legend(loc="lower right", markerscale=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "figures" / "aevb_toy.png", dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parse = parser(__doc__.splitlines()[0], "aevb-toy", epochs=300)
    parse.add_argument("--points", type=int, default=4000)
    args = parse.parse_args(argv)
    out = fresh_folder(args.output)
    (out / "figures").mkdir()

    from vaetraj import ModelConfig, TrainConfig, train_features

    data, _ = clusters(args.points, args.seed)
    test, _ = clusters(1000, args.seed + 1)

    def vae(likelihood: str, std: float = 1.0) -> ModelConfig:
        return ModelConfig(latent_dim=1, hidden=64, layers=3, likelihood=likelihood,
                           decoder_std=std)  # fmt: skip

    variants = {  # name: (model, beta, posterior draws per point)
        "autoencoder (beta 0)": (vae("mse"), 0.0, 1),
        "VAE, fixed std 0.1": (vae("gaussian", 0.1), 1.0, 3),
        "VAE, fixed std 1": (vae("gaussian", 1.0), 1.0, 3),
        "VAE, learned std": (vae("gaussian-learned"), 1.0, 3),
    }
    data_area = area_ratio(test)
    results: dict = {"data_area_per_cluster": [round(a, 3) for a in data_area]}
    made = {}
    for index, (name, (config, beta, draws)) in enumerate(variants.items()):
        model, _ = train_features(
            data,
            config,
            TrainConfig(
                epochs=args.epochs,
                batch_size=128,
                lr=3e-3,
                weight_decay=0.0,  # the notes' plain method: no decay, no input noise
                input_noise=0.0,
                beta=beta,
                samples=draws,
                kl_warmup=args.epochs // 6,
                seed=args.seed,
            ),  # fmt: skip
        )
        codes, _ = model.encode(data)
        key_z, key_x = jax.random.split(jax.random.key(args.seed + index))
        z = np.asarray(jax.random.normal(key_z, (len(test), 1)))
        if beta == 0:  # no prior to sample: a normal with the codes' mean and spread
            z = codes.mean(axis=0) + codes.std(axis=0) * z
        points = generate(model, z, key_x)
        reconstructed = model.decode(model.encode(test)[0])
        made[name] = (points, reconstructed)
        _, decoder_std = _decoder_outputs(model, codes)
        results[name] = {
            "energy_distance_to_data": round(energy_distance(points, test), 4),
            "area_ratio_per_cluster": [
                round(a / d, 3) for a, d in zip(area_ratio(points), data_area, strict=True)
            ],  # fmt: skip
            "reconstruction_rms": round(float(np.sqrt(((reconstructed - test) ** 2).mean())), 4),
            "mean_decoder_std": round(float(decoder_std.mean()), 3) if beta else None,
        }
    # the yardstick: a second draw of the data itself
    results["data_vs_data_energy_distance"] = round(
        energy_distance(clusters(1000, args.seed + 2)[0], test), 4
    )
    plot(out, test, made)
    results["figure"] = "figures/aevb_toy.png"
    return write_results(out, results)


if __name__ == "__main__":
    main()
