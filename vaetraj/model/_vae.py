"""The VAE on one normalized frame: encode, decode, and the per-frame loss terms.

Parameters are a pytree {"encoder": [layers], "decoder": [layers]} (see `_mlp`); every
function here takes one frame or one latent point, and callers `vmap` over frames.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from vaetraj.configs import ModelConfig
from vaetraj.model._kl import compute_kl_diagonal, compute_kl_full
from vaetraj.model._mlp import apply_mlp, init_mlp

# Lower bounds keep a collapsing std from reaching 0 and its log from -inf.
_MIN_POSTERIOR_STD = 1e-5
_MIN_DECODER_STD = 1e-3


class Posterior(NamedTuple):
    """q(z|x) = N(mean, scale_tril scale_tril^T); std is the marginal std per dimension."""

    mean: jax.Array  # (latent,)
    std: jax.Array  # (latent,)
    scale_tril: jax.Array | None  # (latent, latent), full posterior only


class LossTerms(NamedTuple):
    """Per-frame terms: reconstruction is -log p(x|z) (up to a constant for mse) averaged
    over the K draws; kl is per latent dimension; squared_error is sum |x - decoder
    mean|^2 averaged over the draws, whatever the likelihood: positive, 0 for a perfect
    reconstruction, and about the feature count for the mean structure (standardized
    data), so it compares across likelihoods where the log-likelihood's offset does not."""

    reconstruction: jax.Array  # ()
    kl: jax.Array  # (latent,)
    squared_error: jax.Array  # ()


def init_vae(config: ModelConfig, *, key: jax.Array) -> dict:
    hidden = [config.hidden] * (config.layers - 1)
    features, latent_dim = config.size
    encoder_key, decoder_key = jax.random.split(key)
    return {
        "encoder": init_mlp(
            [features, *hidden, config.encoder_outputs], config.activation, key=encoder_key
        ),
        "decoder": init_mlp(
            [latent_dim, *hidden, config.decoder_outputs],
            config.activation,
            key=decoder_key,
        ),
    }


def encode_frame(params: dict, x: jax.Array, config: ModelConfig) -> Posterior:
    """x (features,) normalized -> q(z|x)."""
    out = apply_mlp(params["encoder"], x, config.activation)
    d = config.size[1]
    mean, rest = out[:d], out[d:]
    if config.posterior == "diagonal":
        std = jax.nn.softplus(rest) + _MIN_POSTERIOR_STD
        return Posterior(mean, std, None)
    rows, cols = jnp.tril_indices(d)
    tril = jnp.zeros((d, d), out.dtype).at[rows, cols].set(rest)
    diagonal = jax.nn.softplus(jnp.diagonal(tril)) + _MIN_POSTERIOR_STD
    tril = tril - jnp.diag(jnp.diagonal(tril)) + jnp.diag(diagonal)
    return Posterior(mean, jnp.sqrt(jnp.sum(tril**2, axis=-1)), tril)


def decode_frame(params: dict, z: jax.Array, config: ModelConfig) -> tuple[jax.Array, jax.Array]:
    """z (latent,) -> mean and std of p(x|z), both (features,) in normalized units."""
    out = apply_mlp(params["decoder"], z, config.activation)
    if config.likelihood == "gaussian-learned":
        mean, raw = out[: config.features], out[config.features :]
        return mean, jax.nn.softplus(raw) + _MIN_DECODER_STD
    if config.likelihood == "categorical":
        # the mean of a one-hot categorical is its probability vector; std is unused
        return jax.nn.softmax(out), jnp.ones_like(out)
    std = 1.0 if config.likelihood == "mse" else config.decoder_std
    return out, jnp.full_like(out, std)


def log_probabilities(probabilities: jax.Array) -> jax.Array:
    """log p of decoder probabilities, floored at the smallest normal float so that a
    class given probability 0 by underflow costs a large finite amount, not inf * 0."""
    return jnp.log(jnp.maximum(probabilities, jnp.finfo(probabilities.dtype).tiny))


def sample_posterior(posterior: Posterior, eps: jax.Array) -> jax.Array:
    """The reparameterized draw z = mean + L eps for standard normal eps (latent,)."""
    if posterior.scale_tril is None:
        return posterior.mean + posterior.std * eps
    return posterior.mean + posterior.scale_tril @ eps


def compute_kl(posterior: Posterior) -> jax.Array:
    if posterior.scale_tril is None:
        return compute_kl_diagonal(posterior.mean, posterior.std)
    return compute_kl_full(posterior.mean, posterior.scale_tril)


def compute_negative_log_likelihood(
    x: jax.Array, mean: jax.Array, std: jax.Array, config: ModelConfig
) -> jax.Array:
    """-log p(x|z) summed over features; for "mse" the textbook's sum of squared errors,
    for "categorical" the cross-entropy -sum x log p (x one-hot, or class weights)."""
    if config.likelihood == "mse":
        return jnp.sum((x - mean) ** 2)
    if config.likelihood == "categorical":
        return -jnp.sum(x * log_probabilities(mean))
    return jnp.sum(0.5 * ((x - mean) / std) ** 2 + jnp.log(std) + 0.5 * math.log(2 * math.pi))


def compute_loss_terms(
    params: dict,
    x: jax.Array,
    noise: jax.Array,
    config: ModelConfig,
    *,
    seen: jax.Array | None = None,
) -> LossTerms:
    """Reconstruction of x averaged over the reparameterized draws given by noise
    (samples, latent) of standard normal values, and the analytic KL.

    seen: what the encoder is given instead of x, e.g. a corrupted copy of x (a
    denoising autoencoder's input); the reconstruction is still scored against x.
    The caller draws the noise (one `jax.random.normal` for a whole batch is much
    cheaper than a key per frame)."""
    posterior = encode_frame(params, x if seen is None else seen, config)

    def reconstruction(eps):
        mean, std = decode_frame(params, sample_posterior(posterior, eps), config)
        return compute_negative_log_likelihood(x, mean, std, config), jnp.sum((x - mean) ** 2)

    negative_log_likelihood, squared_error = jax.vmap(reconstruction)(noise)
    return LossTerms(
        jnp.mean(negative_log_likelihood), compute_kl(posterior), jnp.mean(squared_error)
    )
