"""`load_trajectory`: trajectory files into memory."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vaetraj._lazy import mdtraj as md
from vaetraj.io.trajectory import ReadOptions, Trajectory


@dataclass(frozen=True)
class LoadedTrajectory:
    """xyz: (frames, atoms, dims) as stored (nm for mdtraj formats); topology and masses
    of the selected atoms when known; atom_indices into the original files."""

    xyz: np.ndarray
    topology: md.Topology | None
    masses: np.ndarray | None
    atom_indices: np.ndarray
    units: str


def load_trajectory(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    top: str | os.PathLike | None = None,
    select: str | None = None,
    stride: int = 1,
    key: str | None = None,
    allow_partial: bool = False,
) -> LoadedTrajectory:
    """Read trajectory files (concatenated in order) into memory.

    Args:
        paths: one path or several: any mdtraj format, `.npy`, `.npz` or an aligned `.h5`.
        top: the topology, for formats without one (DCD, XTC, ...).
        select: an mdtraj atom selection.
        stride: keep every `stride`-th frame.
        key: the array's name in an `.npz`.
        allow_partial: read the complete frames of a truncated file (with a warning).

    Returns:
        The frames (frames, atoms, dims), their topology, masses and units.
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    options = ReadOptions(
        top=top, select=select, stride=stride, key=key, allow_partial=allow_partial
    )
    trajectory = Trajectory(paths, options)
    return LoadedTrajectory(
        xyz=trajectory.read_all(),
        topology=trajectory.topology,
        masses=trajectory.masses,
        atom_indices=trajectory.origin_indices,
        units=trajectory.units,
    )
