"""What a trained model's latent space and reconstructions look like."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from vaetraj.model._normalize import summed_squares, working_float


def compute_active_units(means: ArrayLike, threshold: float = 0.01) -> jax.Array:
    """Latent dimensions whose posterior mean varies over the data (variance over frames
    above `threshold`, Burda et al.'s criterion): the rest carry no information."""
    return count_active_units(jnp.var(means, axis=0), threshold)


def count_active_units(variance: ArrayLike, threshold: float = 0.01) -> jax.Array:
    """`compute_active_units` from the variance of each dimension's posterior mean over
    the frames (as a running `Moments` gives it)."""
    return jnp.sum(jnp.asarray(variance) > threshold)


_CHUNK = 65_536  # frames per float64 pass


class ExplainedVariance:
    """The sums of `compute_explained_variance`, added chunk by chunk (squares in
    float32, sums in float64)."""

    def __init__(self, centre: np.ndarray):
        self.centre = np.asarray(centre, np.float64)
        self.residual = 0.0
        self.spread = 0.0

    def add(self, x: np.ndarray, reconstruction: np.ndarray) -> None:
        kind = working_float(x, reconstruction)
        self.residual += float(summed_squares(np.subtract(x, reconstruction, dtype=kind)))
        self.spread += float(summed_squares(np.subtract(x, self.centre, dtype=kind)))

    @property
    def value(self) -> float:
        return float(1.0 - self.residual / self.spread) if self.spread > 0 else float("nan")


def compute_explained_variance(
    x: np.ndarray,
    reconstruction: np.ndarray,
    centre: np.ndarray,
    index: np.ndarray | None = None,
) -> float:
    """1 - sum |x - reconstruction|^2 / sum |x - centre|^2 over frames (frames, ...): the
    share of the data's variance about `centre` (the training mean) that the
    reconstructions explain. 1 is perfect; 0 is what returning `centre` for every frame
    scores; below 0 is worse than that. nan when the data do not vary.

    `index`: the frames to sum over (default: all). The sums are taken in float64 chunk
    by chunk (`ExplainedVariance`), so no float64 copy of the whole is made."""
    rows = np.arange(len(x)) if index is None else np.asarray(index)
    total = ExplainedVariance(centre)
    for start in range(0, len(rows), _CHUNK):
        part = rows[start : start + _CHUNK]
        total.add(x[part], reconstruction[part])
    return total.value


def compute_pca_explained_variance(x: np.ndarray, components: int) -> float:
    """The share of the variance of x (frames, features) about its mean that its first
    `components` principal components explain: what a linear map to as many latent
    dimensions reaches on the same frames, the yardstick for a VAE's reconstructions.
    nan when the data do not vary."""
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0)
    gram = x @ x.T if x.shape[0] < x.shape[1] else x.T @ x  # the smaller of the two
    eigenvalues = np.clip(np.linalg.eigvalsh(gram), 0.0, None)
    total = eigenvalues.sum()
    if total <= 0:
        return float("nan")
    return float(np.sort(eigenvalues)[::-1][:components].sum() / total)


def compute_pca_held_out_explained_variance(
    train: np.ndarray, held_out: np.ndarray, components: int
) -> float:
    """The share of the variance of `held_out` (frames, features), about the training
    frames' mean, that PCA fitted on `train` explains through its first `components`
    principal components: the yardstick for a VAE's reconstruction of validation
    frames (compute_pca_explained_variance is the one for its training frames). nan
    when the held-out frames do not vary."""
    train = np.asarray(train, np.float64)
    mean = train.mean(axis=0)
    centred = train - mean
    if centred.shape[0] < centred.shape[1]:  # the basis from the smaller Gram matrix
        values, vectors = np.linalg.eigh(centred @ centred.T)
        top = np.argsort(values)[::-1][:components]
        keep = values[top] > values.max() * 1e-12
        basis = (centred.T @ vectors[:, top[keep]]) / np.sqrt(values[top[keep]])
    else:
        values, vectors = np.linalg.eigh(centred.T @ centred)
        basis = vectors[:, np.argsort(values)[::-1][:components]]
    x = np.asarray(held_out, np.float64) - mean
    total = float(np.sum(x**2))
    if total <= 0:
        return float("nan")
    residual = x - (x @ basis) @ basis.T
    return float(1.0 - np.sum(residual**2) / total)


def compute_prediction_explained_variance(x: np.ndarray, y: np.ndarray, components: int) -> float:
    """The share of the variance of y (frames, features) about its mean that the best
    linear prediction of rank `components` from x (the same frames' inputs) explains:
    the yardstick for a time-lagged model, whose decoder predicts the frames `lag`
    later. Reduced-rank regression: y is fitted by least squares on x's leading
    principal components (at most max(components, frames // 10) of them, so that the
    fit on few frames does not learn their noise), and the fitted values are cut to
    their first `components` principal components. With y = x it is PCA's share.
    nan when y does not vary."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    total = float(np.sum(y**2))
    if total <= 0:
        return float("nan")
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    rank = int(np.sum(s > s[0] * 1e-8)) if len(s) and s[0] > 0 else 0
    basis = u[:, : min(rank, max(components, len(x) // 10))]  # orthonormal columns
    fitted = basis @ (basis.T @ y)  # the least-squares fit; y - fitted is orthogonal to it
    # the rank-k cut of the fit explains the squares of its first k singular values
    singular = np.linalg.svd(fitted, compute_uv=False) ** 2
    return float(singular[:components].sum() / total)
