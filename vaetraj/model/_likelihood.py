"""Log-likelihood estimates of one normalized frame: the ELBO and the
importance-weighted bound (IWAE) with K posterior draws.

Both need a normalized density p(x|z). For the "mse" likelihood the training loss
sum((x - mean)^2) is, up to a constant, the Gaussian with variance 1/2, so that is the
density used here; the "gaussian" likelihoods are used as they are, and "categorical" is
the log-probability of the one-hot class.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from vaetraj.configs import ModelConfig
from vaetraj.model._vae import (
    Posterior,
    compute_kl,
    decode_frame,
    encode_frame,
    log_probabilities,
    sample_posterior,
)

_LOG_2PI = math.log(2 * math.pi)


def compute_log_likelihood(x: jax.Array, mean: jax.Array, std: jax.Array, config: ModelConfig):
    """log p(x|z), summed over features, of decoder outputs (mean, std)."""
    if config.likelihood == "mse":
        return -jnp.sum((x - mean) ** 2) - 0.5 * x.shape[-1] * math.log(math.pi)
    if config.likelihood == "categorical":
        return jnp.sum(x * log_probabilities(mean))
    return -jnp.sum(0.5 * ((x - mean) / std) ** 2 + jnp.log(std) + 0.5 * _LOG_2PI)


def _log_posterior_density(posterior: Posterior, eps: jax.Array) -> jax.Array:
    """log q(z|x) at z = mean + L eps: the whitened point is eps itself."""
    diagonal = posterior.std if posterior.scale_tril is None else jnp.diagonal(posterior.scale_tril)
    return -0.5 * jnp.sum(eps**2) - jnp.sum(jnp.log(diagonal)) - 0.5 * eps.shape[-1] * _LOG_2PI


def compute_importance_weighted_bound(
    params: dict,
    x: jax.Array,
    noise: jax.Array,
    config: ModelConfig,
    *,
    seen: jax.Array | None = None,
) -> jax.Array:
    """log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x) with z_k = mean + L noise_k; noise is
    (K, latent) standard normal. K = 1 is a one-draw ELBO; the bound tightens with K.
    seen: what the encoder is given instead of x (a time-lagged model's earlier frame:
    the proposal is then q(z|seen), and the bound is still one on log p(x))."""
    posterior = encode_frame(params, x if seen is None else seen, config)

    def log_weight(eps):
        z = sample_posterior(posterior, eps)
        mean, std = decode_frame(params, z, config)
        log_prior = -0.5 * jnp.sum(z**2) - 0.5 * z.shape[-1] * _LOG_2PI
        return (
            compute_log_likelihood(x, mean, std, config)
            + log_prior
            - _log_posterior_density(posterior, eps)
        )

    weights = jax.vmap(log_weight)(noise)
    return logsumexp(weights) - math.log(noise.shape[0])


def compute_elbo_terms(
    params: dict,
    x: jax.Array,
    noise: jax.Array,
    config: ModelConfig,
    *,
    seen: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """(expected log p(x|z) over the draws in noise (K, latent), KL summed over
    dimensions); ELBO = first - second. seen: what the encoder is given instead of x
    (a time-lagged model's frame t, x being frame t + lag): the training objective."""
    posterior = encode_frame(params, x if seen is None else seen, config)

    def log_likelihood(eps):
        mean, std = decode_frame(params, sample_posterior(posterior, eps), config)
        return compute_log_likelihood(x, mean, std, config)

    return jnp.mean(jax.vmap(log_likelihood)(noise)), jnp.sum(compute_kl(posterior))
