"""A Gaussian mixture over latent space, fitted by EM: the model's latent density.

Decoding draws from N(0, I) lands in the holes of the encoded cloud when beta is small;
the mixture fitted to the encoded training frames is where the decoder has seen data.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import logsumexp


class GaussianMixture(NamedTuple):
    weights: jax.Array  # (components,)
    means: jax.Array  # (components, latent)
    scale_trils: jax.Array  # (components, latent, latent), Cholesky factors of the covariances


class MixtureFit(NamedTuple):
    mixture: GaussianMixture
    log_likelihood: jax.Array  # mean per point, at the last iteration
    iterations: jax.Array


def _component_log_densities(mixture: GaussianMixture, z: jax.Array) -> jax.Array:
    """log w_k + log N(z | mu_k, Sigma_k) for one point z (latent,): (components,)."""
    d = z.shape[-1]

    def one(mean, tril):
        white = solve_triangular(tril, z - mean, lower=True)
        log_det = jnp.sum(jnp.log(jnp.diagonal(tril)))
        return -0.5 * jnp.sum(white**2) - log_det - 0.5 * d * math.log(2 * math.pi)

    return jnp.log(mixture.weights) + jax.vmap(one)(mixture.means, mixture.scale_trils)


def compute_mixture_log_density(mixture: GaussianMixture, z: jax.Array) -> jax.Array:
    """log p(z) of one point z (latent,)."""
    return logsumexp(_component_log_densities(mixture, z))


def sample_mixture(mixture: GaussianMixture, *, key: jax.Array) -> jax.Array:
    """One draw z (latent,)."""
    component_key, normal_key = jax.random.split(key)
    k = jax.random.categorical(component_key, jnp.log(mixture.weights))
    eps = jax.random.normal(normal_key, mixture.means.shape[-1:], mixture.means.dtype)
    return mixture.means[k] + mixture.scale_trils[k] @ eps


@functools.partial(jax.jit, static_argnames=("components", "max_iterations"))
def fit_gaussian_mixture(
    z: jax.Array,
    *,
    components: int,
    key: jax.Array,
    max_iterations: int = 500,
    tol: float = 1e-6,
    reg: float = 1e-6,
) -> MixtureFit:
    """EM for a full-covariance mixture on points z (n, latent), n >= components.

    Means start at distinct random points, covariances at the data's; reg times the
    data's mean variance is added to every covariance so none collapses onto a point.
    Stops when the mean log-likelihood gains less than tol.
    """
    n, d = z.shape
    data_cov = jnp.cov(z, rowvar=False).reshape(d, d)
    ridge = reg * jnp.maximum(jnp.trace(data_cov) / d, 1e-12) * jnp.eye(d, dtype=z.dtype)
    start = GaussianMixture(
        jnp.full((components,), 1.0 / components, z.dtype),
        z[jax.random.choice(key, n, (components,), replace=False)],
        jnp.broadcast_to(jnp.linalg.cholesky(data_cov + ridge), (components, d, d)),
    )

    def step(mixture):
        log_joint = jax.vmap(_component_log_densities, in_axes=(None, 0))(mixture, z)
        log_norm = logsumexp(log_joint, axis=1, keepdims=True)
        resp = jnp.exp(log_joint - log_norm)  # (n, components)
        counts = resp.sum(axis=0) + 10 * jnp.finfo(z.dtype).eps
        means = (resp.T @ z) / counts[:, None]
        centred = z[None, :, :] - means[:, None, :]  # (components, n, latent)
        covs = jnp.einsum("kn,kni,knj->kij", resp.T, centred, centred) / counts[:, None, None]
        new = GaussianMixture(counts / n, means, jnp.linalg.cholesky(covs + ridge[None]))
        return new, jnp.mean(log_norm)

    def cond(carry):
        _, previous, current, i = carry
        return (i < max_iterations) & ((i < 2) | (current - previous > tol))

    def body(carry):
        mixture, _, current, i = carry
        new, log_likelihood = step(mixture)
        return new, current, log_likelihood, i + 1

    inf = jnp.array(-jnp.inf, z.dtype)
    mixture, _, log_likelihood, iterations = jax.lax.while_loop(
        cond, body, (start, inf, inf, jnp.array(0))
    )
    return MixtureFit(mixture, log_likelihood, iterations)


def compute_aggregate_log_density(means: jax.Array, stds: jax.Array, z: jax.Array) -> jax.Array:
    """log q(z) of the aggregate posterior q(z) = (1/N) sum_i N(z | means_i, diag stds_i^2)
    at one point z (latent,); means and stds are (N, latent)."""
    white = (z[None, :] - means) / stds
    log_components = -0.5 * jnp.sum(white**2, axis=-1) - jnp.sum(jnp.log(stds), axis=-1)
    d = z.shape[-1]
    return logsumexp(log_components) - math.log(means.shape[0]) - 0.5 * d * math.log(2 * math.pi)
