"""`encode`: trajectories to latent paths, aligned exactly as the model's training
frames were (`model_input`).

Frames are read, aligned and encoded chunk by chunk, so memory stays bounded whatever
the trajectory's length.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vaetraj.errors import BadInputError, UsageError
from vaetraj.io._atomic import atomic_output, check_output
from vaetraj.io._hash import compute_sha256
from vaetraj.io.features import describe_table, read_features
from vaetraj.io.latent import LatentWriter, check_latent_suffix
from vaetraj.io.trajectory import ReadOptions
from vaetraj.pipeline.align import describe_sources
from vaetraj.pipeline.model import Model, load_model
from vaetraj.pipeline.model_input import (
    frame_aligner,
    iter_model_chunks,
    iter_model_frames,
    open_for_model,
)
from vaetraj.pipeline.structure import compute_frame_rg, rg_weights

Progress = Callable[..., None]
DEFAULT_MODEL = "model.h5"


def reconstruction_rmsd(model: Model, xyz: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Per frame: the RMSD between aligned frames and the decoding of their posterior
    means; for a model of features (a table, or frames it featurizes) the RMS error
    over its features."""
    decoded = model.decode(mean)
    if model.representation.yields_structures:
        return np.sqrt(np.mean(np.sum((decoded - xyz) ** 2, axis=-1), axis=-1))
    rows = model.representation.inputs(xyz, model.atoms, model.dims)
    return np.sqrt(np.mean((decoded - rows) ** 2, axis=1))


@dataclass(frozen=True)
class LatentPath:
    """Posterior mean and std (frames, latent); R_g (frames,) (None for a table
    model); reconstruction RMSD (frames,) when asked for."""

    mean: np.ndarray
    std: np.ndarray
    rg: np.ndarray | None = None
    recon_rmsd: np.ndarray | None = None


def _encode_chunk(model: Model, xyz: np.ndarray, weights: np.ndarray, recon: bool):
    mean, std = model.encode(xyz)
    columns = {"mean": mean, "std": std, "rg": compute_frame_rg(xyz, weights)}
    if recon:
        columns["recon_rmsd"] = reconstruction_rmsd(model, xyz, mean)
    return columns


def _encode_table(model: Model, table: np.ndarray, recon: bool):
    table = np.asarray(table, np.float32)
    table = table[:, None] if table.ndim == 1 else table
    mean, std = model.encode(table)
    columns = {"mean": mean, "std": std}
    if recon:  # the RMS error over features of the decoded table
        columns["recon_rmsd"] = reconstruction_rmsd(model, table, mean)
    return columns


def _read_table(model: Model, inputs, read_options: ReadOptions) -> tuple[Path, np.ndarray]:
    """The one feature table a table model takes, checked against the model. It is
    held whole (tables are small), and Model.encode chunks it."""
    if len(inputs) != 1:
        raise UsageError("a features model encodes one table (.npy, .npz or .csv) at a time")
    path = Path(inputs[0])
    table = read_features(path, key=read_options.key)
    if table.shape[1] != model.features:
        raise BadInputError(
            f"has {table.shape[1]} feature(s) but the model was trained on {model.features}",
            path=path,
        )
    return path, table[:: read_options.stride]


def encode(
    model: Model,
    data: np.ndarray | Sequence[str | os.PathLike] | str | os.PathLike,
    read_options: ReadOptions = ReadOptions(),
    *,
    recon: bool = False,
) -> LatentPath:
    """Encode frames in memory.

    Args:
        model: the model.
        data: an array (frames, atoms, dims) in the files' frame of reference (aligned
            here as the training frames were), or trajectory paths; a features model
            takes a table (frames, features) or its path.
        read_options: how trajectory paths are read.
        recon: also give each frame's reconstruction RMSD.

    Returns:
        The latent path: posterior mean and std per frame, R_g, and the RMSD if asked.
    """
    if not model.representation.takes_frames:
        if isinstance(data, np.ndarray):
            table = data  # Model.encode checks its shape
        else:
            paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
            table = _read_table(model, paths, read_options)[1]
        return LatentPath(**_encode_table(model, table, recon))
    weights, _ = rg_weights(model.masses, model.atoms)
    if isinstance(data, np.ndarray):
        if data.ndim != 3 or data.shape[1:] != (model.atoms, model.dims):
            raise BadInputError(
                f"frames of shape {data.shape[1:]} do not match the model's "
                f"({model.atoms} atoms, {model.dims}D)"
            )
        chunks: Iterator[np.ndarray] = iter([frame_aligner(model)(data)])
    else:
        paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        trajectory, _ = open_for_model(model, paths, read_options)
        chunks = iter_model_frames(model, trajectory)
    parts = [_encode_chunk(model, xyz, weights, recon) for xyz in chunks]
    columns = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    return LatentPath(**columns)


