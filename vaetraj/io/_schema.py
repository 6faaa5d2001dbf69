"""Checked reads of the HDF5 files vaetraj writes.

Each format declares its fields: attributes (text, integers, JSON) and datasets (a kind
and a shape of named dimensions such as ("frames", "atoms", "dims")). `read_fields`
hands a reader the values only after every field is checked: present when required, of
its kind, of a shape consistent with every other field (a name means the same length
everywhere it appears), finite and positive where it must be. A file that fails is a
`BadInputError` naming the file and the field: a damaged file is one line and exit 65,
never a traceback, and never a NaN written out as if it were a result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from vaetraj._version import __version__
from vaetraj.errors import BadInputError, NumericalError

_JSON_TYPES = {"object": dict, "list": list}
_DATA_KINDS = {"float": "f", "int": "iu", "bool": "b", "number": "fiu"}


@dataclass(frozen=True)
class Attr:
    """An attribute. kind: "text", "int", "positive" (a finite number > 0), or
    "object"/"list" (JSON text of that type).
    dim: an integer attribute that fixes the length of that named dimension."""

    name: str
    kind: str
    required: bool = True
    dim: str | None = None
    minimum: int | None = None


@dataclass(frozen=True)
class Data:
    """A dataset. kind: "float", "int", "bool" or "number"; shape: named dimensions or
    fixed lengths. load=False checks kind and shape only (the frames of a large file,
    checked for finite values as they are streamed)."""

    name: str
    kind: str
    shape: tuple[str | int, ...]
    required: bool = True
    finite: bool = True
    positive: bool = False
    nonnegative: bool = False
    load: bool = True


class ArrayGroup:
    """Arrays and attributes read like an HDF5 group: a .npz archive, a CSV table."""

    def __init__(self, arrays: dict[str, np.ndarray], attrs: dict[str, Any]):
        self._arrays, self.attrs = arrays, attrs

    def __contains__(self, name: str) -> bool:
        return name in self._arrays

    def __getitem__(self, name: str) -> np.ndarray:
        return self._arrays[name]

    def __iter__(self):
        return iter(self._arrays)


@dataclass
class Fields:
    """What `read_fields` found: attribute values (JSON parsed), loaded arrays, and the
    length of every named dimension."""

    attrs: dict[str, Any]
    arrays: dict[str, np.ndarray]
    dims: dict[str, int]


def _fail(path: Path, what: str, problem: str) -> None:
    raise BadInputError(f"{what}: {problem}", path=path)


def check_format(attrs, path: Path, *, name: str, what: str, newest: int, oldest: int = 1):
    """Refuse a file that is not format `name` at a version this vaetraj reads (oldest
    to newest); `what` names the kind of file in the message."""
    found = attrs.get("format")
    if found != name:
        told = f"its format is '{found}'" if found is not None else "no vaetraj format attribute"
        raise BadInputError(f"not a vaetraj {what} ({told})", path=path)
    version = attrs.get("format_version", -1)
    if isinstance(version, np.ndarray) and version.shape == ():
        version = version[()]
    version = int(version) if isinstance(version, (int, np.integer)) else -1
    if not oldest <= version <= newest:
        raise BadInputError(
            f"{what} format version {version} is not one this vaetraj ({__version__}) reads "
            f"(it reads {oldest} to {newest})",
            path=path,
        )


def _number_value(value: Any, spec: Attr, path: Path, what: str) -> int | float:
    """An "int" or "positive" attribute's value, checked."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    boolean = isinstance(value, (bool, np.bool_))
    if spec.kind == "positive":
        number = isinstance(value, (int, float, np.integer, np.floating)) and not boolean
        if not number or not 0 < value < math.inf:
            _fail(path, what, f"attribute '{spec.name}' is {value!r}, expected a positive number")
        return float(value)
    if boolean or not isinstance(value, (int, np.integer)):
        _fail(path, what, f"attribute '{spec.name}' is {value!r}, expected an integer")
    value = int(value)
    if spec.minimum is not None and value < spec.minimum:
        _fail(path, what, f"attribute '{spec.name}' is {value}, expected >= {spec.minimum}")
    return value


