"""Per-feature standardization, stored with the model."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Normalization(NamedTuple):
    """x_normalized = (x - mean) / std per feature; a constant feature gets std 1."""

    mean: np.ndarray  # (features,) float32
    std: np.ndarray  # (features,) float32


MIN_RELATIVE_STD = 1e-6


def find_constant_features(
    x: np.ndarray, *, min_relative_std: float = MIN_RELATIVE_STD
) -> np.ndarray:
    """Mask (features,) of the features whose std over frames is below min_relative_std
    times the largest."""
    std = np.asarray(x, dtype=np.float64).std(axis=0)
    return std <= min_relative_std * max(float(std.max()), np.finfo(np.float32).tiny)


def fit_normalization(
    x: np.ndarray, *, min_relative_std: float = MIN_RELATIVE_STD
) -> Normalization:
    """Mean and std per feature of x (frames, features), in float64 for the sums.

    A feature whose std is below min_relative_std times the largest (zero-variance, e.g.
    a coordinate that alignment pins) is only centred: dividing by ~0 would blow up
    rounding noise into the largest feature of all.
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    constant = find_constant_features(x, min_relative_std=min_relative_std)
    std = np.where(constant, 1.0, x.std(axis=0))
    return Normalization(mean.astype(np.float32), std.astype(np.float32))
