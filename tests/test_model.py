"""VAE kernels against independent references: KL against Monte Carlo, likelihoods
against scipy, gradients against finite differences, EM against a known mixture."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from vaetraj.errors import ConfigError, UsageError
from vaetraj.model import (
    DEFAULT_LATENT_DIM,
    GaussianMixture,
    ModelConfig,
    compute_kl_diagonal,
    compute_kl_full,
    compute_loss_terms,
    compute_mixture_log_density,
    compute_negative_log_likelihood,
    decode_frame,
    encode_frame,
    fit_gaussian_mixture,
    fit_normalization,
    init_vae,
    sample_mixture,
)
from vaetraj.model._diagnostics import (
    compute_active_units,
    compute_explained_variance,
    compute_pca_explained_variance,
    compute_pca_held_out_explained_variance,
)
from vaetraj.training import TrainConfig


def test_diagonal_kl_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mean, std = np.array([0.3, -1.2, 2.0]), np.array([0.5, 1.7, 0.2])
    z = mean + std * rng.normal(size=(400_000, 3))
    estimate = np.mean(stats.norm.logpdf(z, mean, std).sum(1) - stats.norm.logpdf(z).sum(1))
    analytic = float(jnp.sum(compute_kl_diagonal(jnp.asarray(mean), jnp.asarray(std))))
    assert analytic == pytest.approx(estimate, rel=1e-2)


def test_full_kl_matches_monte_carlo_and_reduces_to_diagonal():
    rng = np.random.default_rng(1)
    mean = np.array([0.5, -0.4, 1.0])
    tril = np.tril(rng.normal(size=(3, 3)) * 0.5)
    np.fill_diagonal(tril, [0.8, 1.3, 0.4])
    cov = tril @ tril.T
    z = rng.multivariate_normal(mean, cov, size=400_000)
    estimate = np.mean(
        stats.multivariate_normal(mean, cov).logpdf(z)
        - stats.multivariate_normal(np.zeros(3), np.eye(3)).logpdf(z)
    )
    analytic = float(jnp.sum(compute_kl_full(jnp.asarray(mean), jnp.asarray(tril))))
    assert analytic == pytest.approx(estimate, rel=1e-2)
    std = np.array([0.8, 1.3, 0.4])
    np.testing.assert_allclose(
        compute_kl_full(jnp.asarray(mean), jnp.diag(jnp.asarray(std))),
        compute_kl_diagonal(jnp.asarray(mean), jnp.asarray(std)),
        rtol=1e-6,
    )


def test_full_posterior_is_a_valid_cholesky_factor():
    config = ModelConfig(features=8, latent_dim=3, hidden=16, layers=3, posterior="full")
    params = init_vae(config, key=jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (8,))
    posterior = encode_frame(params, x, config)
    tril = np.asarray(posterior.scale_tril)
    assert np.allclose(tril, np.tril(tril)) and (np.diag(tril) > 0).all()
    np.testing.assert_allclose(posterior.std, np.sqrt(np.diag(tril @ tril.T)), rtol=1e-5)


@pytest.mark.parametrize("likelihood", ["gaussian", "gaussian-learned"])
def test_gaussian_likelihood_matches_scipy(likelihood):
    config = ModelConfig(
        features=6, latent_dim=2, hidden=8, layers=2, likelihood=likelihood, decoder_std=0.3
    )
    params = init_vae(config, key=jax.random.key(0))
    mean, std = decode_frame(params, jnp.array([0.2, -0.1]), config)
    x = np.random.default_rng(0).normal(size=6).astype(np.float32)
    expected = -stats.norm.logpdf(x, np.asarray(mean), np.asarray(std)).sum()
    got = float(compute_negative_log_likelihood(jnp.asarray(x), mean, std, config))
    assert got == pytest.approx(expected, rel=1e-5)
    if likelihood == "gaussian":
        assert np.allclose(std, 0.3)
    else:
        assert np.all(np.asarray(std) > 0) and decode_frame(params, jnp.zeros(2), config)[
            0
        ].shape == (6,)


@pytest.mark.slow  # 4.4 s: the default run stays under 2 minutes
def test_loss_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        config = ModelConfig(features=6, latent_dim=2, hidden=5, layers=3, activation="tanh")
        params = jax.tree.map(
            lambda a: a.astype(jnp.float64), init_vae(config, key=jax.random.key(0))
        )
        x = jax.random.normal(jax.random.key(1), (6,), jnp.float64)
        noise = jax.random.normal(jax.random.key(2), (2, 2), jnp.float64)

        def loss(p):
            terms = compute_loss_terms(p, x, noise, config)
            return terms.reconstruction + 0.5 * jnp.sum(terms.kl)

        grads = jax.jit(jax.grad(loss))(params)
        loss = jax.jit(loss)  # one compile for the six evaluations, not op by op
        w = params["encoder"][0]["w"]
        for index in [(0, 0), (3, 2), (5, 4)]:
            step = 1e-6
            plus = {
                **params,
                "encoder": [
                    {**params["encoder"][0], "w": w.at[index].add(step)},
                    *params["encoder"][1:],
                ],
            }
            minus = {
                **params,
                "encoder": [
                    {**params["encoder"][0], "w": w.at[index].add(-step)},
                    *params["encoder"][1:],
                ],
            }
            numeric = (loss(plus) - loss(minus)) / (2 * step)
            assert float(grads["encoder"][0]["w"][index]) == pytest.approx(
                float(numeric), rel=1e-5, abs=1e-8
            )


def test_normalization_keeps_constant_features_finite():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(500, 4))
    x[:, 2] = 7.0  # e.g. a coordinate that alignment pins
    norm = fit_normalization(x)
    assert norm.std[2] == 1.0 and norm.mean[2] == pytest.approx(7.0)
    out = (x - norm.mean) / norm.std
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, [0, 1, 3]].std(0), 1.0, rtol=1e-5)


def test_config_validation_names_the_field_and_the_cli_its_option():
    with pytest.raises(ConfigError, match="^latent_dim must be at least 1, got 0$") as caught:
        ModelConfig(features=24, latent_dim=0)
    assert caught.value.as_flag() == "--latent-dim must be at least 1, got 0"
    with pytest.raises(UsageError, match="below the 24 input features"):
        ModelConfig(features=24, latent_dim=24)
    with pytest.raises(ConfigError, match="^activation must be one of") as caught:
        ModelConfig(activation="sigmoid")
    assert caught.value.field == "activation"
    with pytest.raises(ConfigError, match="^batch_size must be at least 1") as caught:
        TrainConfig(batch_size=0)
    assert caught.value.as_flag().startswith("--batch-size must be at least 1")
    assert caught.value.as_flag({"batch_size": "-b"}).startswith("-b must")
    config = ModelConfig(features=24, posterior="full", likelihood="gaussian-learned")
    assert ModelConfig.from_json(config.to_json()) == config


def test_default_latent_size_fits_the_input():
    """No --latent-dim: 4, or one below the feature count for tiny inputs; resolved once
    the features are known, and stored as a number."""
    assert ModelConfig().latent_dim is None
    assert ModelConfig(features=24).latent_dim == DEFAULT_LATENT_DIM == 4
    assert [ModelConfig(features=n).latent_dim for n in (1, 2, 3, 5, 6)] == [1, 1, 2, 4, 4]
    resolved = dataclasses.replace(ModelConfig(hidden=8), features=3)
    assert resolved.latent_dim == 2 and ModelConfig.from_json(resolved.to_json()) == resolved


def _three_clusters(rng, n=3000):
    means = np.array([[-3.0, 0.0], [2.0, 2.0], [2.5, -2.5]])
    covs = np.array(
        [[[0.5, 0.2], [0.2, 0.3]], [[0.2, 0.0], [0.0, 0.6]], [[0.4, -0.1], [-0.1, 0.2]]]
    )
    weights = np.array([0.5, 0.3, 0.2])
    labels = rng.choice(3, size=n, p=weights)
    z = np.stack([rng.multivariate_normal(means[k], covs[k]) for k in labels])
    return z, means, covs, weights


def test_em_recovers_a_known_mixture_and_its_density_matches_scipy():
    rng = np.random.default_rng(0)
    z, means, covs, weights = _three_clusters(rng)
    fit = fit_gaussian_mixture(jnp.asarray(z, jnp.float32), components=3, key=jax.random.key(0))
    got = fit.mixture
    order = [int(np.argmin(np.linalg.norm(np.asarray(got.means) - m, axis=1))) for m in means]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(np.asarray(got.means)[order], means, atol=0.1)
    np.testing.assert_allclose(np.asarray(got.weights)[order], weights, atol=0.03)
    fitted_covs = np.einsum("kij,klj->kil", got.scale_trils, got.scale_trils)
    np.testing.assert_allclose(fitted_covs[order], covs, atol=0.08)
    # log density against scipy's mixture of the fitted parameters
    points = rng.normal(size=(50, 2)) * 2
    reference = np.log(
        sum(
            w * stats.multivariate_normal(m, c).pdf(points)
            for w, m, c in zip(
                np.asarray(got.weights), np.asarray(got.means), fitted_covs, strict=True
            )
        )
    )
    ours = jax.vmap(compute_mixture_log_density, in_axes=(None, 0))(
        got, jnp.asarray(points, jnp.float32)
    )
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)
    assert int(fit.iterations) > 2


@pytest.mark.slow
def test_mixture_samples_follow_the_mixture():
    mixture = GaussianMixture(
        jnp.array([0.25, 0.75]),
        jnp.array([[-2.0, 0.0], [2.0, 1.0]]),
        jnp.array([jnp.eye(2) * 0.5, jnp.eye(2) * 0.1]),
    )
    draws = np.asarray(
        jax.vmap(lambda k: sample_mixture(mixture, key=k))(
            jax.random.split(jax.random.key(0), 20_000)
        )
    )
    np.testing.assert_allclose(draws.mean(0), [1.0, 0.75], atol=0.03)
    assert np.mean(draws[:, 0] < 0) == pytest.approx(0.25, abs=0.01)


def test_active_units_count_informative_dimensions():
    rng = np.random.default_rng(0)
    means = np.stack(
        [rng.normal(size=1000), rng.normal(size=1000) * 1e-3, rng.normal(size=1000) * 0.5], 1
    )
    assert int(compute_active_units(jnp.asarray(means))) == 2


@pytest.mark.parametrize("frames, features", [(500, 12), (30, 200)])
def test_pca_explained_variance_matches_the_singular_values(frames, features):
    """Against np.linalg.svd of the centred data, on both sides of frames = features
    (the kernel takes the smaller Gram matrix)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(frames, 3)) * [5.0, 2.0, 1.0] @ rng.normal(size=(3, features))
    x = x + 0.1 * rng.normal(size=x.shape) + 7.0
    singular = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2
    for k in (1, 2, 3):
        expected = singular[:k].sum() / singular.sum()
        assert compute_pca_explained_variance(x, k) == pytest.approx(expected, rel=1e-9)
    assert np.isnan(compute_pca_explained_variance(np.ones((10, 4)), 1))


