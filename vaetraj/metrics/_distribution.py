"""Distances between one-dimensional empirical distributions."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def compute_wasserstein_1d(a: jax.Array, b: jax.Array) -> jax.Array:
    """1-Wasserstein distance between the empirical distributions of samples a (n,) and
    b (m,): the integral of |F_a - F_b| over the line. Sizes may differ."""
    a, b = jnp.sort(a), jnp.sort(b)
    values = jnp.sort(jnp.concatenate([a, b]))
    widths = jnp.diff(values)
    cdf_a = jnp.searchsorted(a, values[:-1], side="right") / a.shape[0]
    cdf_b = jnp.searchsorted(b, values[:-1], side="right") / b.shape[0]
    return jnp.sum(jnp.abs(cdf_a - cdf_b) * widths)