def _attr_value(handle: h5py.Group | ArrayGroup, spec: Attr, path: Path, what: str) -> Any:
    value = handle.attrs[spec.name]
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if spec.kind in ("int", "positive"):
        return _number_value(value, spec, path, what)
    if spec.kind in _JSON_TYPES and isinstance(value, _JSON_TYPES[spec.kind]):
        return value  # a .npz keeps its attributes as one JSON record: parsed already
    if not isinstance(value, str):
        _fail(path, what, f"attribute '{spec.name}' is {value!r}, expected text")
    if spec.kind == "text":
        return value
    try:
        parsed = json.loads(value)
    except ValueError:
        _fail(path, what, f"attribute '{spec.name}' is not valid JSON")
    if not isinstance(parsed, _JSON_TYPES[spec.kind]):
        _fail(
            path,
            what,
            f"attribute '{spec.name}' is JSON {type(parsed).__name__}, expected a JSON {spec.kind}",
        )
    return parsed


def _shape_text(shape: Iterable[str | int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _bind(dims: dict[str, int], spec: Data, shape: tuple[int, ...], path: Path, what: str):
    expected = _shape_text(spec.shape)
    if len(shape) != len(spec.shape):
        _fail(path, what, f"/{spec.name} has shape {shape}, expected {expected}")
    for name, length in zip(spec.shape, shape, strict=True):
        if isinstance(name, int):
            known = name
        else:
            known = dims.setdefault(name, length)
        if known != length:
            got = f"{length}" if isinstance(name, int) else f"{name} = {length}"
            _fail(
                path,
                what,
                f"/{spec.name} has shape {shape}, expected {expected} with "
                f"{name if isinstance(name, str) else 'length'} = {known} (not {got})",
            )


def check_values(values: np.ndarray, spec: Data, path: Path, what: str, *, first: int = 0) -> None:
    """Finite / positive / non-negative checks of a dataset's values; `first`: the
    index in the dataset of values[0] (a block of a dataset checked block by block)."""
    if spec.kind in ("float", "number") and spec.finite and values.size:
        bad = ~np.isfinite(values)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            index = [where[0] + first, *where[1:]] if where else []  # [] for a scalar
            _fail(path, what, f"/{spec.name} holds {values[where]} at index {index}")
    if spec.positive and values.size and not (values > 0).all():
        _fail(path, what, f"/{spec.name} must be positive, holds {values.min()}")
    if spec.nonnegative and values.size and not (values >= 0).all():
        _fail(path, what, f"/{spec.name} must not be negative, holds {values.min()}")


def read_dataset(
    handle: h5py.Group | ArrayGroup, spec: Data, path: Path, what: str, dims: dict[str, int]
) -> np.ndarray | None:
    """One dataset, checked; None when it is absent and optional (or load=False)."""
    if spec.name not in handle:
        if spec.required:
            _fail(path, what, f"missing /{spec.name}")
        return None
    dataset = handle[spec.name]
    if isinstance(dataset, h5py.Group):
        _fail(path, what, f"/{spec.name} is a group, expected an array")
    if dataset.dtype.kind not in _DATA_KINDS[spec.kind]:
        _fail(path, what, f"/{spec.name} has dtype {dataset.dtype}, expected {spec.kind}")
    _bind(dims, spec, dataset.shape, path, what)
    if not spec.load:
        return None
    values = dataset[()]
    check_values(values, spec, path, what)
    return values


def read_fields(
    handle: h5py.Group | ArrayGroup,
    attrs: Iterable[Attr],
    data: Iterable[Data],
    *,
    path: Path,
    what: str,
    dims: dict[str, int] | None = None,
) -> Fields:
    """Every declared field of `handle`, checked (see the module docstring). `dims`
    fixes named lengths known beforehand (the model's feature count, say)."""
    dims = dict(dims or {})
    values: dict[str, Any] = {}
    for spec in attrs:
        if spec.name not in handle.attrs:
            if spec.required:
                _fail(path, what, f"missing attribute '{spec.name}'")
            continue
        values[spec.name] = _attr_value(handle, spec, path, what)
        if spec.dim is not None:
            dims[spec.dim] = values[spec.name]
    arrays = {}
    for item in data:
        array = read_dataset(handle, item, path, what, dims)
        if array is not None:
            arrays[item.name] = array
    return Fields(attrs=values, arrays=arrays, dims=dims)


def refuse_non_finite_output(columns: dict[str, np.ndarray], first_frame: int, path) -> None:
    """Before a block of frames is written: a non-finite value is a NumericalError
    (exit 3) naming the frame, and nothing is written."""
    for name, values in columns.items():
        finite = np.isfinite(values)
        if not finite.all():
            frame = first_frame + int(np.argwhere(~finite)[0][0])
            raise NumericalError(
                f"frame {frame} has a non-finite {name}; nothing was written", path=path
            )
