"""Per-feature standardization, stored with the model."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Normalization(NamedTuple):
    """x_normalized = (x - mean) / std per feature; a constant feature gets std 1."""

    mean: np.ndarray  # (features,) float32
    std: np.ndarray  # (features,) float32


MIN_RELATIVE_STD = 1e-6
_CHUNK = 65_536  # rows per pass of the moments, in float64


def compute_moments(
    x: np.ndarray, index: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (features,) of the rows of x (rows, features), or of `index`'s rows,
    in float64, chunk by chunk (Chan's merge of per-chunk means and squared deviations):
    memory stays at a chunk's whatever the rows, with no float64 copy of the whole."""
    rows = np.arange(len(x)) if index is None else np.asarray(index)
    count, mean, m2 = 0, np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for start in range(0, len(rows), _CHUNK):
        part = rows[start : start + _CHUNK]
        chunk = np.asarray(x[part], np.float64)
        chunk_mean = chunk.mean(axis=0)
        chunk_m2 = ((chunk - chunk_mean) ** 2).sum(axis=0)
        delta, total = chunk_mean - mean, count + len(chunk)
        mean = mean + delta * (len(chunk) / total)
        m2 = m2 + chunk_m2 + delta**2 * (count * len(chunk) / total)
        count = total
    return mean, np.sqrt(m2 / max(count, 1))


def fit_normalization(
    x: np.ndarray,
    *,
    index: np.ndarray | None = None,
    min_relative_std: float = MIN_RELATIVE_STD,
) -> Normalization:
    """Mean and std per feature of x (frames, features), in float64 for the sums.

    A feature whose std is below min_relative_std times the largest (zero-variance, e.g.
    a coordinate that alignment pins) is only centred: dividing by ~0 would blow up
    rounding noise into the largest feature of all.
    """
    return normalization_from_moments(*compute_moments(np.asarray(x), index), min_relative_std)[0]


def normalization_from_moments(
    mean: np.ndarray, spread: np.ndarray, min_relative_std: float = MIN_RELATIVE_STD
) -> tuple[Normalization, np.ndarray]:
    """The normalization of features with this mean and std, and the mask of the
    constant ones (only centred)."""
    constant = spread <= min_relative_std * max(float(spread.max()), np.finfo(np.float32).tiny)
    std = np.where(constant, 1.0, spread)
    return Normalization(mean.astype(np.float32), std.astype(np.float32)), constant
