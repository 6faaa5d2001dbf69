"""`train` and `train_file`: aligned frames in, a `Model` (and model file) out.

The Python loop here is what the kernels leave to it: one jit-compiled epoch per
iteration, then validation, early stopping, progress, checkpoints and interrupts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vaetraj._interrupt import stop_requested
from vaetraj._version import __version__
from vaetraj.errors import (
    BadInputError,
    InputMissingError,
    InterruptedRunError,
    NumericalError,
    UsageError,
)
from vaetraj.io._atomic import check_output
from vaetraj.io.aligned import AlignedData, read_aligned
from vaetraj.io.checkpoint import read_checkpoint, read_checkpoint_fields, write_checkpoint
from vaetraj.io.features import describe_table, read_features
from vaetraj.io.model_file import ModelRecord
from vaetraj.io.trajectory import ALIGNED_FORMAT, ReadOptions
from vaetraj.model import (
    ModelConfig,
    Normalization,
    compute_active_units,
    compute_kl_diagonal,
    find_constant_features,
    fit_gaussian_mixture,
    fit_normalization,
)
from vaetraj.pipeline.align import AlignConfig, align_file
from vaetraj.pipeline.model import Model
from vaetraj.pipeline.structure import compute_data_stats
from vaetraj.train import TrainConfig, make_trainer

Progress = Callable[..., None]

# Train-config fields a resumed run must share with its checkpoint: they fix the shapes
# of the optimizer state, the data split or the random stream. The others (epochs, lr,
# schedule, beta, patience, ...) may be changed on resume, e.g. to lower the rate.
_RESUME_FIXED = ("batch_size", "optimizer", "clip_norm", "samples", "val_fraction", "seed")
_DENSITY_DRAWS_PER_FRAME = 4
_DENSITY_MAX_POINTS = 200_000
DEFAULT_DATA = "aligned.h5"
FEATURES_METHOD = "features"  # the alignment "method" of a model of plain feature tables


@dataclass(frozen=True)
class TrainingSet:
    """Aligned frames and what a model must remember about them."""

    xyz: np.ndarray  # (frames, atoms, dims) float32
    units: str
    alignment: dict[str, Any]
    atom_indices: np.ndarray
    reference: np.ndarray | None = None
    masses: np.ndarray | None = None
    topology: str | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    origin: str = "array"

    @property
    def is_features(self) -> bool:
        return self.alignment.get("method") == FEATURES_METHOD

    @classmethod
    def from_aligned(cls, data: AlignedData, origin: str) -> TrainingSet:
        attrs = data.attrs
        topology = attrs.get("topology")
        sources = attrs.get("sources")
        return cls(
            xyz=np.asarray(data.xyz, np.float32),
            units=str(attrs.get("units", "unknown")),
            alignment={
                "method": str(attrs.get("method")),
                "reference": str(attrs.get("reference")),
                "weights": str(attrs.get("weights")),
                "config": json.loads(attrs.get("config", "{}")),
                "read_options": json.loads(attrs.get("read_options", "{}")),
            },
            atom_indices=np.asarray(
                data.atom_indices if data.atom_indices is not None else np.arange(data.xyz.shape[1])
            ),
            reference=data.reference,
            masses=data.masses,
            topology=None if topology is None or str(topology) == "None" else str(topology),
            sources=json.loads(sources) if isinstance(sources, str) else list(sources or []),
            origin=origin,
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
            alignment={"method": FEATURES_METHOD, "reference": "none", "weights": "none"},
            atom_indices=np.arange(table.shape[1]),
            origin=origin,
        )


@dataclass
class TrainReport:
    """What a training run did: the summary printed, stored in the model, --json'd."""

    frames: int
    train_frames: int
    val_frames: int
    atoms: int
    dims: int
    latent_dim: int
    epochs_run: int
    best_epoch: int  # by validation loss (training loss without a validation set)
    kept_epoch: int  # whose parameters the model has: best_epoch with --patience, else last
    stopped_early: bool
    resumed_from_epoch: int | None
    train_loss: float
    val_loss: float | None
    recon_rmsd_train: float
    recon_rmsd_val: float | None
    recon_rmsd_per_atom_train: list[float]
    kl_per_dim: list[float]
    active_units: int
    density_components: int
    units: str
    devices: int
    frames_per_s: float
    wall_time_s: float
    output: str | None = None
    checkpoint: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_frames(xyz: np.ndarray, where: str | None, *, features: bool = False) -> None:
    if xyz.ndim != 3 or xyz.shape[-1] not in ((1,) if features else (2, 3)):
        raise BadInputError(f"expected frames (frames, atoms, 2 or 3), got {xyz.shape}", path=where)
    if xyz.shape[0] < 2:
        raise BadInputError(
            f"{xyz.shape[0]} frame(s): training needs at least 2 (better thousands)", path=where
        )
    finite = np.isfinite(xyz).all(axis=(1, 2))
    if not finite.all():
        frame = int(np.argmin(finite))
        atom = int(np.argwhere(~np.isfinite(xyz[frame]))[0][0])
        raise BadInputError(f"non-finite coordinate at frame {frame}, atom {atom}", path=where)