@pytest.mark.parametrize("frames, features", [(500, 12), (30, 200)])
def test_pca_on_held_out_frames_matches_a_projection_by_svd(frames, features):
    """PCA fitted on training frames, judged on others (issue 31: train compared the
    model's validation share with PCA's training share): against the projection onto
    np.linalg.svd's right singular vectors; on the training frames themselves it is
    PCA's own share."""
    rng = np.random.default_rng(2)
    mix = rng.normal(size=(3, features))
    x = rng.normal(size=(frames, 3)) * [5.0, 2.0, 1.0] @ mix + 0.1 * rng.normal(
        size=(frames, features)
    )
    y = rng.normal(size=(40, 3)) * [5.0, 2.0, 1.0] @ mix + 0.5 * rng.normal(size=(40, features))
    mean = x.mean(0)
    basis = np.linalg.svd(x - mean, full_matrices=False)[2]
    for k in (1, 2, 3):
        projected = (y - mean) @ basis[:k].T @ basis[:k]
        expected = 1 - np.sum((y - mean - projected) ** 2) / np.sum((y - mean) ** 2)
        got = compute_pca_held_out_explained_variance(x, y, k)
        assert got == pytest.approx(expected, rel=1e-7)
        assert compute_pca_held_out_explained_variance(x, x, k) == pytest.approx(
            compute_pca_explained_variance(x, k), rel=1e-7
        )
    assert compute_pca_held_out_explained_variance(x, y, 3) < compute_pca_explained_variance(x, 3)


