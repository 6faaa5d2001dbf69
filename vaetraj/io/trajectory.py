"""Reading trajectories: `.npy`/`.npz` arrays, our `.h5` files and every format mdtraj
reads, streamed in blocks of frames, with atom selection, stride, and checks that no
read is silently short and no coordinate is NaN or infinite.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from vaetraj._interrupt import check_stop
from vaetraj._lazy import mdtraj as md
from vaetraj.configs import ReadOptions
from vaetraj.errors import BadInputError, UsageError, VaetrajWarning
from vaetraj.io import _integrity
from vaetraj.io._npy import NpyArrayReader
from vaetraj.io._paths import require_input
from vaetraj.io.aligned import check_aligned, is_aligned_file
from vaetraj.io.topology import (
    masses_from_topology,
    placeholder_topology,
    repair_guessed_elements,
)

_ARRAY_SUFFIXES = {".npy", ".npz"}
_HDF5_SUFFIXES = {".h5", ".hdf5"}
# mdtraj formats whose files carry their own topology
_SELF_DESCRIBING = {
    ".pdb",
    ".pdb.gz",
    ".gro",
    ".h5",
    ".hdf5",
    ".lh5",
    ".mol2",
    ".hoomdxml",
    ".arc",
    ".gsd",
    ".pdbx",
    ".cif",
}
# mdtraj formats read block by block; the others are read whole
_STREAMABLE = {
    ".dcd",
    ".xtc",
    ".trr",
    ".nc",
    ".ncdf",
    ".netcdf",
    ".h5",
    ".hdf5",
    ".lh5",
    ".binpos",
    ".dtr",
    ".lammpstrj",
    ".xyz",
}
_TARGET_BLOCK_BYTES = 32 << 20
# beyond this, squares and sums of coordinates overflow float32 (1e9 nm is a metre)
MAX_COORDINATE = 1e9
# float32 spacing above which a warning says positions lost precision (reached at 16384)
FLOAT32_RESOLUTION = 1e-3


def suffix_of(path: Path) -> str:
    name = path.name.lower()
    return ".pdb.gz" if name.endswith(".pdb.gz") else path.suffix.lower()


@contextlib.contextmanager
def _quiet_c_stdout() -> Iterator[None]:
    """mdtraj's DCD plugin prints to the C stdout; keep it off ours (--json lives there)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _mdtraj_suffixes() -> set[str]:
    return set(md.formats.registry.FormatRegistry.loaders)


@dataclass
class _FileSource:
    """One input file: what it holds, and how to read it block by block.

    atoms: atoms per frame in the file; frames: whole frames before stride (None if
    the format cannot tell without reading it all).
    """

    path: Path
    format: str
    atoms: int
    dims: int
    frames: int | None
    units: str
    topology: md.Topology | None = None
    origin_indices: np.ndarray | None = None  # our .h5: atoms of the files it came from
    notes: list[str] = field(default_factory=list)
    frame_time_ps: float | None = None  # between the file's frames, when it says
    warned_precision: bool = False

    def iter_blocks(self, atom_indices: np.ndarray | None, block: int) -> Iterator[np.ndarray]:
        raise NotImplementedError


@dataclass
class _ArraySource(_FileSource):
    reader: NpyArrayReader | None = None

    def iter_blocks(self, atom_indices, block):
        for xyz in self.reader.iter_blocks(block):
            yield xyz if atom_indices is None else xyz[:, atom_indices]


class _AlignedH5Source(_FileSource):
    def iter_blocks(self, atom_indices, block):
        with h5py.File(self.path, "r") as handle:
            data = handle["xyz"]
            for start in range(0, data.shape[0], block):
                xyz = data[start : start + block]
                yield xyz if atom_indices is None else xyz[:, atom_indices]


@dataclass
class _MdtrajSource(_FileSource):
    read_topology: md.Topology | None = None

    def iter_blocks(self, atom_indices, block):
        if suffix_of(self.path) not in _STREAMABLE:
            yield from self._iter_loaded(atom_indices, block)
            return
        remaining = self.frames
        with _quiet_c_stdout(), md.open(str(self.path)) as handle:
            while remaining is None or remaining > 0:
                count = block if remaining is None else min(block, remaining)
                try:
                    if isinstance(handle, md.formats.HDF5TrajectoryFile):  # has its topology
                        chunk = handle.read_as_traj(n_frames=count, atom_indices=atom_indices)
                    else:
                        chunk = handle.read_as_traj(
                            self.read_topology, n_frames=count, atom_indices=atom_indices
                        )
                except Exception as error:  # mdtraj raises bare exceptions on bad bytes
                    raise BadInputError(f"cannot read frames: {error}", path=self.path) from None
                if chunk.n_frames == 0:
                    break
                if remaining is not None:
                    remaining -= chunk.n_frames
                yield chunk.xyz
            if remaining:
                raise BadInputError(
                    f"read {self.frames - remaining} frames where the file holds {self.frames}",
                    path=self.path,
                )

    def _iter_loaded(self, atom_indices, block):
        """Text formats (PDB, GRO, ...) that mdtraj reads only whole."""
        try:
            with _quiet_c_stdout():
                loaded = md.load(str(self.path), top=self.read_topology, atom_indices=atom_indices)
        except Exception as error:
            raise BadInputError(f"cannot read frames: {error}", path=self.path) from None
        for start in range(0, loaded.n_frames, block):
            yield loaded.xyz[start : start + block]


