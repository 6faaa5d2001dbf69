"""`align`: centre and rotate every frame of a trajectory, streamed block by block.

The public functions take paths or arrays; the arithmetic happens in the kernels of
`vaetraj.geometry`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj._device import to_device
from vaetraj.configs import AlignConfig
from vaetraj.errors import BadInputError, UsageError
from vaetraj.geometry import (
    AlignTarget,
    centred_float32,
    compute_index_weights,
    count_axis_changes,
    make_block_aligner,
    make_frame_aligner,
    make_kabsch_target,
)
from vaetraj.io._atomic import atomic_output, check_output
from vaetraj.io._hash import compute_sha256
from vaetraj.io.trajectory import Chunk, ReadOptions, Trajectory

Progress = Callable[[int, "int | None", str], None]
_BLOCK_FRAMES = 4096
_RMSD_OF = {"kabsch": "fitted to the reference", "other": "to the first aligned frame, no fit"}


@dataclass
class AlignReport:
    """What an alignment did: the summary printed and stored in the output."""

    frames: int
    atoms: int
    dims: int
    method: str
    reference: str
    weights: str
    units: str
    rmsd_of: str
    rmsd_min: float
    rmsd_mean: float
    rmsd_max: float
    ambiguous_frames: int
    axis_swaps: int
    sign_flips: int
    mean_iterations: int
    wall_time_s: float
    trajectory_frames: list[int] = field(default_factory=list)  # aligned frames per input
    frame_time_ps: float | None = None  # between the frames kept (after --stride)
    output: str | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """The summary as (label, text) rows: what the command prints."""
        from vaetraj.pipeline.summaries import align_rows

        return align_rows(self)


@dataclass(frozen=True)
class AlignedTrajectory:
    """In-memory result of `align`: xyz (frames, atoms, dims) float32, rmsd (frames,),
    ambiguous (frames,), the reference used (centred; kabsch) and the report."""

    xyz: np.ndarray
    rmsd: np.ndarray
    ambiguous: np.ndarray
    reference: np.ndarray | None
    report: AlignReport


class _FrameSource:
    """Something that yields chunks again and again: a Trajectory or an array."""

    def __init__(self, trajectory: Trajectory | None = None, xyz: np.ndarray | None = None):
        self.trajectory, self.xyz = trajectory, xyz

    def chunks(self, frames: int) -> Iterator[Chunk]:
        if self.trajectory is not None:
            yield from self.trajectory.iter_chunks(frames)
            return
        assert self.xyz is not None
        for start in range(0, self.xyz.shape[0], frames):
            yield Chunk(xyz=self.xyz[start : start + frames], source=0, start=start)

    @property
    def total(self) -> int | None:
        """The frame count (None: a format that does not know it)."""
        if self.trajectory is not None:
            return self.trajectory.frames
        assert self.xyz is not None
        return self.xyz.shape[0]

    def frame(self, index: int) -> np.ndarray:
        for chunk in self.chunks(_BLOCK_FRAMES):
            if chunk.start <= index < chunk.start + chunk.xyz.shape[0]:
                return np.asarray(chunk.xyz[index - chunk.start], dtype=np.float64)
        raise UsageError(f"--reference frame {index} is past the last frame")


class _Aligner:
    """Runs the jit-compiled block kernel over chunks, padding each block to a fixed
    size so it compiles once, and keeps the running statistics."""

    def __init__(self, method: str, tol: float, weights: np.ndarray, block: int):
        self.method = method
        self.block = block
        self.tol = tol
        self.weights = weights
        self.kernel = make_block_aligner(method, tol)
        self.index_weights = to_device(compute_index_weights(weights), np.float32)
        self.target: AlignTarget | None = None

    @property
    def reference(self) -> np.ndarray:
        """The Kabsch reference (atoms, dims), centred."""
        assert self.target is not None
        return np.asarray(self.target.kabsch.reference)

    def set_reference(self, reference: np.ndarray) -> None:
        """reference: (atoms, dims), any position; it is centred here."""
        self.target = AlignTarget(
            weights=to_device(self.weights, np.float32),
            index_weights=self.index_weights,
            kabsch=make_kabsch_target(reference, self.weights),
        )

    def __call__(self, xyz: np.ndarray):
        count = xyz.shape[0]
        if count < self.block:
            pad = np.repeat(xyz[-1:], self.block - count, axis=0)
            xyz = np.concatenate([xyz, pad])
        result = self.kernel(xyz, self.target)
        return jax.tree.map(lambda part: np.asarray(part)[:count], result)


def _resolve_weights(
    trajectory: Trajectory | None, atoms: int, config: AlignConfig
) -> tuple[np.ndarray, str]:
    masses = None if trajectory is None or config.equal_masses else trajectory.masses
    if masses is None:
        return np.full(atoms, 1.0 / atoms), "equal"
    return masses / masses.sum(), "mass"


def _reference_structure(
    config: AlignConfig,
    frames: _FrameSource,
    atoms: int,
    dims: int,
    origin: np.ndarray | None,
    read_options: ReadOptions,
) -> tuple[np.ndarray, str]:
    reference = config.reference
    if reference is None or reference == "mean":
        return frames.frame(0), "frame 0" if reference is None else "mean"
    if isinstance(reference, (int, np.integer)):
        total = frames.total
        index = int(reference)
        if index < 0:
            if total is None:
                raise UsageError(
                    "a negative --reference index needs a format that knows its frame count"
                )
            index += total
        if index < 0 or (total is not None and index >= total):
            raise UsageError(f"--reference frame {reference} is outside the {total} frames")
        return frames.frame(index), f"frame {index}"
    path = Path(reference)
    structure = Trajectory([path], ReadOptions(top=read_options.top, key=read_options.key))
    first = next(structure.iter_chunks(1)).xyz[0].astype(np.float64)
    if first.shape[-1] != dims:
        raise BadInputError(
            f"reference is {first.shape[-1]}D but the trajectory is {dims}D", path=path
        )
    if first.shape[0] == atoms:
        return first, str(path)
    if origin is not None and first.shape[0] > int(origin.max()):
        return first[origin], str(path)
    raise BadInputError(
        f"reference has {first.shape[0]} atoms but the trajectory has {atoms} (after selection)",
        path=path,
    )


def _iterate_mean_reference(
    aligner: _Aligner,
    frames: _FrameSource,
    block: int,
    weights: np.ndarray,
    config: AlignConfig,
    progress: Progress | None,
    total: int | None,
) -> int:
    """Align every frame to the reference and make their mean the new reference, until
    it moves less than `config.mean_tol`; returns the passes made."""
    iterations = 0
    for iterations in range(1, config.mean_max_iterations + 1):
        total_xyz: np.ndarray | None = None
        count = 0
        for chunk in frames.chunks(block):
            result = aligner(centred_float32(chunk.xyz))
            summed = result.xyz.sum(axis=0, dtype=np.float64)
            total_xyz = summed if total_xyz is None else total_xyz + summed
            count += chunk.xyz.shape[0]
            if progress:
                progress(count, total, f"mean reference, pass {iterations}")
        if total_xyz is None:  # no frames: _run says so
            return iterations
        mean = total_xyz / count
        previous = aligner.reference
        moved = float(np.sqrt(weights @ np.sum((mean - previous) ** 2, axis=-1)))
        aligner.set_reference(mean)
        if moved < config.mean_tol:
            break
    return iterations


@dataclass
class _Tally:
    """Running statistics of the aligning pass, chunk by chunk."""

    rmsd_sum: float = 0.0
    rmsd_min: float = math.inf
    rmsd_max: float = -math.inf
    ambiguous: int = 0
    swaps: int = 0
    flips: int = 0
    done: int = 0
    per_source: list[int] = field(default_factory=list)
    previous_rotation: np.ndarray | None = None
    previous_source: int = -1

    def add(self, chunk: Chunk, result: Any, principal: bool) -> None:
        frames = result.xyz.shape[0]
        self.per_source.extend([0] * (chunk.source + 1 - len(self.per_source)))
        self.per_source[chunk.source] += frames
        if principal:  # axis swaps and flips between consecutive frames of one source
            self.ambiguous += int(result.ambiguous.sum())
            new_source = chunk.source != self.previous_source
            start = result.rotation[0] if new_source else self.previous_rotation
            s, f = count_axis_changes(jnp.asarray(result.rotation), jnp.asarray(start))
            self.swaps, self.flips = self.swaps + int(s), self.flips + int(f)
            self.previous_rotation, self.previous_source = result.rotation[-1], chunk.source
        self.rmsd_sum += float(result.rmsd.sum(dtype=np.float64))
        self.rmsd_min = min(self.rmsd_min, float(result.rmsd.min()))
        self.rmsd_max = max(self.rmsd_max, float(result.rmsd.max()))
        self.done += frames


def _reference(
    aligner: _Aligner,
    frames: _FrameSource,
    trajectory: Trajectory | None,
    config: AlignConfig,
    shape: tuple[int, int, int],  # (block, atoms, dims)
    weights: np.ndarray,
    read_options: ReadOptions,
    progress: Progress | None,
    total: int | None,
) -> tuple[str, int]:
    """Set the aligner's reference; returns how it is described and the mean passes."""
    if config.method != "kabsch":
        return "frame 0 (as aligned)", 0
    block, atoms, dims = shape
    origin = trajectory.origin_indices if trajectory is not None else None
    reference, described = _reference_structure(config, frames, atoms, dims, origin, read_options)
    aligner.set_reference(reference)
    if config.reference != "mean":
        return described, 0
    iterations = _iterate_mean_reference(aligner, frames, block, weights, config, progress, total)
    return f"mean ({iterations} passes)", iterations


