"""Plain feature tables (frames, features): what a features model trains on and gives.

Read: .npy, .npz (one array, or key `arr`, or --key) and .csv (numbers only, an
optional header row of names). A 1-D array is one feature per frame. No alignment and
no structure: the columns are whatever the user measured (one-hot classes, dihedrals,
curve values, ...).
Write: .npy, .npz (key `arr`) or .csv, atomically.
"""

from __future__ import annotations

import csv
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from vaetraj.errors import BadInputError, NumericalError, UsageError
from vaetraj.io._atomic import atomic_output, check_output
from vaetraj.io._paths import require_input

FEATURE_SUFFIXES = (".npy", ".npz", ".csv")


def _check_suffix(path: Path, what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in FEATURE_SUFFIXES:
        raise UsageError(
            f"{what} must be .npy, .npz or .csv, got '{path.suffix or path.name}'", path=path
        )
    return suffix


def _read_csv(path: Path) -> np.ndarray:
    with open(path, newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if rows:
        try:
            [float(value) for value in rows[0]]
        except ValueError:
            rows = rows[1:]  # a header of column names
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise BadInputError(f"rows have different numbers of columns {sorted(widths)}", path=path)
    try:
        return np.array([[float(value) for value in row] for row in rows], dtype=np.float64)
    except ValueError as error:
        raise BadInputError(f"not a table of numbers ({error})", path=path) from None


def _read_npz(path: Path, key: str | None) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if key is None:
                if len(names) == 1:
                    key = names[0]
                elif "arr" in names:
                    key = "arr"
                elif not names:
                    raise BadInputError("the .npz archive holds no arrays", path=path)
                else:
                    raise UsageError(
                        f"holds several arrays ({', '.join(names)}): choose one with --key",
                        path=path,
                    )
            if key not in names:
                raise UsageError(f"no array '{key}' (it holds: {', '.join(names)})", path=path)
            return archive[key]
    except (zipfile.BadZipFile, EOFError) as error:
        raise BadInputError(f"not a readable .npz archive ({error})", path=path) from None


def read_features(path: str | os.PathLike, *, key: str | None = None) -> np.ndarray:
    """The (frames, features) float32 table in `path`, checked whole and finite."""
    path = Path(path)
    suffix = _check_suffix(path, "a feature table")
    require_input(path)
    try:
        if suffix == ".csv":
            table = _read_csv(path)
        elif suffix == ".npz":
            table = _read_npz(path, key)
        else:
            table = np.load(path, allow_pickle=False)
    except ValueError as error:  # truncated .npy, pickled objects, bad header
        raise BadInputError(f"not a readable array ({error})", path=path) from None
    except OSError as error:
        raise BadInputError(f"cannot read ({error})", path=path) from None
    if not (np.issubdtype(table.dtype, np.floating) or np.issubdtype(table.dtype, np.integer)):
        raise BadInputError(f"has dtype {table.dtype}, expected real numbers", path=path)
    if table.ndim == 1:
        table = table[:, None]
    if table.ndim != 2:
        raise BadInputError(
            f"has shape {table.shape}, expected a table (frames, features)", path=path
        )
    if table.shape[0] == 0 or table.shape[1] == 0:
        raise BadInputError(f"is empty (shape {table.shape})", path=path)
    finite = np.isfinite(table)
    if not finite.all():
        row, column = np.argwhere(~finite)[0]
        raise BadInputError(f"non-finite value at row {row}, column {column}", path=path)
    return table.astype(np.float32)


def describe_table(path: str | os.PathLike, table: np.ndarray) -> dict:
    """Provenance of a table read from `path`: path, format, frames, features, SHA-256."""
    from vaetraj.io._hash import compute_sha256

    path = Path(path)
    return {
        "path": str(path.resolve()),
        "format": path.suffix.lower()[1:],
        "frames": int(table.shape[0]),
        "features": int(table.shape[1]),
        "sha256": compute_sha256(path),
    }


def check_features_output(
    path: str | os.PathLike, *, overwrite: bool, inputs: Iterable[str | os.PathLike | None] = ()
) -> Path:
    path = Path(path)
    _check_suffix(path, "a feature output")
    return check_output(path, overwrite=overwrite, inputs=inputs)


def write_features(path: str | os.PathLike, table: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write (frames, features) atomically; non-finite values are a numerical failure."""
    path = check_features_output(path, overwrite=overwrite)
    table = np.asarray(table, np.float32)
    if not np.isfinite(table).all():
        raise NumericalError("the model gave non-finite values; nothing was written", path=path)
    suffix = path.suffix.lower()
    with atomic_output(path, overwrite=overwrite) as tmp:
        if suffix == ".csv":
            with open(tmp, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow([f"f{i}" for i in range(table.shape[1])])
                writer.writerows(table.tolist())
        else:
            with open(tmp, "wb") as handle:
                if suffix == ".npz":
                    np.savez(handle, arr=table)
                else:
                    np.save(handle, table)
    return path