def _check_exists(path: Path) -> None:
    require_input(path)
    if path.is_dir():
        raise BadInputError("is a folder, not a trajectory file", path=path)
    if path.stat().st_size == 0:
        raise BadInputError("file is empty", path=path)


def _load_topology(top: str | os.PathLike) -> md.Topology:
    top_path = Path(top)
    _check_exists(top_path)
    suffix = suffix_of(top_path)
    if suffix in _HDF5_SUFFIXES and is_aligned_file(top_path):
        source = _open_aligned_h5(top_path)
        if source.topology is None:
            raise BadInputError("this aligned file stores no topology", path=top_path)
        return source.topology
    try:
        with _quiet_c_stdout():
            topology = md.load_topology(str(top_path))
    except Exception as error:
        raise BadInputError(f"cannot read a topology from it ({error})", path=top_path) from None
    note = repair_guessed_elements(topology, top_path)
    if note is not None:
        warnings.warn(note, VaetrajWarning, stacklevel=2)
    return topology


def _open_array(path: Path, options: ReadOptions) -> _FileSource:
    reader = NpyArrayReader(path, key=options.key, allow_partial=options.allow_partial)
    layout = reader.layout
    source = _ArraySource(
        path=path,
        format=suffix_of(path)[1:],
        atoms=layout.shape[1],
        dims=layout.shape[2],
        frames=layout.frames,
        units="unknown",
        reader=reader,
    )
    if layout.partial:
        source.notes.append(
            f"{path}: kept the {layout.frames} whole frames of {layout.shape[0]} (--allow-partial)"
        )
    return source


def _open_aligned_h5(path: Path) -> _FileSource:
    try:
        with h5py.File(path, "r") as handle:
            fields, topology = check_aligned(handle, path)
    except OSError as error:
        raise BadInputError(f"cannot read HDF5 file ({error})", path=path) from None
    return _AlignedH5Source(
        path=path,
        format="vaetraj-h5",
        atoms=fields.dims["atoms"],
        dims=fields.dims["dims"],
        frames=fields.dims["frames"],
        units=fields.attrs["units"],
        topology=topology,
        origin_indices=fields.arrays["atom_indices"],
        frame_time_ps=fields.attrs.get("frame_time_ps"),
    )


def _count_atoms_with_mdtraj(path: Path) -> int:
    try:
        with _quiet_c_stdout(), md.open(str(path)) as handle:
            first = handle.read(n_frames=1)
    except Exception as error:
        raise BadInputError(f"cannot read it as a trajectory ({error})", path=path) from None
    xyz = first[0] if isinstance(first, tuple) else getattr(first, "xyz", first)
    return int(np.asarray(xyz).shape[1])


def _open_mdtraj(
    path: Path, suffix: str, options: ReadOptions, topology: md.Topology | None
) -> _FileSource:
    if topology is None:
        if suffix not in _SELF_DESCRIBING:
            raise UsageError(f"a {suffix} file has no topology: pass --top", path=path)
        topology = _load_topology(path)
    frames: int | None = None
    notes: list[str] = []
    scan = {".dcd": _integrity.scan_dcd, ".xtc": _integrity.scan_xtc}.get(suffix)
    counted = scan(path) if scan else None
    if counted is not None:
        if counted.partial and not options.allow_partial:
            raise BadInputError(
                f"file ends inside frame {counted.whole} (it holds {counted.whole} whole "
                "frames); pass --allow-partial to keep the whole ones",
                path=path,
            )
        if counted.partial:
            notes.append(f"{path}: kept the {counted.whole} whole frames (--allow-partial)")
        if counted.header_frames is not None and counted.header_frames > counted.whole:
            warnings.warn(
                f"{path}: header counts {counted.header_frames} frames but the file holds "
                f"{counted.whole} whole frames; reading {counted.whole}",
                VaetrajWarning,
                stacklevel=2,
            )
        frames, atoms = counted.whole, counted.atoms
    else:
        atoms = (
            _count_atoms_with_mdtraj(path) if suffix not in _SELF_DESCRIBING else topology.n_atoms
        )
    if atoms != topology.n_atoms:
        raise BadInputError(
            f"trajectory has {atoms} atoms but the topology has {topology.n_atoms}", path=path
        )
    source = _MdtrajSource(
        path=path,
        format=suffix[1:],
        atoms=atoms,
        dims=3,
        frames=frames,
        units="nm",
        topology=topology,
        notes=notes,
        read_topology=topology,
        frame_time_ps=None if counted is None else counted.frame_time_ps,
    )
    return source