def _run(
    frames: _FrameSource,
    trajectory: Trajectory | None,
    config: AlignConfig,
    atoms: int,
    dims: int,
    *,
    read_options: ReadOptions,
    sink: Callable[[np.ndarray, np.ndarray, np.ndarray], None],
    progress: Progress | None,
    total: int | None,
) -> tuple[AlignReport, np.ndarray | None]:
    started = time.perf_counter()
    weights, weighting = _resolve_weights(trajectory, atoms, config)
    block = min(_BLOCK_FRAMES, max(1, (16 << 20) // (atoms * dims * 4)), total or _BLOCK_FRAMES)
    aligner = _Aligner(config.method, config.degeneracy_tol, weights, block)
    described, iterations = _reference(
        aligner, frames, trajectory, config, (block, atoms, dims), weights, read_options,
        progress, total,
    )  # fmt: skip
    tally = _Tally()
    for chunk in frames.chunks(block):
        xyz = centred_float32(chunk.xyz)
        if aligner.target is None:  # principal/none: RMSD against the first aligned frame
            aligner.set_reference(np.zeros((atoms, dims)))
            aligner.set_reference(aligner(xyz[:1]).xyz[0])
        result = aligner(xyz)
        tally.add(chunk, result, config.method == "principal")
        sink(result.xyz, result.rmsd, result.ambiguous)
        if progress:
            progress(tally.done, total, "aligning")
    if tally.done == 0:
        where = trajectory.paths[0] if trajectory is not None else None
        raise BadInputError("no frames to align", path=where)
    report = AlignReport(
        frames=tally.done,
        atoms=atoms,
        dims=dims,
        method=config.method,
        reference=described,
        weights=weighting,
        units=trajectory.units if trajectory is not None else "unknown",
        rmsd_of=_RMSD_OF["kabsch" if config.method == "kabsch" else "other"],
        rmsd_min=tally.rmsd_min,
        rmsd_mean=tally.rmsd_sum / tally.done,
        rmsd_max=tally.rmsd_max,
        ambiguous_frames=tally.ambiguous,
        axis_swaps=tally.swaps,
        sign_flips=tally.flips,
        mean_iterations=iterations,
        wall_time_s=time.perf_counter() - started,
        trajectory_frames=tally.per_source,
        frame_time_ps=trajectory.frame_time_ps if trajectory is not None else None,
        notes=list(trajectory.notes) if trajectory is not None else [],
    )
    reference_used = aligner.reference if config.method == "kabsch" else None
    return report, reference_used


def describe_sources(trajectory: Trajectory) -> list[dict[str, Any]]:
    """Path, format, frame count and SHA-256 of every input file (provenance)."""
    return [
        {
            "path": str(s.path.resolve()),
            "format": s.format,
            "frames": s.frames,
            "sha256": compute_sha256(s.path),
        }
        for s in trajectory.sources
    ]


def open_inputs(
    inputs: Sequence[str | os.PathLike] | None, read_options: ReadOptions = ReadOptions()
) -> Trajectory:
    """The trajectory to read: the given files, or the built-in polymer when none."""
    if inputs:
        return Trajectory(list(inputs), read_options)
    from vaetraj.pipeline.builtin import builtin_polymer

    path, topology = builtin_polymer()
    trajectory = Trajectory(
        [path], dataclasses.replace(read_options, top=None), topology=topology, units="reduced"
    )
    trajectory.notes.insert(0, f"no input given: the built-in polymer ({path})")
    return trajectory


def align(
    data: np.ndarray | Sequence[str | os.PathLike] | str | os.PathLike,
    config: AlignConfig = AlignConfig(),
    read_options: ReadOptions = ReadOptions(),
    *,
    progress: Progress | None = None,
) -> AlignedTrajectory:
    """Align frames in memory.

    Args:
        data: an array (frames, atoms, dims), or trajectory file path(s).
        config: the method (principal axes, Kabsch, centre of mass), its reference
            and weights.
        read_options: how trajectory paths are read (topology, selection, stride).
        progress: called as progress(done, total, phase) as chunks are aligned.

    Returns:
        The aligned frames (float32), their RMSD to the reference, and the report.
    """
    if isinstance(data, np.ndarray):
        xyz = np.asarray(data)
        if xyz.ndim != 3 or xyz.shape[-1] not in (2, 3) or xyz.shape[0] == 0:
            raise BadInputError(f"expected an array (frames, atoms, 2 or 3), got shape {xyz.shape}")
        if not np.isfinite(xyz).all():
            frame, atom, _ = np.argwhere(~np.isfinite(xyz))[0]
            raise BadInputError(f"non-finite coordinate at frame {frame}, atom {atom}")
        trajectory, frames = None, _FrameSource(xyz=xyz)
        atoms, dims, total = xyz.shape[1], xyz.shape[2], xyz.shape[0]
    else:
        paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        trajectory = open_inputs(paths, read_options)
        frames = _FrameSource(trajectory=trajectory)
        atoms, dims, total = trajectory.atoms, trajectory.dims, trajectory.frames
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    report, reference = _run(
        frames,
        trajectory,
        config,
        atoms,
        dims,
        read_options=read_options,
        sink=lambda *p: parts.append(p),
        progress=progress,
        total=total,
    )
    xyz, rmsd, ambiguous = (np.concatenate(column) for column in zip(*parts, strict=True))
    return AlignedTrajectory(
        xyz=xyz, rmsd=rmsd, ambiguous=ambiguous, reference=reference, report=report
    )


def align_file(
    inputs: Sequence[str | os.PathLike] | None,
    output: str | os.PathLike = "aligned.h5",
    config: AlignConfig = AlignConfig(),
    read_options: ReadOptions = ReadOptions(),
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> AlignReport:
    """Align trajectory files (or the built-in polymer) into an aligned `.h5`.

    Frames stream through in chunks: memory stays bounded whatever the trajectory's
    length. The file is written atomically (nothing is left on failure).

    Args:
        inputs: trajectory files, concatenated in order; None or empty: the built-in
            polymer.
        output: the aligned `.h5` to write.
        config: the method, reference and weights.
        read_options: topology, selection, stride, array key.
        overwrite: replace an existing output.
        progress: called as progress(done, total, phase).

    Returns:
        The report (frames, RMSD range, axis swaps, reference used).
    """
    from vaetraj.io.aligned import AlignedWriter

    output = Path(output)
    if output.suffix.lower() not in (".h5", ".hdf5"):
        raise UsageError(f"aligned output must be .h5, got '{output.suffix}'", path=output)
    check_output(output, overwrite=overwrite, inputs=[*(inputs or []), read_options.top])
    trajectory = open_inputs(inputs, read_options)
    with atomic_output(output, overwrite=overwrite) as tmp:
        writer = AlignedWriter(
            tmp,
            atoms=trajectory.atoms,
            dims=trajectory.dims,
            with_ambiguous=config.method == "principal",
            final_path=output,
        )
        try:
            report = _align_into(writer, trajectory, config, read_options, progress)
            report.output = str(output)
        finally:
            writer.close()
    return report


def _align_into(
    writer: Any,
    trajectory: Trajectory,
    config: AlignConfig,
    read_options: ReadOptions,
    progress: Progress | None,
) -> AlignReport:
    """Align the trajectory chunk by chunk into an open aligned-file writer, and finish
    the file with its attributes."""
    report, reference = _run(
        _FrameSource(trajectory=trajectory), trajectory, config, trajectory.atoms,
        trajectory.dims, read_options=read_options, sink=writer.append, progress=progress,
        total=trajectory.frames,
    )  # fmt: skip
    report.sources = describe_sources(trajectory)
    attrs, arrays = _aligned_file_fields(trajectory, config, read_options, report, reference)
    writer.finish(attrs=attrs, arrays=arrays)
    return report


def _aligned_file_fields(
    trajectory: Trajectory,
    config: AlignConfig,
    read_options: ReadOptions,
    report: AlignReport,
    reference: np.ndarray | None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The attributes and arrays an aligned file keeps beside its frames."""
    from vaetraj.io.topology import topology_to_json

    arrays = {"atom_indices": trajectory.origin_indices.astype(np.int64)}
    if trajectory.masses is not None:
        arrays["masses"] = trajectory.masses
    if reference is not None:
        arrays["reference"] = reference.astype(np.float32)
    read = {"select": read_options.select, "stride": read_options.stride, "key": read_options.key}
    attrs = {
        "units": trajectory.units,
        "method": config.method,
        "reference": report.reference,
        "weights": report.weights,
        "config": config.to_json(),
        "read_options": json.dumps(read),
        "topology": topology_to_json(trajectory.topology)
        if trajectory.topology is not None
        else None,
        "sources": report.sources,
        "frame_time_ps": trajectory.frame_time_ps,
        "summary": {k: v for k, v in report.to_dict().items() if k not in ("sources",)},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return attrs, arrays


class FrameAligner:
    """Aligns new frames as recorded ones were: the same method, weights and reference
    (a model's training frames, say). Blocks are padded to a fixed size, so any chunk
    length compiles once. Methods other than principal, kabsch and none (frames given
    already aligned, "as-given") pass frames through unchanged."""

    def __init__(
        self,
        method: str,
        weights: np.ndarray,
        dims: int,
        reference: np.ndarray | None = None,
        *,
        degeneracy_tol: float = 1e-2,
        block: int = _BLOCK_FRAMES,
    ) -> None:
        self.method = method
        self.block = block
        self._aligner = None
        if method in ("principal", "kabsch", "none"):
            if method == "kabsch" and reference is None:
                raise BadInputError("a kabsch alignment needs its reference structure")
            weights = np.asarray(weights, dtype=np.float64)
            self._aligner = _Aligner(method, degeneracy_tol, weights / weights.sum(), block)
            self._aligner.set_reference(
                np.zeros((len(weights), dims)) if reference is None else reference
            )

    def frame_kernel(self) -> Callable[[jax.Array], jax.Array] | None:
        """The alignment of one frame (atoms, dims) float32 as a JAX function (to trace
        inside `jit` and `grad`), or None for frames used as given."""
        if self._aligner is None:
            return None
        kernel = make_frame_aligner(self.method, self._aligner.tol)
        target = self._aligner.target
        assert target is not None
        return lambda xyz: kernel(xyz, target).xyz

    def __call__(self, xyz: np.ndarray) -> np.ndarray:
        """Aligned frames (frames, atoms, dims) float32."""
        xyz = centred_float32(np.asarray(xyz))
        if self._aligner is None or len(xyz) == 0:
            return xyz
        return np.concatenate(
            [
                self._aligner(xyz[start : start + self.block]).xyz
                for start in range(0, len(xyz), self.block)
            ]
        )