def _check_categorical(table: np.ndarray, where: str | None) -> None:
    """Rows of class indicators: one-hot, or weights over classes that sum to 1."""
    bad = (table < 0).any(axis=1) | (np.abs(table.sum(axis=1) - 1) > 1e-3)
    if bad.any():
        row = int(np.argmax(bad))
        raise BadInputError(
            f"--likelihood categorical needs one-hot rows (or class weights summing to 1); "
            f"row {row} sums to {table[row].sum():.4g}",
            path=where,
        )


def _split(frames: int, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation frame indices: a seeded random split. (Frames of a
    trajectory are correlated, so the validation loss is optimistic; it is still what
    tells overfitting apart from progress.)"""
    val = int(round(frames * config.val_fraction))
    if config.val_fraction > 0:
        val = min(max(val, 1), frames - 1)
    order = np.random.default_rng(config.seed).permutation(frames)
    return np.sort(order[val:]), np.sort(order[:val])


def _fingerprint(xyz: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(xyz, np.float32).tobytes())
    digest.update(repr(xyz.shape).encode())
    return digest.hexdigest()


def _mesh() -> Mesh | None:
    devices = jax.local_devices()
    return Mesh(np.array(devices), ("batch",)) if len(devices) > 1 else None


class _Run:
    """The mutable state of the loop, updated whole at the end of each epoch so that an
    interrupt at any point sees a consistent (state, best, history) triple."""

    def __init__(self, state, best_params, history):
        self.state = state
        self.best_params = best_params
        self.best_loss = math.inf
        self.best_epoch = 0
        self.since_best = 0
        self.history: dict[str, list] = history

    def epoch(self) -> int:
        return int(self.state.epoch)


def _history_arrays(history: dict[str, list]) -> dict[str, np.ndarray]:
    return {name: np.asarray(values) for name, values in history.items()}


def _write_checkpoint(path: Path, run: _Run, fields: dict[str, Any]) -> None:
    write_checkpoint(
        path,
        fields={
            **fields,
            "epoch": run.epoch(),
            "best_loss": run.best_loss if math.isfinite(run.best_loss) else None,
            "best_epoch": run.best_epoch,
            "since_best": run.since_best,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        trees={
            "state/params": run.state.params,
            "state/opt_state": run.state.opt_state,
            "best/params": run.best_params,
        },
        history=_history_arrays(run.history),
    )


def _restore(path: Path, run: _Run, fields: dict[str, Any], data_atoms: int, data_dims: int):
    saved = read_checkpoint_fields(path)
    if (saved.get("atoms"), saved.get("dims")) != (data_atoms, data_dims):
        raise BadInputError(
            f"the checkpoint was trained on {saved.get('atoms')} atoms in {saved.get('dims')}D "
            f"but the data have {data_atoms} atoms in {data_dims}D",
            path=path,
        )
    if saved.get("data_sha256") != fields["data_sha256"]:
        raise BadInputError(
            "the training frames differ from the checkpoint's (same atoms, other frames)",
            path=path,
        )
    if saved.get("model_config") != fields["model_config"]:
        raise UsageError(
            "the model options differ from the checkpoint's "
            f"({saved.get('model_config')}); resume with the same options",
            path=path,
        )
    saved_train = json.loads(saved.get("train_config", "{}"))
    current_train = json.loads(fields["train_config"])
    changed = [k for k in _RESUME_FIXED if saved_train.get(k) != current_train.get(k)]
    if changed:
        raise UsageError(
            f"resume needs the checkpoint's {', '.join('--' + k.replace('_', '-') for k in changed)} "
            f"({', '.join(f'{saved_train.get(k)!r}' for k in changed)})",
            path=path,
        )
    templates = {
        "state/params": run.state.params,
        "state/opt_state": run.state.opt_state,
        "best/params": run.best_params,
    }
    saved, trees, history = read_checkpoint(path, templates)
    run.state = run.state._replace(
        params=jax.tree.map(jnp.asarray, trees["state/params"]),
        opt_state=jax.tree.map(jnp.asarray, trees["state/opt_state"]),
        epoch=jnp.array(saved["epoch"], jnp.int32),
    )
    run.best_params = trees["best/params"]
    run.best_loss = math.inf if saved["best_loss"] is None else saved["best_loss"]
    run.best_epoch = saved["best_epoch"]
    run.since_best = saved["since_best"]
    run.history = {name: list(values) for name, values in history.items()}
    return saved["epoch"]


def train(
    data: TrainingSet | AlignedData | np.ndarray,
    model_config: ModelConfig = ModelConfig(features=None),
    train_config: TrainConfig = TrainConfig(),
    *,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: Progress | None = None,
) -> tuple[Model, TrainReport]:
    """Train a (beta-)VAE on aligned frames (frames, atoms, dims).

    checkpoint: a file written every `train_config.checkpoint_every` epochs and on
    interrupt (then InterruptedRunError); resume=True continues from it exactly.
    """
    started = time.perf_counter()
    if isinstance(data, AlignedData):
        data = TrainingSet.from_aligned(data, "aligned data")
    elif not isinstance(data, TrainingSet):
        data = TrainingSet.from_array(np.asarray(data))
    where = data.origin if data.origin not in ("array", "aligned data") else None
    _check_frames(data.xyz, where, features=data.is_features)
    frames, atoms, dims = data.xyz.shape
    model_config = dataclasses.replace(model_config, features=atoms * dims)
    if model_config.likelihood == "categorical":
        _check_categorical(data.xyz.reshape(frames, -1), where)
    train_index, val_index = _split(frames, train_config)
    if len(train_index) < train_config.batch_size:
        raise BadInputError(
            f"{len(train_index)} training frames (after holding out "
            f"{len(val_index)} for validation) are fewer than one batch of "
            f"{train_config.batch_size}; lower --batch-size or --val-fraction",
            path=where,
        )
    notes: list[str] = []
    flat = data.xyz.reshape(frames, -1)
    if model_config.likelihood == "categorical":  # class indicators are used as they are
        normalization = Normalization(
            np.zeros(flat.shape[1], np.float32), np.ones(flat.shape[1], np.float32)
        )
    else:
        normalization = fit_normalization(flat[train_index])
        constant = int(np.sum(find_constant_features(flat[train_index])))
        if constant > 0:
            notes.append(f"{constant} feature(s) are constant; they are only centred")
    normalized = (flat - normalization.mean) / normalization.std
    mesh = _mesh()
    trainer = make_trainer(model_config, train_config, frames=len(train_index), mesh=mesh)
    key = jax.random.key(train_config.seed)
    init_key, epoch_key, val_key, density_key = (jax.random.fold_in(key, i) for i in range(4))
    train_data = jnp.asarray(normalized[train_index])
    val_data = jnp.asarray(normalized[val_index]) if len(val_index) else None
    state = trainer.init(key=init_key)
    if mesh is not None:
        replicated = NamedSharding(mesh, PartitionSpec())
        state, train_data = jax.device_put((state, train_data), replicated)
        if val_data is not None:
            val_data = jax.device_put(val_data, replicated)
    run = _Run(state, jax.device_get(state.params), {})
    fields = {
        "model_config": model_config.to_json(),
        "train_config": train_config.to_json(),
        "data_sha256": _fingerprint(data.xyz),
        "atoms": atoms,
        "dims": dims,
    }
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    resumed_from = None
    if resume:
        if checkpoint is None:
            raise UsageError("resume needs a checkpoint file")
        resumed_from = _restore(checkpoint, run, fields, atoms, dims)
        if mesh is not None:
            run.state = jax.device_put(run.state, NamedSharding(mesh, PartitionSpec()))
        notes.append(f"resumed from {checkpoint} after epoch {resumed_from}")

    stopped_early = False
    epoch_time = 0.0
    trained_epochs = 0
    compiled = False
    try:
        for epoch in range(run.epoch(), train_config.epochs):
            beta = jnp.float32(train_config.beta_at(epoch))
            tick = time.perf_counter()
            state, metrics = trainer.run_epoch(run.state, train_data, beta, key=epoch_key)
            bad_step = int(metrics.bad_step)
            if bad_step >= 0:
                run.state = state  # the parameters before the bad step
                where_saved = ""
                if checkpoint is not None:
                    _write_checkpoint(checkpoint, run, fields)
                    where_saved = f"; the last good parameters are in {checkpoint}"
                raise NumericalError(
                    f"non-finite loss or gradient at epoch {epoch + 1}, step {bad_step + 1}"
                    f"{where_saved}; try a lower --lr, --clip-norm 1, or --kl-warmup 20"
                )
            val = (
                trainer.evaluate(state.params, val_data, beta, key=val_key)
                if val_data is not None
                else None
            )
            record = {
                "loss": float(metrics.loss),
                "reconstruction": float(metrics.reconstruction),
                "kl": np.asarray(metrics.kl).tolist(),
                "beta": float(beta),
                "val_loss": float(val.loss) if val is not None else math.nan,
                "val_reconstruction": float(val.reconstruction) if val is not None else math.nan,
                "val_kl": np.asarray(val.kl).tolist()
                if val is not None
                else [math.nan] * model_config.latent_dim,
            }
            elapsed = time.perf_counter() - tick
            if compiled:  # the first epoch of a process also compiles
                epoch_time += elapsed
                trained_epochs += 1
            compiled = True
            watched = record["val_loss"] if val is not None else record["loss"]
            improved = watched < run.best_loss
            best_params = jax.device_get(state.params) if improved else run.best_params
            record["seconds"] = elapsed
            history = {name: [*run.history.get(name, []), value] for name, value in record.items()}
            # commit the epoch in one go
            run.state, run.best_params, run.history = state, best_params, history
            if improved:
                run.best_loss, run.best_epoch, run.since_best = watched, epoch + 1, 0
            else:
                run.since_best += 1
            if progress is not None:
                rate = len(train_index) / elapsed if elapsed > 0 else math.nan
                detail = f"loss {record['loss']:.4g}"
                if val is not None:
                    detail += f"  val {record['val_loss']:.4g}"
                detail += f"  KL {sum(record['kl']):.3g}  {rate:,.0f} frames/s"
                progress(epoch + 1, train_config.epochs, "training", detail)
            if (
                checkpoint is not None
                and train_config.checkpoint_every
                and (epoch + 1) % train_config.checkpoint_every == 0
            ):
                _write_checkpoint(checkpoint, run, fields)
            if stop_requested():  # a SIGTERM whose KeyboardInterrupt Python swallowed
                raise KeyboardInterrupt
            if train_config.patience is not None and run.since_best >= train_config.patience:
                stopped_early = True
                notes.append(
                    f"stopped early after epoch {epoch + 1}: no validation gain in "
                    f"{train_config.patience} epochs"
                )
                break
    except KeyboardInterrupt:
        if checkpoint is None:
            raise
        _write_checkpoint(checkpoint, run, fields)
        raise InterruptedRunError(
            f"interrupted after epoch {run.epoch()}; checkpoint written, "
            "run the same command with --resume to continue",
            path=checkpoint,
        ) from None

    record = ModelRecord(
        model_config=model_config,
        params=jax.tree.map(
            np.asarray, run.best_params if train_config.patience is not None else run.state.params
        ),
        normalization_mean=normalization.mean,
        normalization_std=normalization.std,
        alignment=data.alignment,
        atom_indices=data.atom_indices,
        atoms=atoms,
        dims=dims,
        units=data.units,
        reference=data.reference,
        masses=data.masses,
        topology=data.topology,
        train_config=train_config.to_json(),
        history=_history_arrays(run.history),
    )
    model = Model(record)
    diagnostics = _diagnose(model, data, train_index, val_index, train_config, key=density_key)
    history = run.history
    report = TrainReport(
        frames=frames,
        train_frames=len(train_index),
        val_frames=len(val_index),
        atoms=atoms,
        dims=dims,
        latent_dim=model_config.latent_dim,
        epochs_run=run.epoch(),
        best_epoch=run.best_epoch,
        kept_epoch=run.best_epoch if train_config.patience is not None else run.epoch(),
        stopped_early=stopped_early,
        resumed_from_epoch=resumed_from,
        train_loss=float(history["loss"][-1]) if history.get("loss") else math.nan,
        val_loss=float(history["val_loss"][-1]) if len(val_index) and history else None,
        **diagnostics,
        units=data.units,
        devices=1 if mesh is None else mesh.size,
        frames_per_s=len(train_index) * trained_epochs / epoch_time if epoch_time else math.nan,
        wall_time_s=time.perf_counter() - started,
        notes=notes,
    )
    record.summary = {k: v for k, v in report.to_dict().items() if k not in ("notes",)}
    record.provenance = {
        "sources": data.sources,
        "origin": data.origin,
        "data_sha256": fields["data_sha256"],
        "seed": train_config.seed,
        "train_frames": len(train_index),
        "val_frames": len(val_index),
        "vaetraj_version": __version__,
        "jax_version": jax.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return model, report


def train_features(
    table: np.ndarray,
    model_config: ModelConfig = ModelConfig(features=None),
    train_config: TrainConfig = TrainConfig(),
    **options: Any,
) -> tuple[Model, TrainReport]:
    """Train on a plain table (frames, features), with no alignment: one-hot classes
    (`likelihood="categorical"`), dihedral features, curves, any vectors. The model's
    encode takes such tables and its decode gives them. Options as for `train`."""
    return train(TrainingSet.from_features(table), model_config, train_config, **options)


def _diagnose(
    model: Model,
    data: TrainingSet,
    train_index: np.ndarray,
    val_index: np.ndarray,
    train_config: TrainConfig,
    *,
    key: jax.Array,
) -> dict[str, Any]:
    """Diagnostics of the kept parameters, and the latent density fitted into the model.
    Every frame is encoded and decoded once."""
    mean, std = model.encode(data.xyz)
    decoded = model.decode(mean).reshape(data.xyz.shape)
    displacement = np.sum((decoded - data.xyz) ** 2, axis=-1)  # (frames, atoms)
    rmsd = np.sqrt(displacement.mean(axis=1))
    # The per-dimension KL at the marginal std (exact for a diagonal posterior).
    kl = compute_kl_diagonal(jnp.asarray(mean[train_index]), jnp.asarray(std[train_index]))
    draw_key, fit_key = jax.random.split(key)
    draws = min(_DENSITY_DRAWS_PER_FRAME, max(1, _DENSITY_MAX_POINTS // len(mean)))
    eps = np.asarray(jax.random.normal(draw_key, (draws, *mean.shape)))
    points = (mean[None] + std[None] * eps).reshape(-1, mean.shape[1])
    components = min(train_config.density_components, len(points))
    fit = fit_gaussian_mixture(jnp.asarray(points), components=components, key=fit_key)
    model.record.density = {
        name: np.asarray(value) for name, value in fit.mixture._asdict().items()
    }
    if not data.is_features:
        model.record.data_stats = compute_data_stats(data.xyz, data.topology, data.masses).to_dict()
    return {
        "recon_rmsd_train": float(rmsd[train_index].mean()),
        "recon_rmsd_val": float(rmsd[val_index].mean()) if len(val_index) else None,
        "recon_rmsd_per_atom_train": np.sqrt(displacement[train_index].mean(axis=0)).tolist(),
        "kl_per_dim": np.asarray(jnp.mean(kl, axis=0)).tolist(),
        "active_units": int(compute_active_units(mean[train_index])),
        "density_components": components,
    }


def _training_set(
    inputs: Sequence[str | os.PathLike],
    align_config: AlignConfig,
    read_options: ReadOptions,
    progress: Progress | None,
) -> TrainingSet:
    """One aligned .h5 is read as is; anything else is aligned first, as `align` would."""
    if len(inputs) == 1 and Path(inputs[0]).suffix.lower() in (".h5", ".hdf5"):
        path = Path(inputs[0])
        if _is_aligned(path):
            return TrainingSet.from_aligned(read_aligned(path), str(path))
    with tempfile.TemporaryDirectory(prefix="vaetraj-train-") as folder:
        aligned = Path(folder) / "aligned.h5"
        align_file(inputs, aligned, align_config, read_options, progress=progress)
        return TrainingSet.from_aligned(read_aligned(aligned), ", ".join(map(str, inputs)))


def _is_aligned(path: Path) -> bool:
    import h5py

    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as handle:
            return handle.attrs.get("format") == ALIGNED_FORMAT
    except OSError:
        return False


def default_checkpoint(output: str | os.PathLike) -> Path:
    """model.h5 -> model.ckpt.h5, beside the model."""
    output = Path(output)
    return output.with_name(output.stem + ".ckpt.h5")


def train_file(
    inputs: Sequence[str | os.PathLike] | None,
    output: str | os.PathLike = "model.h5",
    model_config: ModelConfig = ModelConfig(features=None),
    train_config: TrainConfig = TrainConfig(),
    *,
    align_config: AlignConfig = AlignConfig(),
    read_options: ReadOptions = ReadOptions(),
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    features: bool = False,
    progress: Progress | None = None,
) -> TrainReport:
    """Train on an aligned .h5 (no inputs: ./aligned.h5) or raw inputs, write the model
    atomically, and remove the checkpoint once the model is safely written.

    features=True: the one input is a plain table (.npy, .npz or .csv, frames x
    features), trained on as it is (see `train_features`)."""
    output = Path(output)
    if output.suffix.lower() not in (".h5", ".hdf5"):
        raise UsageError(f"a model file must be .h5, got '{output.suffix}'", path=output)
    check_output(output, overwrite=overwrite)
    checkpoint = Path(checkpoint) if checkpoint is not None else default_checkpoint(output)
    if not resume and checkpoint.exists() and not overwrite:
        raise UsageError(
            "a checkpoint of an unfinished run exists; add --resume to continue it "
            "or --overwrite to start afresh",
            path=checkpoint,
        )
    if resume and not checkpoint.exists():
        raise InputMissingError("no checkpoint to resume from", path=checkpoint)
    if features:
        if not inputs or len(inputs) != 1:
            raise UsageError("--features trains on exactly one table (.npy, .npz or .csv)")
        table = read_features(inputs[0], key=read_options.key)
        data = TrainingSet.from_features(table, origin=str(inputs[0]))
        data = dataclasses.replace(data, sources=[describe_table(inputs[0], table)])
    else:
        if not inputs:
            inputs = [DEFAULT_DATA]
            if not Path(DEFAULT_DATA).exists():
                raise InputMissingError(
                    "no such file (run `vaetraj align` first, or name the data to train on)",
                    path=DEFAULT_DATA,
                )
        data = _training_set(inputs, align_config, read_options, progress)
    model, report = train(
        data, model_config, train_config, checkpoint=checkpoint, resume=resume, progress=progress
    )
    model.save(output, overwrite=overwrite)
    checkpoint.unlink(missing_ok=True)
    report.output = str(output)
    report.checkpoint = str(checkpoint)
    return report