def _open_file(path: Path, options: ReadOptions, topology: md.Topology | None) -> _FileSource:
    _check_exists(path)
    suffix = suffix_of(path)
    if suffix in _ARRAY_SUFFIXES:
        source = _open_array(path, options)
    elif suffix in _HDF5_SUFFIXES and is_aligned_file(path):
        source = _open_aligned_h5(path)
    elif suffix in _mdtraj_suffixes():
        return _open_mdtraj(path, suffix, options, topology)
    else:
        known = sorted(_ARRAY_SUFFIXES | _mdtraj_suffixes())
        raise BadInputError(
            f"unknown trajectory extension '{suffix or path.name}' (known: {', '.join(known)})",
            path=path,
        )
    if topology is not None:
        if topology.n_atoms != source.atoms:
            raise BadInputError(
                f"trajectory has {source.atoms} atoms but the topology has {topology.n_atoms}",
                path=path,
            )
        source.topology = topology
    return source


@dataclass(frozen=True)
class Chunk:
    """A block of frames. xyz: (frames, atoms, dims) in the file's float dtype.
    source: index of the input file; start: index of its first frame in the whole
    (strided, concatenated) trajectory."""

    xyz: np.ndarray
    source: int
    start: int


def warn_frame_time_override(
    given: float | None, recorded: float | None, where: str | os.PathLike
) -> None:
    """--frame-time wins over the time between frames a file records (a DCD header may
    be wrong); when they differ, a warning says so rather than letting it pass silently."""
    if (
        given is not None
        and recorded is not None
        and not math.isclose(given, recorded, rel_tol=1e-5)
    ):
        warnings.warn(
            f"{where}: --frame-time {given:g} ps overrides the {recorded:g} ps between frames "
            "the file records",
            VaetrajWarning,
            stacklevel=3,
        )


