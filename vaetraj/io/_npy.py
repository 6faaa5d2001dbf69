"""Streaming readers for `.npy` files and arrays inside `.npz` archives.

Arrays are read frame block by frame block from the file (or the zip member), never
memory-mapped and never unpickled, so memory stays bounded and object arrays are refused.
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from vaetraj.errors import BadInputError, UsageError


@dataclass(frozen=True)
class ArrayLayout:
    """shape: as the header says; frames: the whole frames the file really holds."""

    shape: tuple[int, ...]
    dtype: np.dtype
    frames: int
    partial: bool


def _read_header(handle: IO[bytes], path: Path, what: str) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
    except ValueError as error:
        raise BadInputError(f"{what} is not a valid .npy array ({error})", path=path) from None
    if dtype.hasobject:
        raise BadInputError(
            f"{what} holds Python objects, not numbers (pickled data is never loaded)",
            path=path,
        )
    if not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
        raise BadInputError(f"{what} has dtype {dtype}, expected real numbers", path=path)
    if fortran and len(shape) > 1:
        raise BadInputError(
            f"{what} is stored in Fortran order; save it with np.ascontiguousarray", path=path
        )
    return tuple(shape), dtype


def _check_shape(shape: tuple[int, ...], path: Path, what: str) -> None:
    if len(shape) != 3:
        raise BadInputError(
            f"{what} has shape {shape}, expected (frames, atoms, dims) with 3 dimensions",
            path=path,
        )
    if shape[2] not in (2, 3):
        raise BadInputError(
            f"{what} has {shape[2]} coordinates per atom, expected 2 or 3", path=path
        )
    if shape[1] < 1:
        raise BadInputError(f"{what} has no atoms", path=path)


class NpyArrayReader:
    """One (frames, atoms, dims) array in a `.npy` file or an `.npz` member."""

    def __init__(self, path: Path, *, key: str | None = None, allow_partial: bool = False):
        self.path = path
        self.key = key
        self._zip_member: str | None = None
        if path.suffix.lower() == ".npz":
            self._zip_member = self._choose_member(key)
            self.what = f"array '{self._zip_member[:-4]}'"
        else:
            self.what = "array"
        with self._open() as handle:
            shape, dtype = _read_header(handle, path, self.what)
            self._offset = handle.tell()
        _check_shape(shape, path, self.what)
        available = self._data_bytes()
        frame_bytes = int(np.prod(shape[1:])) * dtype.itemsize
        frames = min(shape[0], available // frame_bytes)
        partial = frames < shape[0]
        if partial and not allow_partial:
            raise BadInputError(
                f"file ends inside frame {frames} ({frames} whole frames of the {shape[0]} "
                "its header promises); pass --allow-partial to keep the whole ones",
                path=path,
            )
        self.layout = ArrayLayout(shape=shape, dtype=dtype, frames=frames, partial=partial)
        self._frame_bytes = frame_bytes

    def _choose_member(self, key: str | None) -> str:
        try:
            with zipfile.ZipFile(self.path) as archive:
                members = [n for n in archive.namelist() if n.endswith(".npy")]
        except (zipfile.BadZipFile, OSError) as error:
            raise BadInputError(f"not a readable .npz archive ({error})", path=self.path) from None
        names = [m[:-4] for m in members]
        if key is not None:
            if key not in names:
                raise UsageError(
                    f"no array '{key}' (it holds: {', '.join(names) or 'nothing'})", path=self.path
                )
            return key + ".npy"
        if not names:
            raise BadInputError("the .npz archive holds no arrays", path=self.path)
        if len(names) > 1 and "arr" in names:
            return "arr.npy"  # the seed data's key, and the one vaetraj writes
        if len(names) > 1:
            raise UsageError(
                f"holds several arrays ({', '.join(names)}): choose one with --key", path=self.path
            )
        return members[0]

    @contextlib.contextmanager
    def _open(self) -> Iterator[IO[bytes]]:
        if self._zip_member is None:
            with open(self.path, "rb") as handle:
                yield handle
        else:
            with zipfile.ZipFile(self.path) as archive, archive.open(self._zip_member) as handle:
                yield handle

    def _data_bytes(self) -> int:
        if self._zip_member is None:
            return self.path.stat().st_size - self._offset
        with zipfile.ZipFile(self.path) as archive:
            return archive.getinfo(self._zip_member).file_size - self._offset

    def iter_blocks(self, frames_per_block: int) -> Iterator[np.ndarray]:
        """Yield arrays (≤ frames_per_block, atoms, dims) in the file's dtype."""
        shape = self.layout.shape
        remaining = self.layout.frames
        try:
            with self._open() as handle:
                handle.seek(self._offset)
                while remaining > 0:
                    count = min(frames_per_block, remaining)
                    data = handle.read(count * self._frame_bytes)
                    if len(data) < count * self._frame_bytes:
                        raise BadInputError(
                            "file ended while reading (was it changed while we read it?)",
                            path=self.path,
                        )
                    yield np.frombuffer(data, dtype=self.layout.dtype).reshape(count, *shape[1:])
                    remaining -= count
        except (zipfile.BadZipFile, EOFError) as error:
            raise BadInputError(f"corrupt .npz archive ({error})", path=self.path) from None
