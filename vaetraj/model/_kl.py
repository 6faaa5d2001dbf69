"""Analytic KL divergences of Gaussian posteriors from the standard normal prior."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def compute_kl_diagonal(mean: jax.Array, std: jax.Array) -> jax.Array:
    """KL(N(mean, diag(std^2)) || N(0, I)) per latent dimension: (latent,)."""
    return 0.5 * (mean**2 + std**2 - 1.0) - jnp.log(std)


def compute_kl_full(mean: jax.Array, scale_tril: jax.Array) -> jax.Array:
    """KL(N(mean, L L^T) || N(0, I)) split over latent dimensions: (latent,).

    0.5 (tr(L L^T) + |mean|^2 - d) - log det L, with the trace and log-determinant
    attributed to the row (dimension) they come from; the sum is the exact KL.
    """
    diagonal = jnp.diagonal(scale_tril)
    return 0.5 * (jnp.sum(scale_tril**2, axis=-1) + mean**2 - 1.0) - jnp.log(diagonal)
