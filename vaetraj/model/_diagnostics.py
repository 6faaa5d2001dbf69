"""What a trained encoder's latent space looks like."""

from __future__ import annotations

import jax.numpy as jnp


def compute_active_units(means: jnp.ndarray, threshold: float = 0.01) -> jnp.ndarray:
    """Latent dimensions whose posterior mean varies over the data (variance over frames
    above `threshold`, Burda et al.'s criterion): the rest carry no information."""
    return jnp.sum(jnp.var(means, axis=0) > threshold)
