"""The aligned-trajectory HDF5 file (format `vaetraj-aligned`, version 1).

Layout: /xyz (frames, atoms, dims) float32; /rmsd (frames,) float32; /ambiguous
(frames,) bool (principal only); /atom_indices (atoms,) int64, into the original files;
/masses (atoms,) float64 (when the topology gives them); /reference (atoms, dims) float32,
centred (the structure frames were fitted to; kabsch only). Attributes: format,
format_version, units, method, reference (description), weights, config (JSON),
topology (JSON, when known), sources (JSON list of path, format, frames, sha256),
summary (JSON), vaetraj_version, created.
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

from vaetraj._version import __version__
from vaetraj.errors import BadInputError, InputMissingError, WriteError
from vaetraj.io.trajectory import ALIGNED_FORMAT

ALIGNED_FORMAT_VERSION = 1


class AlignedWriter:
    """Appends aligned blocks to an HDF5 file. Any OSError from h5py is a write error."""

    def __init__(
        self, path: Path, *, atoms: int, dims: int, with_ambiguous: bool, final_path: Path
    ):
        self.final_path = final_path
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
        count = xyz.shape[0]
        end = self.frames + count
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


def read_aligned(path: str | os.PathLike) -> AlignedData:
    """Read a whole aligned file, checking its format name and version."""
    path = Path(path)
    if not path.exists():
        raise InputMissingError("no such file", path=path)
    try:
        with h5py.File(path, "r") as handle:
            if handle.attrs.get("format") != ALIGNED_FORMAT:
                raise BadInputError("not a vaetraj aligned file", path=path)
            version = int(handle.attrs.get("format_version", -1))
            if version > ALIGNED_FORMAT_VERSION or version < 1:
                raise BadInputError(
                    f"aligned format version {version} is not one this vaetraj "
                    f"({__version__}) reads (it reads up to {ALIGNED_FORMAT_VERSION})",
                    path=path,
                )

            def optional(name):
                return handle[name][()] if name in handle else None

            return AlignedData(
                xyz=handle["xyz"][()],
                rmsd=optional("rmsd"),
                atom_indices=optional("atom_indices"),
                masses=optional("masses"),
                reference=optional("reference"),
                attrs=dict(handle.attrs),
            )
    except OSError as error:
        raise BadInputError(f"cannot read HDF5 file ({error})", path=path) from None