class Trajectory:
    """Several trajectory files read as one, after atom selection and stride.

    Nothing is read until `iter_chunks`; opening reads only headers and topologies.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        options: ReadOptions = ReadOptions(),
        *,
        topology: md.Topology | None = None,
        units: str | None = None,
    ) -> None:
        if not paths:
            raise UsageError("no input trajectory given")
        self.options = options
        self.paths = [Path(p) for p in paths]
        if topology is None and options.top is not None:
            topology = _load_topology(options.top)
        self.sources = [_open_file(path, options, topology) for path in self.paths]
        first = self.sources[0]
        for source in self.sources[1:]:
            if (source.atoms, source.dims) != (first.atoms, first.dims):
                raise BadInputError(
                    f"has {source.atoms} atoms in {source.dims}D but {first.path} has "
                    f"{first.atoms} in {first.dims}D; inputs must match to be concatenated",
                    path=source.path,
                )
        self.dims = first.dims
        file_topology = next((s.topology for s in self.sources if s.topology is not None), None)
        self.atom_indices = self._select(file_topology, first.atoms)
        self.topology = (
            file_topology.subset(self.atom_indices) if file_topology is not None else None
        )
        masses = masses_from_topology(file_topology) if file_topology is not None else None
        self.masses = None if masses is None else masses[self.atom_indices]
        self.units = units or (
            first.units if all(s.units == first.units for s in self.sources) else "unknown"
        )
        self.notes = [note for source in self.sources for note in source.notes]
        for source in self.sources:
            warn_frame_time_override(options.frame_time, source.frame_time_ps, source.path)

    def _select(self, topology: md.Topology | None, atoms: int) -> np.ndarray:
        selection = self.options.select
        if selection is None or selection.strip() in ("", "all"):
            return np.arange(atoms)
        try:
            indices = (topology or placeholder_topology(atoms)).select(selection)
        except Exception as error:  # pyparsing's message lists its whole grammar: cut it
            parse = error.__context__ if hasattr(error.__context__, "col") else error
            column = getattr(parse, "col", None)
            where = f"at column {column}" if column is not None else str(error)[:80]
            raise UsageError(
                f"--select '{selection}' is not an mdtraj selection (cannot parse it {where}; "
                "see mdtraj's atom selection language)"
            ) from None
        if indices.size == 0:
            where = ", ".join(str(p) for p in self.paths)
            raise BadInputError(f"selection '{selection}' matches no atoms", path=where)
        return np.asarray(indices)

    @property
    def atoms(self) -> int:
        return int(self.atom_indices.size)

    @property
    def frames(self) -> int | None:
        """Frames after stride, or None when a format cannot tell before reading."""
        stride = self.options.stride
        counts = [s.frames for s in self.sources]
        known = [c for c in counts if c is not None]
        if len(known) < len(counts):
            return None
        return sum(-(-c // stride) for c in known)

    @property
    def frame_time_ps(self) -> float | None:
        """ps between the frames read (after stride): --frame-time's, else the one the
        files all record (DCD and XTC headers, our aligned .h5); None otherwise."""
        if self.options.frame_time is not None:
            return self.options.frame_time * self.options.stride
        times = [source.frame_time_ps for source in self.sources]
        first = times[0]
        if first is None or any(
            t is None or not math.isclose(t, first, rel_tol=1e-5) for t in times
        ):
            return None
        return first * self.options.stride

    @property
    def origin_indices(self) -> np.ndarray:
        """Selected atoms as indices into the original files (through our .h5 files)."""
        origin = self.sources[0].origin_indices
        return self.atom_indices if origin is None else np.asarray(origin)[self.atom_indices]

    def default_chunk_frames(self) -> int:
        return int(max(1, min(65536, _TARGET_BLOCK_BYTES // (self.atoms * self.dims * 8))))

    def iter_chunks(self, frames_per_chunk: int | None = None) -> Iterator[Chunk]:
        """Yield chunks of at most `frames_per_chunk` frames (after stride), finite."""
        frames_per_chunk = frames_per_chunk or self.default_chunk_frames()
        stride = self.options.stride
        selected = (
            None
            if self.atoms == self.sources[0].atoms
            and np.array_equal(self.atom_indices, np.arange(self.atoms))
            else self.atom_indices
        )
        emitted = 0
        for number, source in enumerate(self.sources):
            raw = 0
            for block in source.iter_blocks(selected, frames_per_chunk * stride):
                phase = (-raw) % stride
                kept = block[phase::stride] if stride > 1 else block
                first_frame = raw + phase
                raw += block.shape[0]
                if kept.shape[0] == 0:
                    continue
                self._check_values(kept, source, first_frame)
                check_stop()  # a safe point for a signal (see vaetraj._interrupt)
                yield Chunk(xyz=kept, source=number, start=emitted)
                emitted += kept.shape[0]

    def _check_values(self, xyz: np.ndarray, source: _FileSource, first_frame: int) -> None:
        """Refuse a non-finite coordinate or one too large for float32 arithmetic; warn
        (once per file) where float32 coordinates far from the origin have lost
        precision. first_frame: index (in the file, before stride) of xyz[0]."""
        magnitude = np.abs(xyz)
        fine = magnitude <= MAX_COORDINATE  # False for NaN as well
        if not fine.all():
            frame, atom, _ = np.argwhere(~fine)[0]
            value = xyz[frame, atom].tolist()
            where = (
                f"at frame {first_frame + frame * self.options.stride}, "
                f"atom {int(self.atom_indices[atom])}"
            )
            if np.isfinite(xyz[frame, atom]).all():
                problem = (
                    f"coordinate {value} {where} is beyond ±{MAX_COORDINATE:.0e}: not a "
                    "molecular coordinate in any length unit (it would overflow float32)"
                )
            else:
                problem = f"non-finite coordinate {value} {where}"
            raise BadInputError(problem, path=source.path)
        if xyz.dtype == np.float32 and not source.warned_precision and xyz.size:
            largest = float(magnitude.max())
            resolution = float(np.spacing(np.float32(largest)))
            if resolution > FLOAT32_RESOLUTION:
                source.warned_precision = True
                warnings.warn(
                    f"{source.path}: float32 coordinates reach {largest:.3g}, where float32 "
                    f"resolves only {resolution:.3g} (file units): the positions lost "
                    "precision when the file was written; centre the system or store float64",
                    VaetrajWarning,
                    stacklevel=2,
                )

    def read_all(self) -> np.ndarray:
        """Every frame in memory as (frames, atoms, dims), in the files' float dtype."""
        chunks = [chunk.xyz for chunk in self.iter_chunks()]
        if not chunks:
            raise BadInputError("no frames to read", path=self.paths[0])
        return np.concatenate(chunks)
