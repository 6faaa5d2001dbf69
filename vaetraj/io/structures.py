"""Writing generated structures (decoded, sampled, optimized) by extension.

.npz  key `arr` (structures, atoms, dims), as the seed data; plus `attrs` (JSON).
.h5   a `vaetraj-aligned` file (method "generated"): `vaetraj encode`, `evaluate` and
      `train` read it back like any aligned file.
else  every format mdtraj writes (.pdb, .dcd, .xtc, .gro, ...), with the model's
      topology (or one of unnamed carbon beads). A 2D structure gets z = 0. mdtraj
      formats are in nm: coordinates in other units are written unchanged, with a note.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from vaetraj._lazy import mdtraj as md
from vaetraj.errors import NumericalError, UsageError, WriteError
from vaetraj.io._atomic import (
    atomic_output,
    check_output,
    describe_os_error,
    medium_failure,
    require_space,
)
from vaetraj.io._integrity import stamp_dcd_frame_time
from vaetraj.io.topology import polymer_topology, topology_from_json
from vaetraj.io.trajectory import _quiet_c_stdout, suffix_of

_OWN = (".npz", ".h5", ".hdf5")


# formats mdtraj's Trajectory.save writes without extra packages (.h5 is ours here)
MDTRAJ_WRITERS = (
    ".pdb",
    ".pdb.gz",
    ".cif",
    ".pdbx",
    ".dcd",
    ".xtc",
    ".trr",
    ".nc",
    ".netcdf",
    ".ncdf",
    ".ncrst",
    ".crd",
    ".mdcrd",
    ".lammpstrj",
    ".xyz",
    ".gro",
    ".rst7",
)


def check_structure_output(
    path: str | os.PathLike, *, overwrite: bool, inputs: Iterable[str | os.PathLike | None] = ()
) -> Path:
    """Refuse an unknown extension, one of the command's `inputs` or an existing output
    before any work is done."""
    path = Path(path)
    suffix = suffix_of(path)
    if suffix not in _OWN and suffix not in MDTRAJ_WRITERS:
        raise UsageError(
            f"cannot write '{suffix or path.name}': use .npz, .h5 or a format mdtraj writes "
            "(.pdb, .dcd, .xtc, ...)",
            path=path,
        )
    return check_output(path, overwrite=overwrite, inputs=inputs)


def _topology(topology_json: str | None, atoms: int) -> md.Topology:
    if topology_json is None:
        return polymer_topology(atoms)
    return topology_from_json(topology_json)


def write_structures(
    path: str | os.PathLike,
    xyz: np.ndarray,
    *,
    topology_json: str | None,
    units: str,
    attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
    time: np.ndarray | None = None,
) -> list[str]:
    """Write structures (n, atoms, dims) atomically; returns notes for the user.
    Non-finite coordinates are refused (NumericalError) before anything is written.
    time (n,) ps: each frame's time, for the formats that keep one (.dcd, .xtc)."""
    path = check_structure_output(path, overwrite=overwrite)
    xyz = np.asarray(xyz, dtype=np.float32)
    if not np.isfinite(xyz).all():
        index = int(np.argwhere(~np.isfinite(xyz))[0, 0])
        raise NumericalError(
            f"structure {index} has non-finite coordinates; nothing was written", path=path
        )
    attrs = dict(attrs or {})
    suffix = suffix_of(path)
    notes: list[str] = []
    with atomic_output(path, overwrite=overwrite) as tmp:
        try:
            if suffix == ".npz":
                with open(tmp, "wb") as handle:
                    np.savez(handle, arr=xyz, attrs=np.asarray(json.dumps(attrs, default=str)))
            elif suffix in (".h5", ".hdf5"):
                require_space(path, 2 * xyz.nbytes)  # HDF5 cannot meet a full disk
                _write_h5(tmp, xyz, topology_json, units, attrs, path)
            else:
                notes += _write_mdtraj(tmp, suffix, xyz, topology_json, units, path, time)
        except OSError as error:
            raise WriteError(describe_os_error(error), path=path) from None
    return notes


def _write_h5(tmp, xyz, topology_json, units, attrs, final_path) -> None:
    from vaetraj.io.aligned import AlignedWriter

    writer = AlignedWriter(
        tmp, atoms=xyz.shape[1], dims=xyz.shape[2], with_ambiguous=False, final_path=final_path
    )
    try:
        writer.append(xyz, np.zeros(len(xyz), np.float32), None)
        writer.finish(
            attrs={
                "units": units,
                "method": "generated",
                "reference": "none",
                "weights": "none",
                "topology": topology_json,
                "sources": [],
                "summary": attrs,
            },
            arrays={"atom_indices": np.arange(xyz.shape[1], dtype=np.int64)},
        )
    finally:
        writer.close()


def _write_mdtraj(
    tmp: Path, suffix: str, xyz, topology_json, units, final_path, time=None
) -> list[str]:
    notes = []
    if xyz.shape[-1] == 2:
        xyz = np.concatenate([xyz, np.zeros((*xyz.shape[:2], 1), np.float32)], axis=-1)
        notes.append("2D structures written with z = 0")
    if units != "nm":
        notes.append(f"coordinates are in '{units}' units, written unchanged as if nm")
    trajectory = md.Trajectory(xyz, _topology(topology_json, xyz.shape[1]), time=time)
    # mdtraj picks the writer from the name; the temporary file keeps the real suffix
    named = tmp.with_name(tmp.name + suffix)
    try:
        with _quiet_c_stdout():
            trajectory.save(str(named), force_overwrite=True)
        if suffix == ".dcd" and time is not None and len(time) > 1:
            stamp_dcd_frame_time(named, float(time[1] - time[0]))
        os.replace(named, tmp)
    except Exception as error:  # mdtraj's writers raise TypeError, RuntimeError, ...
        reason = medium_failure(error, tmp.parent)  # judged before the file is removed
        if reason is None:
            raise
        raise WriteError(f"write failed: {reason}", path=final_path) from None
    finally:
        named.unlink(missing_ok=True)
    return notes
