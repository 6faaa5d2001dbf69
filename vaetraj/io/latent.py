"""Latent paths (format `vaetraj-latent`, version 1) and latent points read for decoding.

A latent path is written while frames are encoded, chunk by chunk:
  .h5   /mean, /std (frames, latent) float32, and per-frame extras such as /rg and
        /recon_rmsd (frames,); /trajectory (frames,): the number (0, 1, ...) of the
        input file each frame came from, so that what reads the path (a Markov model,
        time-lagged pairs) never joins the end of one trajectory to the next; attrs
        format, format_version, latent_dim, units, model (JSON: path, SHA-256, data
        SHA-256), sources (JSON: path, format, frames, SHA-256), stride,
        frame_time_ps (ps between the frames kept, when the inputs or --frame-time
        gave it), vaetraj_version, created. Streamed: memory stays bounded.
  .csv  one row per frame: mean_0..mean_{d-1}, std_0..std_{d-1}, then the extras.
        Streamed too.
  .npz  the same arrays by name; held in memory until the end (latent paths are
        small: 16 bytes per frame for a 2D latent space).
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from vaetraj._version import __version__
from vaetraj.errors import (
    BadInputError,
    UsageError,
    VaetrajWarning,
    WriteError,
)
from vaetraj.io._atomic import describe_os_error, require_space
from vaetraj.io._paths import require_input
from vaetraj.io._schema import (
    ArrayGroup,
    Attr,
    Data,
    check_format,
    read_dataset,
    read_fields,
    refuse_non_finite_output,
)

LATENT_FORMAT = "vaetraj-latent"
LATENT_FORMAT_VERSION = 1
LATENT_SUFFIXES = (".h5", ".hdf5", ".npz", ".csv")


def check_latent_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in LATENT_SUFFIXES:
        raise UsageError(
            f"latent output must be .h5, .npz or .csv, got '{path.suffix or path.name}'",
            path=path,
        )
    return suffix


class LatentWriter:
    """Appends per-frame columns (mean, std and extras) to a latent file at `path` (a
    temporary file; `final_path` names errors). Call `finish(attrs)` once at the end."""

    def __init__(self, path: Path, *, suffix: str, latent_dim: int, extras: list[str], final_path):
        self.path, self.suffix, self.final_path = path, suffix, final_path
        self.latent_dim, self.extras = latent_dim, list(extras)
        self.frames = 0
        self._parts: dict[str, list[np.ndarray]] = {}
        try:
            if suffix in (".h5", ".hdf5"):
                self._h5 = h5py.File(path, "w")
                for name in ("mean", "std"):
                    self._h5.create_dataset(
                        name,
                        (0, latent_dim),
                        maxshape=(None, latent_dim),
                        dtype="f4",
                        chunks=(4096, latent_dim),
                    )
                for name in self.extras:
                    self._h5.create_dataset(
                        name, (0,), maxshape=(None,), dtype="f4", chunks=(4096,)
                    )
            elif suffix == ".csv":
                self._csv_handle = open(path, "w", newline="")
                self._csv = csv.writer(self._csv_handle)
                self._csv.writerow(
                    [f"mean_{i}" for i in range(latent_dim)]
                    + [f"std_{i}" for i in range(latent_dim)]
                    + self.extras
                )
        except OSError as error:
            raise WriteError(describe_os_error(error), path=final_path) from None

    def append(self, columns: dict[str, np.ndarray]) -> None:
        """Append frames; a non-finite value is a NumericalError, never written."""
        count = len(columns["mean"])
        refuse_non_finite_output(columns, self.frames, self.final_path)
        if self.suffix in (".h5", ".hdf5"):  # HDF5 cannot meet a full disk: stop before
            require_space(
                Path(self.final_path), 2 * sum(np.asarray(v).nbytes for v in columns.values())
            )
        try:
            if self.suffix in (".h5", ".hdf5"):
                end = self.frames + count
                for name, values in columns.items():
                    dataset = self._h5[name]
                    dataset.resize(end, axis=0)
                    dataset[self.frames : end] = values
            elif self.suffix == ".csv":
                table = np.column_stack(
                    [columns["mean"], columns["std"], *(columns[n] for n in self.extras)]
                )
                self._csv.writerows(table.tolist())
            else:
                for name, values in columns.items():
                    self._parts.setdefault(name, []).append(np.asarray(values, np.float32))
        except OSError as error:
            raise WriteError(describe_os_error(error), path=self.final_path) from None
        self.frames += count

    def finish(self, attrs: dict[str, Any]) -> None:
        attrs = {
            "format": LATENT_FORMAT,
            "format_version": LATENT_FORMAT_VERSION,
            "latent_dim": self.latent_dim,
            "vaetraj_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **{name: value for name, value in attrs.items() if value is not None},
        }
        try:
            if self.suffix in (".h5", ".hdf5"):
                for name, value in attrs.items():
                    self._h5.attrs[name] = (
                        value if isinstance(value, (str, int, float)) else json.dumps(value)
                    )
                self._h5.close()
            elif self.suffix == ".csv":
                self._csv_handle.close()
            else:
                arrays = {name: np.concatenate(parts) for name, parts in self._parts.items()} or {
                    "mean": np.zeros((0, self.latent_dim), np.float32),
                    "std": np.zeros((0, self.latent_dim), np.float32),
                }
                with open(self.path, "wb") as handle:
                    arrays["attrs"] = np.asarray(json.dumps(attrs))
                    np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy stubs: allow_pickle
        except OSError as error:
            raise WriteError(describe_os_error(error), path=self.final_path) from None

    def close(self) -> None:
        """Release handles after a failure (finish closes them on success)."""
        if getattr(self, "_h5", None) is not None and self._h5.id.valid:
            self._h5.close()
        if getattr(self, "_csv_handle", None) is not None and not self._csv_handle.closed:
            self._csv_handle.close()


@dataclass(frozen=True)
class LatentData:
    """A latent file in memory: mean (frames, latent); std or None; extras by name."""

    mean: np.ndarray
    std: np.ndarray | None
    extras: dict[str, np.ndarray]
    attrs: dict[str, Any]

    @property
    def frame_time_ps(self) -> float | None:
        """ps between consecutive frames, when the encoded inputs recorded it."""
        return self.attrs.get("frame_time_ps")

    @property
    def trajectory_lengths(self) -> list[int]:
        """Frames of each trajectory (input file) in order. From the /trajectory column
        (checked when read); a file written before it had one: from its sources'
        frame counts and stride when they add up, else one trajectory."""
        column = self.extras.get("trajectory")
        if column is not None:
            per_file = np.bincount(column.astype(np.int64))
            return [int(n) for n in per_file if n > 0]
        stride = self.attrs.get("stride", 1)
        frames = [s.get("frames") for s in self.attrs.get("sources", []) if isinstance(s, dict)]
        counts = [n for n in frames if isinstance(n, int)]
        if counts and len(counts) == len(frames) and isinstance(stride, int):
            lengths = [-(-n // stride) for n in counts]
            if sum(lengths) == len(self.mean) and all(lengths):
                return lengths
        return [len(self.mean)]


def _exists(path: Path) -> None:
    require_input(path)


_WHAT = "damaged latent file"
_ATTRS = (
    Attr("latent_dim", "int", dim="latent", minimum=1),
    Attr("units", "text"),
    Attr("model", "object"),
    Attr("sources", "list"),
    Attr("stride", "int", required=False, minimum=1),
    Attr("frame_time_ps", "positive", required=False),
    Attr("created", "text", required=False),
    Attr("vaetraj_version", "text", required=False),
)
_MEAN = Data("mean", "float", ("frames", "latent"))
_STD = Data("std", "float", ("frames", "latent"), required=False, positive=True)


def _checked(group, path: Path, attrs: tuple[Attr, ...]) -> LatentData:
    """mean, std and the per-frame extras, every one checked (see `_schema`)."""
    fields = read_fields(group, attrs, (_MEAN, _STD), path=path, what=_WHAT)
    extras: dict[str, np.ndarray] = {}
    for name in group:
        if name not in ("mean", "std", "attrs"):
            values = read_dataset(group, Data(name, "float", ("frames",)), path, _WHAT, fields.dims)
            assert values is not None  # a required dataset
            extras[name] = values
    if "trajectory" in extras:
        _check_trajectory_column(extras["trajectory"], path)
    return LatentData(
        mean=fields.arrays["mean"].astype(np.float32),
        std=fields.arrays.get("std"),
        extras=extras,
        attrs=fields.attrs,
    )


def _check_trajectory_column(numbers: np.ndarray, path: Path) -> None:
    """The input-file numbers count up from 0 in whole steps, frame by frame."""
    steps = np.diff(numbers)
    bad = (numbers != np.round(numbers)) | (numbers < 0)
    bad[1:] |= steps < 0
    if len(numbers) and numbers[0] != 0:
        bad[0] = True
    if bad.any():
        frame = int(np.argmax(bad))
        raise BadInputError(
            f"{_WHAT}: trajectory[{frame}] is {numbers[frame]:g}; the input-file numbers "
            f"must be whole and count up from 0",
            path=path,
        )


def _check_format(attrs, path: Path) -> None:
    check_format(attrs, path, name=LATENT_FORMAT, what="latent file", newest=LATENT_FORMAT_VERSION)


def read_latent(path: str | os.PathLike) -> LatentData:
    """Read a latent path written by `vaetraj encode`, every field checked.

    Args:
        path: an `.h5`, `.npz` or `.csv` from `encode`.

    Returns:
        The means, stds, extra columns (R_g, RMSD) and attributes.

    Raises:
        BadInputError: the file is damaged (naming the file and the field).
    """
    path = Path(path)
    _exists(path)
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        try:
            with h5py.File(path, "r") as handle:
                _check_format(handle.attrs, path)
                return _checked(handle, path, _ATTRS)
        except OSError as error:
            raise BadInputError(f"cannot read HDF5 file ({error})", path=path) from None
    if suffix == ".npz":
        arrays = _read_npz(path)
        if "attrs" not in arrays:
            raise BadInputError(f"{_WHAT}: missing /attrs", path=path)
        try:
            attrs = json.loads(str(arrays["attrs"]))
        except ValueError:
            raise BadInputError(f"{_WHAT}: /attrs is not valid JSON", path=path) from None
        if not isinstance(attrs, dict):
            raise BadInputError(f"{_WHAT}: /attrs is not a JSON object", path=path)
        group = ArrayGroup(arrays, attrs)
        _check_format(attrs, path)
        return _checked(group, path, _ATTRS)
    if suffix == ".csv":
        arrays = _read_csv_columns(path)
        means = sorted((n for n in arrays if n.startswith("mean_")), key=_column_number)
        stds = sorted((n for n in arrays if n.startswith("std_")), key=_column_number)
        if not means:
            raise BadInputError("no mean_0, mean_1, ... columns: not a latent path", path=path)
        if stds and len(stds) != len(means):
            raise BadInputError(
                f"{_WHAT}: {len(means)} mean_ but {len(stds)} std_ columns", path=path
            )
        table = {"mean": np.column_stack([arrays.pop(n) for n in means]).astype(np.float32)}
        if stds:
            table["std"] = np.column_stack([arrays.pop(n) for n in stds]).astype(np.float32)
        for name, values in arrays.items():
            table[name] = values.astype(np.float32)
        latent = Attr("latent_dim", "int", dim="latent")
        return _checked(ArrayGroup(table, {"latent_dim": len(means)}), path, (latent,))
    raise UsageError(f"a latent path is .h5, .npz or .csv, got '{path.suffix}'", path=path)


def warn_if_encoded_by_another(latent: LatentData, path: Path, model: Path) -> None:
    """Warn when a latent file records another model file than `model` (by SHA-256):
    its points mean nothing to another network's decoder, even where the latent sizes
    agree. A warning, not a refusal: the same network in a file rewritten (an older
    file's missing field, a copy with attributes added) hashes differently too. Files
    that record no hash are taken as they are."""
    import warnings

    from vaetraj.io._hash import compute_sha256

    recorded = latent.attrs.get("model")
    digest = recorded.get("sha256") if isinstance(recorded, dict) else None
    if isinstance(digest, str) and digest and digest != compute_sha256(model):
        where = recorded.get("path", "unknown path") if isinstance(recorded, dict) else ""
        warnings.warn(
            f"{path}: encoded by another model file ({where}, SHA-256 {digest[:12]}...), "
            f"not {model}: unless it is the same network, encode the frames again with it",
            VaetrajWarning,
            stacklevel=3,
        )


def _column_number(name: str) -> int:
    try:
        return int(name.split("_", 1)[1])
    except ValueError:
        return -1


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as error:
        raise BadInputError(f"cannot read .npz ({error})", path=path) from None


def _read_csv_columns(path: Path) -> dict[str, np.ndarray]:
    """Columns of a CSV file with a header row, as float arrays by name."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError) as error:
        raise BadInputError(f"cannot read CSV ({error})", path=path) from None
    if not rows:
        raise BadInputError("empty CSV file", path=path)
    header, body = rows[0], [row for row in rows[1:] if row]
    try:
        table = np.asarray(body, dtype=np.float64).reshape(len(body), len(header))
    except ValueError:
        raise BadInputError(
            "CSV rows must all be numbers, one per header column", path=path
        ) from None
    return {name.strip(): table[:, i] for i, name in enumerate(header)}


def _npz_points(path: Path, key: str | None) -> np.ndarray:
    arrays = _read_npz(path)
    if key is None and "attrs" in arrays:  # an encode output: every field checked
        return read_latent(path).mean
    arrays.pop("attrs", None)
    if key is not None:
        if key not in arrays:
            raise BadInputError(f"no array '{key}' (it has {', '.join(arrays)})", path=path)
        return arrays[key]
    if "mean" in arrays:
        return arrays["mean"]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    raise UsageError(
        f"holds several arrays ({', '.join(arrays)}); choose one with --key", path=path
    )


def _npy_points(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise BadInputError(f"cannot read .npy ({error})", path=path) from None


def _csv_points(path: Path) -> np.ndarray:
    points = _read_csv_points(path)
    if points is None:  # an encode output (mean_0, ... columns): every field checked
        return read_latent(path).mean
    return points


def _checked_points(points: np.ndarray, path: Path) -> np.ndarray:
    """(points, latent) float32, numbers, finite, at least one."""
    points = np.asarray(points)
    if points.dtype.kind not in "fiu":
        raise BadInputError(f"latent points must be numbers, got dtype {points.dtype}", path=path)
    if points.ndim == 1:
        points = points[:, None]
    if points.ndim != 2 or points.shape[0] == 0:
        raise BadInputError(
            f"expected latent points (points, latent), got shape {points.shape}", path=path
        )
    if not np.isfinite(points).all():
        row = int(np.argwhere(~np.isfinite(points))[0, 0])
        raise BadInputError(f"non-finite latent point at row {row}", path=path)
    return points.astype(np.float32)


def read_latent_points(
    path: str | os.PathLike, *, key: str | None = None, model: Path | None = None
) -> np.ndarray:
    """Latent points (points, latent) from an encode output (its mean), a .npy array,
    a .npz array (`key`, or its only array), or a CSV of numbers (with or without a
    header; an encode CSV gives its mean_* columns). With `model`, an encode output
    that another model file encoded gets a warning (`warn_if_encoded_by_another`)."""
    path = Path(path)
    _exists(path)

    def encoded() -> np.ndarray:
        latent = read_latent(path)
        if model is not None:
            warn_if_encoded_by_another(latent, path, model)
        return latent.mean

    readers = {
        ".h5": encoded,
        ".hdf5": encoded,
        ".npy": lambda: _npy_points(path),
        ".npz": lambda: _npz_points(path, key),
        ".csv": lambda: _csv_points(path),
    }
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise UsageError(
            f"latent points are read from .h5, .npz, .npy or .csv, got '{path.suffix}'", path=path
        )
    return _checked_points(reader(), path)


def _read_csv_points(path: Path) -> np.ndarray | None:
    """The numbers of a CSV file (after a header row, if any); None for a latent path
    written by encode (a header of mean_0, ... columns)."""
    try:
        with open(path, newline="") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except (OSError, UnicodeDecodeError) as error:
        raise BadInputError(f"cannot read CSV ({error})", path=path) from None
    if not rows:
        raise BadInputError("empty CSV file", path=path)
    try:
        float(rows[0][0])
    except ValueError:
        if any(name.strip().startswith("mean_") for name in rows[0]):
            return None
        rows = rows[1:]
    try:
        table = np.asarray(rows, dtype=np.float64)
    except ValueError:
        raise BadInputError("CSV rows must all be numbers of the same count", path=path) from None
    if table.ndim != 2:
        raise BadInputError("CSV rows must all have the same number of columns", path=path)
    return table
