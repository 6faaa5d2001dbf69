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


def working_float(*arrays: np.ndarray) -> type:
    """The precision running sums square in: float32 when every operand is float32
    (squares in float32, summed in float64: 3x faster than float64 copies and equal to
    them to float32 rounding), else float64 (float64 data keep float64 squares)."""
    return np.float32 if np.result_type(*arrays) == np.float32 else np.float64


def summed_squares(scratch: np.ndarray, axis: int | None = None) -> np.ndarray:
    """The sum of `scratch`**2 over `axis` in float64; `scratch` (a temporary of the
    caller's) is squared in place, so no second copy is made."""
    np.square(scratch, out=scratch)
    return scratch.sum(axis=axis, dtype=np.float64)


class Moments:
    """Running mean and std per feature over chunks of rows (rows, features): each
    chunk's mean and squared deviations summed in float64, merged into the total by
    Chan's formula."""

    def __init__(self, features: int):
        self.count = 0
        self.mean = np.zeros(features)
        self.m2 = np.zeros(features)

    def add(self, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        chunk_mean = np.mean(rows, axis=0, dtype=np.float64)
        # float32 rows: deviations from the mean rounded to float32, squared in float32,
        # summed in float64 and corrected for that rounding: a float64 pass's std to
        # float32 rounding (the normalization is stored in float32), at half its cost
        # and with no float64 copy of the chunk
        kind = working_float(rows)
        deviation = np.subtract(rows, chunk_mean.astype(kind), dtype=kind)
        first = deviation.sum(axis=0, dtype=np.float64)
        chunk_m2 = summed_squares(deviation, axis=0) - first**2 / len(rows)
        delta, total = chunk_mean - self.mean, self.count + len(rows)
        self.mean = self.mean + delta * (len(rows) / total)
        self.m2 = self.m2 + np.maximum(chunk_m2, 0.0) + delta**2 * (self.count * len(rows) / total)
        self.count = total

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) of the rows added so far."""
        return self.mean, np.sqrt(self.m2 / max(self.count, 1))


def compute_moments(
    x: np.ndarray, index: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (features,) of the rows of x (rows, features), or of `index`'s rows,
    in float64, chunk by chunk (`Moments`): memory stays at a chunk's whatever the rows,
    with no float64 copy of the whole."""
    rows = np.arange(len(x)) if index is None else np.asarray(index)
    moments = Moments(x.shape[1])
    for start in range(0, len(rows), _CHUNK):
        moments.add(x[rows[start : start + _CHUNK]])
    return moments.result()


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
