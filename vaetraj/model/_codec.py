"""The model's two maps on data in its own units: encode normalizes, then encodes;
decode decodes, then undoes the normalization. The one place the normalization formula
is applied to a network's input and output."""

from __future__ import annotations

import jax

from vaetraj.configs import ModelConfig
from vaetraj.model._vae import Posterior, decode_frame, encode_frame


def normalize(x: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """(x - mean) / std, per feature."""
    return (x - mean) / std


def encode_data(
    params: dict, x: jax.Array, config: ModelConfig, mean: jax.Array, std: jax.Array
) -> Posterior:
    """The posterior of one flat frame in data units.

    Args:
        params: the VAE's parameters.
        x: (features,) a frame, flattened, in the data's units.
        config: the architecture.
        mean: (features,) the normalization's mean.
        std: (features,) the normalization's std.

    Returns:
        The encoder's posterior (mean and std over the latent space).
    """
    return encode_frame(params, normalize(x, mean, std), config)


def decode_data(
    params: dict, z: jax.Array, config: ModelConfig, mean: jax.Array, std: jax.Array
) -> jax.Array:
    """The decoder's mean for latent point `z`, in the data's units.

    Args:
        params: the VAE's parameters.
        z: (latent,) a latent point.
        config: the architecture.
        mean: (features,) the normalization's mean.
        std: (features,) the normalization's std.

    Returns:
        (features,) the decoded frame, flattened.
    """
    return decode_frame(params, z, config)[0] * std + mean
