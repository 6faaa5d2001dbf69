"""The aligned-trajectory HDF5 file (format `vaetraj-aligned`, version 1).

Layout: /xyz (frames, atoms, dims) float32; /rmsd (frames,) float32; /ambiguous
(frames,) bool (principal only); /atom_indices (atoms,) int64, into the original files;
/masses (atoms,) float64 (when the topology gives them); /reference (atoms, dims) float32,
centred (the structure frames were fitted to; kabsch only). Attributes: format,
format_version, units, method, reference (description), weights, config (JSON),
topology (JSON, when known), sources (JSON list of path, format, frames, sha256),
summary (JSON), vaetraj_version, created, frame_time_ps (ps between the frames kept,
when the inputs or --frame-time gave it).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from vaetraj._lazy import mdtraj as md
from vaetraj._memory import empty_aligned
from vaetraj._version import __version__
from vaetraj.errors import BadInputError, WriteError
from vaetraj.io._atomic import require_space
from vaetraj.io._paths import require_input
from vaetraj.io._schema import (
    Attr,
    Data,
    Fields,
    check_format,
    check_values,
    read_fields,
    refuse_non_finite_output,
)
from vaetraj.io.topology import checked_topology

ALIGNED_FORMAT = "vaetraj-aligned"
ALIGNED_FORMAT_VERSION = 1
_WHAT = "damaged aligned file"
_ATTRS = (
    Attr("units", "text"),
    Attr("method", "text"),
    Attr("reference", "text"),
    Attr("weights", "text"),
    Attr("config", "object", required=False),
    Attr("read_options", "object", required=False),
    Attr("sources", "list"),
    Attr("summary", "object"),
    Attr("topology", "object", required=False),
    Attr("created", "text", required=False),
    Attr("vaetraj_version", "text"),
    Attr("frame_time_ps", "positive", required=False),
)
_XYZ = Data("xyz", "float", ("frames", "atoms", "dims"), load=False)
_DATA = (
    _XYZ,
    Data("rmsd", "float", ("frames",)),
    Data("ambiguous", "bool", ("frames",), required=False),
    Data("atom_indices", "int", ("atoms",), nonnegative=True),
    Data("masses", "float", ("atoms",), required=False, positive=True),
    Data("reference", "float", ("atoms", "dims"), required=False),
)


class AlignedWriter:
    """Appends aligned blocks to an HDF5 file. Any OSError from h5py is a write error."""

    def __init__(
        self, path: Path, *, atoms: int, dims: int, with_ambiguous: bool, final_path: Path
    ):
        self.final_path = Path(final_path)
        self.frames = 0
        block = max(1, min(4096, (1 << 20) // (atoms * dims * 4)))
        with self._guard():
            self.handle = h5py.File(path, "w")
            self.xyz = self.handle.create_dataset(
                "xyz",
                shape=(0, atoms, dims),
                maxshape=(None, atoms, dims),
                dtype="f4",
                chunks=(block, atoms, dims),
            )
            self.rmsd = self.handle.create_dataset(
                "rmsd", shape=(0,), maxshape=(None,), dtype="f4", chunks=(max(block, 1024),)
            )
            self.ambiguous = (
                self.handle.create_dataset(
                    "ambiguous",
                    shape=(0,),
                    maxshape=(None,),
                    dtype=bool,
                    chunks=(max(block, 1024),),
                )
                if with_ambiguous
                else None
            )

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            raise WriteError(f"write failed: {error}", path=self.final_path) from None

    def append(self, xyz: np.ndarray, rmsd: np.ndarray, ambiguous: np.ndarray | None) -> None:
        """Append a block; a non-finite value is a NumericalError, never written."""
        count = xyz.shape[0]
        refuse_non_finite_output({"coordinate": xyz, "RMSD": rmsd}, self.frames, self.final_path)
        end = self.frames + count
        require_space(
            self.final_path, 2 * (xyz.nbytes + rmsd.nbytes)
        )  # HDF5 cannot meet a full disk
        with self._guard():
            self.xyz.resize(end, axis=0)
            self.xyz[self.frames : end] = xyz
            self.rmsd.resize(end, axis=0)
            self.rmsd[self.frames : end] = rmsd
            if self.ambiguous is not None:
                self.ambiguous.resize(end, axis=0)
                self.ambiguous[self.frames : end] = ambiguous
        self.frames = end

    def finish(self, *, attrs: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        with self._guard():
            for name, value in arrays.items():
                self.handle.create_dataset(name, data=value)
            self.handle.attrs["format"] = ALIGNED_FORMAT
            self.handle.attrs["format_version"] = ALIGNED_FORMAT_VERSION
            self.handle.attrs["vaetraj_version"] = __version__
            for name, value in attrs.items():
                if value is None:
                    continue
                self.handle.attrs[name] = (
                    value if isinstance(value, (str, int, float)) else json.dumps(value)
                )
            self.handle.flush()
            self.handle.close()

    def close(self) -> None:
        if self.handle.id.valid:
            self.handle.close()


@dataclass(frozen=True)
class AlignedData:
    """An aligned file read into memory."""

    xyz: np.ndarray
    rmsd: np.ndarray | None
    atom_indices: np.ndarray | None
    masses: np.ndarray | None
    reference: np.ndarray | None
    attrs: dict[str, Any]

    @property
    def method(self) -> str:
        return str(self.attrs.get("method"))


def check_aligned(handle: h5py.File, path: Path) -> tuple[Fields, md.Topology | None]:
    """Every field of an open aligned file but the frames themselves, checked: the
    format, its version, kinds, shapes and the topology. /xyz is checked for its kind
    and shape; its values are checked as they are read. Returns the fields and the
    topology the file stores (None if it stores none)."""
    check_format(
        handle.attrs, path, name=ALIGNED_FORMAT, what="aligned file", newest=ALIGNED_FORMAT_VERSION
    )
    fields = read_fields(handle, _ATTRS, _DATA, path=path, what=_WHAT)
    if fields.dims["dims"] not in (2, 3):
        raise BadInputError(
            f"{_WHAT}: /xyz has {fields.dims['dims']} coordinates per atom, expected 2 or 3",
            path=path,
        )
    if fields.attrs["method"] == "kabsch" and "reference" not in fields.arrays:
        raise BadInputError(f"{_WHAT}: a kabsch file needs /reference", path=path)
    topology = None
    if "topology" in fields.attrs:
        topology = checked_topology(
            handle.attrs["topology"], atoms=fields.dims["atoms"], path=path, what=_WHAT
        )
    return fields, topology


_BLOCK_BYTES = 8 << 20  # at most this much is read at once from a FrameFile


class FrameFile:
    """The frames of an aligned file, read on demand: data larger than memory.

    Indexed like the (frames, atoms, dims) array it stands for, by an int, a slice or
    an array of frame indices (read as contiguous spans of at most _BLOCK_BYTES, so
    sorted indices cost about a read of their span); `reshape(frames, -1)` gives the
    flat (frames, features) view. Every value was checked finite when it was opened.
    The file stays open until `close`."""

    def __init__(self, path: Path, handle: h5py.File, flat: bool = False):
        self.path, self.handle, self.flat = path, handle, flat
        self.stored = handle["xyz"]
        frames, atoms, dims = self.stored.shape
        self.shape = (frames, atoms * dims) if flat else (frames, atoms, dims)
        self.dtype = np.dtype(np.float32)
        self.chunk_rows = int(self.stored.chunks[0]) if self.stored.chunks else 1024
        self.block_rows = max(1, _BLOCK_BYTES // max(1, atoms * dims * 4))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * 4

    def __len__(self) -> int:
        return self.shape[0]

    def reshape(self, frames: int, rest: int = -1) -> FrameFile:
        assert frames == len(self) and rest == -1, "only the flat (frames, -1) view"
        return FrameFile(self.path, self.handle, flat=True)

    def _shaped(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, np.float32)
        return block.reshape(len(block), -1) if self.flat else block

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            if isinstance(key, (slice, int, np.integer)):
                value = np.asarray(self.stored[key], np.float32)
                return value.reshape(-1) if self.flat and value.ndim == 2 else self._shaped(value)
            return self._take(np.asarray(key))
        except OSError as error:
            raise BadInputError(f"cannot read HDF5 file ({error})", path=self.path) from None

    def _take(self, rows: np.ndarray) -> np.ndarray:
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        taken = np.empty((len(rows), *self.stored.shape[1:]), np.float32)
        start = 0
        while start < len(ordered):
            first = ordered[start]
            stop = int(np.searchsorted(ordered, first + self.block_rows))
            span = self.stored[int(first) : int(ordered[stop - 1]) + 1]
            taken[order[start:stop]] = span[ordered[start:stop] - first]
            start = stop
        return self._shaped(taken)

    def close(self) -> None:
        if self.handle.id.valid:
            self.handle.close()


def _check_frames_finite(frames: FrameFile) -> None:
    """Every coordinate finite, checked block by block (the first bad one is named)."""
    for start in range(0, len(frames), frames.block_rows):
        block = frames[start : start + frames.block_rows]
        check_values(block, _XYZ, frames.path, _WHAT, first=start)


def _open(path: Path) -> h5py.File:
    """The aligned file open for reading; a missing or unreadable one is refused."""
    require_input(path)
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise BadInputError(f"cannot read HDF5 file ({error})", path=path) from None


def _aligned_data(xyz: np.ndarray, fields: Fields) -> AlignedData:
    """An AlignedData of the frames and the checked fields."""
    return AlignedData(
        xyz=xyz,
        rmsd=fields.arrays["rmsd"],
        atom_indices=fields.arrays["atom_indices"],
        masses=fields.arrays.get("masses"),
        reference=fields.arrays.get("reference"),
        attrs=fields.attrs,
    )


def open_aligned(path: str | os.PathLike) -> AlignedData:
    """An aligned file with its frames left on disk (`FrameFile`, read on demand), every
    field checked as `read_aligned` checks it. Close `xyz` when done.

    Args:
        path: an `.h5` written by `align_file` or `vaetraj align`.

    Returns:
        The fields, with `xyz` a `FrameFile`.

    Raises:
        BadInputError: the file is damaged (naming the file and the field).
    """
    path = Path(path)
    handle = _open(path)
    try:
        fields, _ = check_aligned(handle, path)
        frames = FrameFile(path, handle)
        _check_frames_finite(frames)
    except BaseException:
        handle.close()
        raise
    return _aligned_data(frames, fields)  # type: ignore[arg-type]


def read_aligned(path: str | os.PathLike) -> AlignedData:
    """Read a whole aligned file, every field checked.

    Args:
        path: an `.h5` written by `align_file` or `vaetraj align`.

    Returns:
        The frames, atom indices, reference, masses and attributes.

    Raises:
        BadInputError: the file is damaged (naming the file and the field).
    """
    path = Path(path)
    try:
        with _open(path) as handle:
            fields, _ = check_aligned(handle, path)
            stored = handle["xyz"]
            xyz = empty_aligned(stored.shape)  # training can use it as is (no copy)
            if xyz.size:
                stored.read_direct(xyz)
    except OSError as error:
        raise BadInputError(f"cannot read HDF5 file ({error})", path=path) from None
    check_values(xyz, _XYZ, path, _WHAT)
    return _aligned_data(xyz, fields)


def aligned_frame_bytes(path: str | os.PathLike) -> int:
    """The bytes of an aligned file's frames as float32 in memory (0 when unreadable:
    reading it then names the problem)."""
    try:
        with h5py.File(path, "r") as handle:
            return int(np.prod(handle["xyz"].shape, dtype=np.int64)) * 4
    except (OSError, KeyError, TypeError):
        return 0


def is_aligned_file(path: str | os.PathLike) -> bool:
    """Whether `path` is an HDF5 file that `align` wrote (by its format attribute)."""
    try:
        with h5py.File(path, "r") as handle:
            return handle.attrs.get("format") == ALIGNED_FORMAT
    except OSError:
        return False