@dataclass
class EncodeReport:
    frames: int
    atoms: int
    latent_dim: int
    alignment: str
    mean_min: list[float]
    mean_max: list[float]
    std_mean: list[float]
    recon_rmsd_mean: float | None
    rg_min: float | None  # None for a table model
    rg_max: float | None
    units: str
    frames_per_s: float
    wall_time_s: float
    model: str
    output: str | None = None
    frame_time_ps: float | None = None  # between the frames encoded, when known
    featurizer: str | None = None  # a featurized model's (alignment "featurized")
    sources: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """The summary as (label, text) rows: what the command prints."""
        from vaetraj.pipeline.summaries import encode_rows

        return encode_rows(self)


@dataclass
class _Tally:
    """Running figures of the latent path, chunk by chunk."""

    latent_dim: int
    lows: np.ndarray = field(init=False)
    highs: np.ndarray = field(init=False)
    std_sum: np.ndarray = field(init=False)
    recon_sum: float = 0.0
    rg_min: float = math.inf
    rg_max: float = -math.inf
    done: int = 0

    def __post_init__(self) -> None:
        self.lows = np.full(self.latent_dim, np.inf)
        self.highs = np.full(self.latent_dim, -np.inf)
        self.std_sum = np.zeros(self.latent_dim)

    def add(self, columns: dict[str, np.ndarray]) -> None:
        self.lows = np.minimum(self.lows, columns["mean"].min(axis=0))
        self.highs = np.maximum(self.highs, columns["mean"].max(axis=0))
        self.std_sum += columns["std"].sum(axis=0, dtype=np.float64)
        if "rg" in columns:
            self.rg_min = min(self.rg_min, float(columns["rg"].min()))
            self.rg_max = max(self.rg_max, float(columns["rg"].max()))
        if "recon_rmsd" in columns:
            self.recon_sum += float(columns["recon_rmsd"].sum(dtype=np.float64))
        self.done += len(columns["mean"])


@dataclass
class _Source:
    """What `encode_file` encodes: chunks, their total, the columns beside the latent
    path, the encoder of one chunk, the inputs' provenance (None: after reading) and
    the reader's notes."""

    chunks: Any  # an iterable of (chunk, number of the input file it is from)
    total: int | None
    extras: list[str]
    encode: Callable[[np.ndarray], dict[str, np.ndarray]]
    sources: list[dict[str, Any]] | Callable[[], list[dict[str, Any]]]
    notes: list[str]
    frame_time_ps: float | None = None  # between the frames encoded (after the stride)


def _source(
    model: Model, inputs: Sequence[str | os.PathLike], read_options: ReadOptions, recon: bool
) -> _Source:
    if not model.representation.takes_frames:
        path, table = _read_table(model, inputs, read_options)
        return _Source(
            [(table, 0)], len(table), ["trajectory"] + (["recon_rmsd"] if recon else []),
            lambda chunk: _encode_table(model, chunk, recon),
            [describe_table(path, table)], [],
            None if read_options.frame_time is None
            else read_options.frame_time * read_options.stride,
        )  # fmt: skip
    trajectory, notes = open_for_model(model, inputs, read_options)
    weights, _ = rg_weights(model.masses, model.atoms)
    return _Source(
        iter_model_chunks(model, trajectory), trajectory.frames,
        ["trajectory", "rg"] + (["recon_rmsd"] if recon else []),
        lambda chunk: _encode_chunk(model, chunk, weights, recon),
        lambda: describe_sources(trajectory), notes + list(trajectory.notes),
        trajectory.frame_time_ps,
    )  # fmt: skip