def test_explained_variance_against_its_definition_and_known_values():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 5, 3))
    centre = x.mean(0)
    recon = x + 0.3 * rng.normal(size=x.shape)
    expected = 1 - np.sum((x - recon) ** 2) / np.sum((x - centre) ** 2)
    assert compute_explained_variance(x, recon, centre) == pytest.approx(expected, rel=1e-12)
    assert compute_explained_variance(x, x, centre) == 1.0
    # over a subset of frames, in chunks: the same as on the subset's copy
    subset = np.arange(3, 200, 7)
    assert compute_explained_variance(x, recon, centre, subset) == pytest.approx(
        1 - np.sum((x[subset] - recon[subset]) ** 2) / np.sum((x[subset] - centre) ** 2),
        rel=1e-12,
    )
    # the mean structure for every frame (a decoder that ignores z) explains nothing
    assert compute_explained_variance(x, np.broadcast_to(centre, x.shape), centre) == 0.0
    # a PCA reconstruction with k components explains what the PCA yardstick says
    flat = x.reshape(200, -1)
    u, s, vt = np.linalg.svd(flat - flat.mean(0), full_matrices=False)
    projected = (u[:, :2] * s[:2]) @ vt[:2] + flat.mean(0)
    assert compute_explained_variance(flat, projected, flat.mean(0)) == pytest.approx(
        compute_pca_explained_variance(flat, 2), rel=1e-9
    )


