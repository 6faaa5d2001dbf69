"""`encode`: trajectories to latent paths, aligned exactly as the model's training
frames were; and the reading of new trajectories for a model (also used by `evaluate`).

Frames are read, aligned and encoded chunk by chunk, so memory stays bounded whatever
the trajectory's length.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj.errors import BadInputError, UsageError
from vaetraj.io._atomic import atomic_output, check_output
from vaetraj.io._hash import compute_sha256
from vaetraj.io.features import describe_table, read_features
from vaetraj.io.latent import LatentWriter, check_latent_suffix
from vaetraj.io.trajectory import ReadOptions, Trajectory
from vaetraj.metrics import compute_rg
from vaetraj.pipeline.align import FrameAligner, describe_sources
from vaetraj.pipeline.model import Model, load_model
from vaetraj.pipeline.structure import rg_weights

Progress = Callable[..., None]
DEFAULT_MODEL = "model.h5"


def frame_aligner(model: Model) -> FrameAligner:
    """The alignment the model's training frames had, ready for new frames."""
    alignment = model.alignment
    masses = model.masses
    if alignment.get("weights") == "mass" and masses is not None:
        weights = np.asarray(masses, dtype=np.float64)
    else:
        weights = np.ones(model.atoms)
    config = alignment.get("config") or {}
    return FrameAligner(
        str(alignment.get("method")),
        weights,
        model.dims,
        model.record.reference,
        degeneracy_tol=float(config.get("degeneracy_tol", 1e-2)),
    )


def _atom_names(topology) -> list[str]:
    return [f"{atom.residue.name}:{atom.name}" for atom in topology.atoms]


