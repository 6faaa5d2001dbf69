"""The frames a model is trained on: `TrainingSet`, from an aligned file, an array, a
feature table, raw trajectories (aligned first, as `align` would) or the features
vaetraj computes from them (`featurized_training_set`)."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaetraj._memory import resolve_memory_budget
from vaetraj.configs import FeaturizeConfig
from vaetraj.errors import BadInputError, InputMissingError, UsageError
from vaetraj.featurize import fit_featurizer
from vaetraj.io.aligned import (
    AlignedData,
    FrameFile,
    aligned_frame_bytes,
    is_aligned_file,
    open_aligned,
    read_aligned,
)
from vaetraj.io.features import describe_table, read_features
from vaetraj.io.trajectory import ReadOptions, warn_frame_time_override
from vaetraj.pipeline.align import AlignConfig, align_file
from vaetraj.pipeline.representation import (
    TABLE_METHOD,
    Representation,
    featurized_record,
    representation_of,
)
from vaetraj.pipeline.runtime.processes import current

Progress = Callable[..., None]
DEFAULT_DATA = "aligned.h5"


@dataclass(frozen=True)
class TrainingSet:
    """Aligned frames and what a model must remember about them. lengths: frames of
    each trajectory (input file) in order; empty means one trajectory."""

    xyz: np.ndarray  # (frames, atoms, dims) float32; or a FrameFile (streamed from disk)
    units: str
    alignment: dict[str, Any]
    atom_indices: np.ndarray
    reference: np.ndarray | None = None
    masses: np.ndarray | None = None
    topology: str | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    origin: str = "array"
    lengths: tuple[int, ...] = ()
    frame_time_ps: float | None = None  # between consecutive frames, when known
    weights: np.ndarray | None = None  # per frame, of biased frames (mean 1)
    weights_source: str | None = None  # where the weights came from

    @property
    def representation(self) -> Representation:
        """What a model of these frames takes (`vaetraj.pipeline.representation`)."""
        return representation_of(self.alignment)

    @property
    def model_shape(self) -> tuple[int, int]:
        """The atoms and dims the model records: the frames', or for a featurized set
        those of the frames it was computed from (its xyz holds the features)."""
        featurizer = self.representation.featurizer
        if featurizer is not None:
            return featurizer.atoms, 3
        return self.xyz.shape[1], self.xyz.shape[2]

    @property
    def trajectory_lengths(self) -> list[int]:
        frames = self.xyz.shape[0]
        return list(self.lengths) if sum(self.lengths) == frames else [frames]

    @classmethod
    def from_aligned(cls, data: AlignedData, origin: str) -> TrainingSet:
        """The frames of an aligned file (`read_aligned` has checked its fields)."""
        attrs = data.attrs
        topology = attrs.get("topology")
        lengths = attrs.get("summary", {}).get("trajectory_frames", [])
        on_disk = isinstance(data.xyz, FrameFile)
        return cls(
            xyz=data.xyz if on_disk else np.asarray(data.xyz, np.float32),
            units=str(attrs.get("units", "unknown")),
            alignment={
                "method": str(attrs.get("method")),
                "reference": str(attrs.get("reference")),
                "weights": str(attrs.get("weights")),
                "config": attrs.get("config", {}),
                "read_options": attrs.get("read_options", {}),
            },
            atom_indices=np.asarray(
                data.atom_indices if data.atom_indices is not None else np.arange(data.xyz.shape[1])
            ),
            reference=data.reference,
            masses=data.masses,
            topology=None if topology is None else json.dumps(topology),
            sources=list(attrs.get("sources", [])),
            origin=origin,
            frame_time_ps=attrs.get("frame_time_ps"),
            # a list that does not add up to the frames is ignored (trajectory_lengths)
            lengths=tuple(int(n) for n in lengths if isinstance(n, int) and not isinstance(n, bool))
            if isinstance(lengths, list)
            else (),
        )

    @classmethod
    def from_array(cls, xyz: np.ndarray, *, units: str = "unknown") -> TrainingSet:
        """Frames the caller has aligned already; new frames must be aligned the same way."""
        xyz = np.asarray(xyz)
        if xyz.ndim != 3:
            raise BadInputError(f"expected frames (frames, atoms, dims), got shape {xyz.shape}")
        return cls(
            xyz=xyz.astype(np.float32),
            units=units,
            alignment={"method": "as-given", "reference": "none", "weights": "none"},
            atom_indices=np.arange(xyz.shape[1]),
        )

    @classmethod
    def from_features(cls, table: np.ndarray, *, origin: str = "array") -> TrainingSet:
        """A plain table (frames, features): no alignment, no structure. Stored as
        (frames, features, 1) so that the model file keeps one layout."""
        table = np.asarray(table)
        if table.ndim == 1:
            table = table[:, None]
        if table.ndim != 2:
            raise BadInputError(f"expected a table (frames, features), got shape {table.shape}")
        return cls(
            xyz=table.astype(np.float32)[:, :, None],
            units="none",
            alignment={"method": TABLE_METHOD, "reference": "none", "weights": "none"},
            atom_indices=np.arange(table.shape[1]),
            origin=origin,
        )


_CHECK_FRAMES = 65_536  # frames checked finite at a time


def check_frames(xyz: np.ndarray, where: str | None, *, features: bool = False) -> None:
    """Frames (frames, atoms, 2 or 3), at least 2 of them, every coordinate finite
    (checked a block at a time)."""
    if xyz.ndim != 3 or xyz.shape[-1] not in ((1,) if features else (2, 3)):
        raise BadInputError(f"expected frames (frames, atoms, 2 or 3), got {xyz.shape}", path=where)
    if xyz.shape[0] < 2:
        raise BadInputError(
            f"{xyz.shape[0]} frame(s): training needs at least 2 (better thousands)", path=where
        )
    if isinstance(xyz, FrameFile):
        return  # checked when it was opened
    for start in range(0, len(xyz), _CHECK_FRAMES):
        block = xyz[start : start + _CHECK_FRAMES]
        finite = np.isfinite(block).all(axis=(1, 2))
        if not finite.all():
            frame = int(np.argmin(finite))
            atom = int(np.argwhere(~np.isfinite(block[frame]))[0][0])
            raise BadInputError(
                f"non-finite coordinate at frame {start + frame}, atom {atom}", path=where
            )


def load_training_set(
    inputs: Sequence[str | os.PathLike],
    align_config: AlignConfig,
    read_options: ReadOptions,
    progress: Progress | None,
    memory_budget: int | None = None,
) -> TrainingSet:
    """One aligned .h5 is read as is, or left on disk (a FrameFile, to be streamed) when
    its frames exceed `memory_budget` bytes or several processes share the run (each
    reads its shard); anything else is aligned first, as `align` would, and read."""
    if len(inputs) == 1 and Path(inputs[0]).suffix.lower() in (".h5", ".hdf5"):
        path = Path(inputs[0])
        if is_aligned_file(path):
            over_budget = aligned_frame_bytes(path) > resolve_memory_budget(memory_budget)
            read = open_aligned if over_budget or current().count > 1 else read_aligned
            data = TrainingSet.from_aligned(read(path), str(path))
            if read_options.frame_time is None:
                return data
            warn_frame_time_override(read_options.frame_time, data.frame_time_ps, path)
            return dataclasses.replace(data, frame_time_ps=read_options.frame_time)
    with tempfile.TemporaryDirectory(prefix="vaetraj-train-") as folder:
        aligned = Path(folder) / "aligned.h5"
        align_file(inputs, aligned, align_config, read_options, progress=progress)
        return TrainingSet.from_aligned(read_aligned(aligned), ", ".join(map(str, inputs)))


def featurized_training_set(
    inputs: Sequence[str | os.PathLike] | None,
    config: FeaturizeConfig,
    read_options: ReadOptions,
    progress: Progress | None = None,
) -> TrainingSet:
    """The features of raw trajectories (or of the built-in polymer when none), as a
    table (frames, features, 1): the featurizer is fitted on the selected atoms'
    topology (and, for a cutoff, on every frame, read once more), then the frames are
    streamed through it chunk by chunk."""
    from vaetraj.io.topology import topology_to_json
    from vaetraj.pipeline.align import describe_sources, open_inputs

    trajectory = open_inputs(inputs, read_options)
    where = ", ".join(str(path) for path in trajectory.paths)
    if trajectory.topology is None or trajectory.dims != 3:
        raise BadInputError(
            f"--featurize needs 3D frames with a topology (--top); these are "
            f"{trajectory.dims}D" + ("" if trajectory.topology is not None else " without one"),
            path=where,
        )
    frames = (chunk.xyz for chunk in trajectory.iter_chunks()) if config.cutoff else None
    try:
        featurizer = fit_featurizer(config, trajectory.topology, frames)
    except ValueError as error:
        raise BadInputError(f"--featurize {config.kind}: {error}", path=where) from None
    tables, lengths = [], [0] * len(trajectory.sources)
    for chunk in trajectory.iter_chunks():
        tables.append(featurizer.transform(chunk.xyz))
        lengths[chunk.source] += len(chunk.xyz)
        if progress:
            progress(sum(lengths), trajectory.frames, "featurizing")
    read = {"select": read_options.select, "stride": read_options.stride, "key": read_options.key}
    table = np.concatenate(tables) if tables else np.zeros((0, featurizer.features), np.float32)
    return TrainingSet(
        xyz=table[:, :, None],
        units=trajectory.units,
        alignment=featurized_record(featurizer, read),
        atom_indices=trajectory.origin_indices.astype(np.int64),
        masses=trajectory.masses,
        topology=topology_to_json(trajectory.topology),
        sources=describe_sources(trajectory),
        origin=where,
        lengths=tuple(lengths),
        frame_time_ps=trajectory.frame_time_ps,
    )


def read_training_set(
    inputs: Sequence[str | os.PathLike] | None,
    tabular: tuple[bool, FeaturizeConfig | None],
    align_config: AlignConfig,
    read_options: ReadOptions,
    progress: Progress | None,
    memory_budget: int,
) -> TrainingSet:
    """The frames `train_file` trains on, by what its inputs are: a feature table (`tabular`'s flag), the
    features of raw inputs (its FeaturizeConfig), an aligned file (left on disk when its
    frames exceed `memory_budget`), or inputs aligned first (no inputs: ./aligned.h5)."""
    features, featurize = tabular
    if featurize is not None:
        if features or not inputs:
            raise UsageError(
                "--featurize computes features from trajectories: name them, without --features"
            )
        return featurized_training_set(inputs, featurize, read_options, progress)
    if features:
        if not inputs or len(inputs) != 1:
            raise UsageError("--features trains on exactly one table (.npy, .npz or .csv)")
        table = read_features(inputs[0], key=read_options.key)
        data = TrainingSet.from_features(table, origin=str(inputs[0]))
        return dataclasses.replace(data, sources=[describe_table(inputs[0], table)])
    if not inputs:
        inputs = [DEFAULT_DATA]
        if not Path(DEFAULT_DATA).exists():
            raise InputMissingError(
                "no such file (run `vaetraj align` first, or name the data to train on)",
                path=DEFAULT_DATA,
            )
    return load_training_set(inputs, align_config, read_options, progress, memory_budget)