def test_loss_terms_squared_error_is_the_decoded_means_error():
    """squared_error: sum |x - decoder mean|^2 at each draw, averaged, for any likelihood
    (the class VAE's is the Brier score of its probabilities)."""
    for likelihood in ("mse", "gaussian-learned", "categorical"):
        config = ModelConfig(features=6, latent_dim=2, hidden=8, layers=3, likelihood=likelihood)
        params = init_vae(config, key=jax.random.key(0))
        x = (
            jnp.eye(6)[2]
            if likelihood == "categorical"
            else jax.random.normal(jax.random.key(1), (6,))
        )
        noise = jax.random.normal(jax.random.key(2), (3, 2))
        posterior = encode_frame(params, x, config)
        expected = np.mean(
            [
                np.sum(
                    (
                        np.asarray(x)
                        - np.asarray(
                            decode_frame(params, posterior.mean + posterior.std * eps, config)[0]
                        )
                    )
                    ** 2
                )
                for eps in noise
            ]
        )
        terms = compute_loss_terms(params, x, noise, config)
        assert float(terms.squared_error) == pytest.approx(expected, rel=1e-5)


def test_prediction_explained_variance_against_least_squares_and_pca():
    """Reduced-rank regression against an independent route (np.linalg.lstsq, the fit
    cut to k components by its SVD, the residual summed); PCA's share when y = x."""
    from vaetraj.model import compute_prediction_explained_variance

    rng = np.random.default_rng(4)
    x = rng.normal(size=(2000, 6)) @ rng.normal(size=(6, 6)) + 3.0
    y = x @ rng.normal(size=(6, 9)) + rng.normal(size=(2000, 9)) + 1.0
    xc, yc = x - x.mean(0), y - y.mean(0)
    coefficients = np.linalg.lstsq(xc, yc, rcond=None)[0]
    fitted = xc @ coefficients
    _, _, vt = np.linalg.svd(fitted, full_matrices=False)
    for k in (1, 2, 5):
        cut = fitted @ vt[:k].T @ vt[:k]
        expected = 1 - np.sum((yc - cut) ** 2) / np.sum(yc**2)
        assert compute_prediction_explained_variance(x, y, k) == pytest.approx(expected, rel=1e-9)
        assert compute_prediction_explained_variance(x, x, k) == pytest.approx(
            compute_pca_explained_variance(x, k), rel=1e-9
        )
    # y unrelated to x: next to nothing (at most the k of frames // 10 regressors' chance fit)
    noise = rng.normal(size=(2000, 9))
    assert compute_prediction_explained_variance(x, noise, 2) < 0.01
    assert np.isnan(compute_prediction_explained_variance(x, np.ones((2000, 3)), 1))