def open_for_model(
    model: Model, inputs: Sequence[str | os.PathLike], read_options: ReadOptions = ReadOptions()
) -> tuple[Trajectory, list[str]]:
    """Open trajectory files and pick the model's atoms in them.

    An explicit read_options.select wins. Otherwise a file with as many atoms as the
    model is taken whole; a larger one gets the model's recorded selection (or its atom
    indices when there is no topology to select on). Atom counts must then agree, and
    atom names too when both sides know them. Returns the trajectory and notes."""
    notes: list[str] = []
    if model.alignment.get("method") not in ("principal", "kabsch", "none"):
        notes.append(
            f"the model's frames were aligned outside vaetraj "
            f"({model.alignment.get('method')}); frames are used as they are"
        )
    where = ", ".join(str(p) for p in inputs)
    trajectory = Trajectory(list(inputs), dataclasses.replace(read_options))
    if read_options.select is None and trajectory.atoms != model.atoms:
        recorded = (model.alignment.get("read_options") or {}).get("select")
        indices = np.asarray(model.record.atom_indices)
        if recorded and trajectory.topology is not None:
            selection = recorded
        elif indices.size and indices.max() < trajectory.atoms:
            selection = "index " + " ".join(str(int(i)) for i in indices)
        else:
            selection = None
        if selection is not None:
            trajectory = Trajectory(
                list(inputs), dataclasses.replace(read_options, select=selection)
            )
            notes.append(f"selected the model's {model.atoms} atoms ({selection[:60]})")
    if (trajectory.atoms, trajectory.dims) != (model.atoms, model.dims):
        raise BadInputError(
            f"has {trajectory.atoms} atoms in {trajectory.dims}D (after selection) but the "
            f"model was trained on {model.atoms} atoms in {model.dims}D",
            path=where,
        )
    if trajectory.topology is not None and model.topology is not None:
        ours, theirs = _atom_names(model.topology), _atom_names(trajectory.topology)
        mismatched = [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
        if mismatched:
            first = mismatched[0]
            raise BadInputError(
                f"atom {first} is {theirs[first]} but the model's atom {first} is "
                f"{ours[first]} ({len(mismatched)} of {model.atoms} names differ)",
                path=where,
            )
    return trajectory, notes


def iter_model_frames(
    model: Model, trajectory: Trajectory, chunk_frames: int | None = None
) -> Iterator[np.ndarray]:
    """Aligned chunks (frames, atoms, dims) float32 of a trajectory opened for the model."""
    aligner = frame_aligner(model)
    for chunk in trajectory.iter_chunks(chunk_frames):
        yield aligner(chunk.xyz)


@functools.cache
def _rg_kernel():
    return jax.jit(jax.vmap(compute_rg, in_axes=(0, None)))


def compute_frame_rg(xyz: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """R_g of each frame (frames,)."""
    if len(xyz) == 0:
        return np.zeros(0, np.float32)
    return np.asarray(_rg_kernel()(jnp.asarray(xyz), jnp.asarray(weights, jnp.float32)))


def reconstruction_rmsd(model: Model, xyz: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Per-frame RMSD between aligned frames and the decoding of their posterior means."""
    return np.sqrt(np.mean(np.sum((model.decode(mean) - xyz) ** 2, axis=-1), axis=-1))


@dataclass(frozen=True)
class LatentPath:
    """Posterior mean and std (frames, latent); R_g (frames,) (None for a features
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
        columns["recon_rmsd"] = np.sqrt(np.mean((model.decode(mean) - table) ** 2, axis=1))
    return columns


def _read_table(model: Model, inputs, read_options: ReadOptions) -> tuple[Path, np.ndarray]:
    """The one feature table a features model takes, checked against the model. It is
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
    """Encode frames in memory: an array (frames, atoms, dims) in the files' frame of
    reference (it is aligned here as the training frames were), or trajectory paths.
    A features model takes a table (frames, features) or the path of one."""
    if model.is_features:
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
    rg_min: float | None  # None for a features model
    rg_max: float | None
    units: str
    frames_per_s: float
    wall_time_s: float
    model: str
    output: str | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
    """Encode trajectory files into a latent path file (.h5, .npz or .csv), streaming."""
    started = time.perf_counter()
    output = Path(output)
    suffix = check_latent_suffix(output)
    check_output(output, overwrite=overwrite, inputs=[*(inputs or []), model, read_options.top])
    if not inputs:
        raise UsageError("no trajectory given: vaetraj encode TRAJ... [--model model.h5]")
    model_path = Path(model)
    loaded = load_model(model_path)
    if loaded.is_features:
        path, table = _read_table(loaded, inputs, read_options)
        chunks, total, sources, notes = [table], len(table), [describe_table(path, table)], []
        extras = ["recon_rmsd"] if recon else []
    else:
        trajectory, notes = open_for_model(loaded, inputs, read_options)
        weights, _ = rg_weights(loaded.masses, loaded.atoms)
        chunks, total = iter_model_frames(loaded, trajectory), trajectory.frames
        sources, notes = None, notes + list(trajectory.notes)
        extras = ["rg"] + (["recon_rmsd"] if recon else [])
    lows = np.full(loaded.latent_dim, np.inf)
    highs = np.full(loaded.latent_dim, -np.inf)
    std_sum = np.zeros(loaded.latent_dim)
    recon_sum, rg_min, rg_max, done = 0.0, np.inf, -np.inf, 0
    with atomic_output(output, overwrite=overwrite) as tmp:
        writer = LatentWriter(
            tmp, suffix=suffix, latent_dim=loaded.latent_dim, extras=extras, final_path=output
        )
        try:
            for xyz in chunks:
                if loaded.is_features:
                    columns = _encode_table(loaded, xyz, recon)
                else:
                    columns = _encode_chunk(loaded, xyz, weights, recon)
                writer.append(columns)
                lows = np.minimum(lows, columns["mean"].min(axis=0))
                highs = np.maximum(highs, columns["mean"].max(axis=0))
                std_sum += columns["std"].sum(axis=0, dtype=np.float64)
                if "rg" in columns:
                    rg_min = min(rg_min, float(columns["rg"].min()))
                    rg_max = max(rg_max, float(columns["rg"].max()))
                if recon:
                    recon_sum += float(columns["recon_rmsd"].sum(dtype=np.float64))
                done += len(xyz)
                if progress:
                    progress(done, total, "encoding")
            if done == 0:
                raise BadInputError("no frames to encode", path=inputs[0])
            if sources is None:
                sources = describe_sources(trajectory)
            writer.finish(
                {
                    "units": loaded.units,
                    "model": {
                        "path": str(model_path.resolve()),
                        "sha256": compute_sha256(model_path),
                        "data_sha256": loaded.record.provenance.get("data_sha256"),
                    },
                    "sources": sources,
                    "stride": read_options.stride,
                }
            )
        finally:
            writer.close()
    elapsed = time.perf_counter() - started
    return EncodeReport(
        frames=done,
        atoms=loaded.atoms,
        latent_dim=loaded.latent_dim,
        alignment=str(loaded.alignment.get("method")),
        mean_min=lows.tolist(),
        mean_max=highs.tolist(),
        std_mean=(std_sum / done).tolist(),
        recon_rmsd_mean=recon_sum / done if recon else None,
        rg_min=rg_min if np.isfinite(rg_min) else None,
        rg_max=rg_max if np.isfinite(rg_max) else None,
        units=loaded.units,
        frames_per_s=done / elapsed,
        wall_time_s=elapsed,
        model=str(model_path),
        output=str(output),
        sources=sources,
        notes=notes,
    )