def _latent_attrs(
    model: Model, path: Path, sources: list[dict[str, Any]], stride: int, source: _Source
) -> dict[str, Any]:
    """A latent file's provenance: units, the model (path, hash) and the inputs."""
    return {
        "units": model.units,
        "model": {
            "path": str(path.resolve()),
            "sha256": compute_sha256(path),
            "data_sha256": model.record.provenance.get("data_sha256"),
        },
        "sources": sources,
        "stride": stride,
        "frame_time_ps": source.frame_time_ps,
    }


def _report(
    loaded: Model,
    model_path: str,
    tally: _Tally,
    recon: bool,
    elapsed: float,
    sources: list[dict[str, Any]],
    notes: list[str],
) -> EncodeReport:
    done = tally.done
    return EncodeReport(
        frames=done,
        atoms=loaded.atoms,
        latent_dim=loaded.latent_dim,
        alignment=loaded.representation.method,
        featurizer=loaded.representation.featurizer_kind,
        mean_min=tally.lows.tolist(),
        mean_max=tally.highs.tolist(),
        std_mean=(tally.std_sum / done).tolist(),
        recon_rmsd_mean=tally.recon_sum / done if recon else None,
        rg_min=tally.rg_min if np.isfinite(tally.rg_min) else None,
        rg_max=tally.rg_max if np.isfinite(tally.rg_max) else None,
        units=loaded.units,
        frames_per_s=done / elapsed,
        wall_time_s=elapsed,
        model=model_path,
        sources=sources,
        notes=notes,
    )


def encode_file(
    inputs: Sequence[str | os.PathLike],
    model: str | os.PathLike = DEFAULT_MODEL,
    output: str | os.PathLike = "latent.h5",
    read_options: ReadOptions = ReadOptions(),
    *,
    recon: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> EncodeReport:
    """Encode trajectory files into a latent path file, streaming.

    Args:
        inputs: trajectory files (or one table for a table model).
        model: the model file.
        output: `.h5`, `.npz` or `.csv`.
        read_options: how the inputs are read.
        recon: also write each frame's reconstruction RMSD.
        overwrite: replace an existing output.
        progress: called as progress(done, total, phase).

    Returns:
        The report (frames, the latent ranges, throughput).
    """
    started = time.perf_counter()
    output = Path(output)
    suffix = check_latent_suffix(output)
    check_output(output, overwrite=overwrite, inputs=[*(inputs or []), model, read_options.top])
    if not inputs:
        raise UsageError("no trajectory given: vaetraj encode TRAJ... [--model model.h5]")
    model_path = Path(model)
    loaded = load_model(model_path)
    source = _source(loaded, inputs, read_options, recon)
    tally = _Tally(loaded.latent_dim)
    with atomic_output(output, overwrite=overwrite) as tmp:
        writer = LatentWriter(
            tmp, suffix=suffix, latent_dim=loaded.latent_dim, extras=source.extras,
            final_path=output,
        )  # fmt: skip
        try:
            for xyz, number in source.chunks:
                columns = source.encode(xyz)
                columns["trajectory"] = np.full(len(xyz), number, np.float32)
                writer.append(columns)
                tally.add(columns)
                if progress:
                    progress(tally.done, source.total, "encoding")
            if tally.done == 0:
                raise BadInputError("no frames to encode", path=inputs[0])
            sources = source.sources() if callable(source.sources) else source.sources
            writer.finish(_latent_attrs(loaded, model_path, sources, read_options.stride, source))
        finally:
            writer.close()
    elapsed = time.perf_counter() - started
    report = _report(loaded, str(model_path), tally, recon, elapsed, sources, source.notes)
    report.output, report.frame_time_ps = str(output), source.frame_time_ps
    return report
