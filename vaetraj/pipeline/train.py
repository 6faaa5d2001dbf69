"""`train` and `train_file`: aligned frames in, a `Model` (and model file) out.

`train` runs in three phases, each a function with a small record out:

1. `_prepare`: checks, the split into training and validation blocks, normalization.
2. `_fit`: the Python loop around the jit-compiled epoch: validation, the epoch kept,
   progress, checkpoints, interrupts, and the divergence guard (a bad epoch is rolled
   back and run again at half the rate, up to `max_recoveries` times).
3. `_assess`: what the kept parameters are worth (explained variance against PCA's,
   the validation gap, the latent density); a model that explains almost nothing is a
   failed training (`TrainingFailedError`), not a file that looks normal.
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

from vaetraj._interrupt import check_stop, deferred
from vaetraj._memory import FLOAT, require_memory
from vaetraj._version import __version__
from vaetraj.errors import (
    BadInputError,
    InputMissingError,
    InterruptedRunError,
    NumericalError,
    TrainingFailedError,
    UsageError,
)
from vaetraj.io._atomic import check_output, run_lock
from vaetraj.io.aligned import ALIGNED_FORMAT, AlignedData, read_aligned
from vaetraj.io.checkpoint import read_checkpoint, read_checkpoint_fields, write_checkpoint
from vaetraj.io.features import describe_table, read_features
from vaetraj.io.model_file import ModelRecord
from vaetraj.io.trajectory import ReadOptions
from vaetraj.model import (
    ModelConfig,
    Normalization,
    compute_active_units,
    compute_explained_variance,
    compute_kl_diagonal,
    compute_pca_explained_variance,
    find_constant_features,
    fit_gaussian_mixture,
    fit_normalization,
)
from vaetraj.pipeline.align import AlignConfig, align_file
from vaetraj.pipeline.model import Model
from vaetraj.pipeline.structure import compute_data_stats
from vaetraj.train import NON_FINITE, TrainConfig, TrainState, make_trainer, split_blocks

Progress = Callable[..., None]
# what every epoch adds to the history (the model's /history, the checkpoint's)
HISTORY_METRICS = ("loss", "reconstruction", "kl", "beta", "val_loss", "val_reconstruction",
                   "val_kl", "lr_scale", "seconds")  # fmt: skip

# Train-config fields a resumed run must share with its checkpoint: they fix the shapes
# of the optimizer state, the data split or the random stream. The others (epochs, lr,
# schedule, beta, patience, ...) may be changed on resume, e.g. to lower the rate.
_RESUME_FIXED = (
    "batch_size",
    "optimizer",
    "clip_norm",
    "weight_decay",
    "samples",
    "val_fraction",
    "val_blocks",
    "seed",
)
_DENSITY_DRAWS_PER_FRAME = 4
_DENSITY_MAX_POINTS = 200_000
_PCA_MAX_FRAMES = 4096  # the PCA yardstick is fitted on at most this many training frames
_RATE_BACKOFF = 0.5  # the divergence guard's factor on the rate at each recovery
_GAP_NOTE = 1.5  # validation RMSD above this many times the training RMSD earns a note
DEFAULT_DATA = "aligned.h5"
FEATURES_METHOD = "features"  # the alignment "method" of a model of plain feature tables


@dataclass(frozen=True)
class TrainingSet:
    """Aligned frames and what a model must remember about them. lengths: frames of
    each trajectory (input file) in order; empty means one trajectory."""

    xyz: np.ndarray  # (frames, atoms, dims) float32
    units: str
    alignment: dict[str, Any]
    atom_indices: np.ndarray
    reference: np.ndarray | None = None
    masses: np.ndarray | None = None
    topology: str | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    origin: str = "array"
    lengths: tuple[int, ...] = ()

    @property
    def is_features(self) -> bool:
        return self.alignment.get("method") == FEATURES_METHOD

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
        return cls(
            xyz=np.asarray(data.xyz, np.float32),
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
            alignment={"method": FEATURES_METHOD, "reference": "none", "weights": "none"},
            atom_indices=np.arange(table.shape[1]),
            origin=origin,
        )


@dataclass
class TrainReport:
    """What a training run did: the summary printed, stored in the model, --json'd.

    explained_variance_*: 1 - (squared reconstruction error) / (squared deviation from
    the training mean), of the kept model on training and validation frames;
    pca_explained_variance: the same for PCA with latent_dim components on the training
    frames, the linear yardstick; decoded_variance: the spread of the decoded frames as
    a share of the data's (about 0 when the decoder ignores z); val_gap: validation over
    training reconstruction RMSD. status: "ok", or "failed" for a model that explains
    less than `min_explained` of what PCA does (or gives non-finite output)."""

    frames: int
    train_frames: int
    val_frames: int
    trajectories: int
    atoms: int
    dims: int
    latent_dim: int
    epochs_run: int
    best_epoch: int  # by validation loss at the final beta (training loss without one)
    kept_epoch: int  # whose parameters the model has; the losses below are this epoch's
    stopped_early: bool
    resumed_from_epoch: int | None
    train_loss: float
    val_loss: float | None
    recon_rmsd_train: float
    recon_rmsd_val: float | None
    val_gap: float | None
    explained_variance_train: float
    explained_variance_val: float | None
    pca_explained_variance: float
    decoded_variance: float
    recon_rmsd_per_atom_train: list[float]
    kl_per_dim: list[float]
    active_units: int
    density_components: int
    recoveries: list[dict[str, Any]]
    final_lr: float
    status: str
    units: str
    devices: int
    frames_per_s: float
    wall_time_s: float
    output: str | None = None
    checkpoint: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class _Prepared:
    """Phase 1's result: normalized frames split into training and validation."""

    model_config: ModelConfig
    normalization: Normalization
    train_index: np.ndarray
    val_index: np.ndarray
    train_data: np.ndarray  # (train frames, features) normalized
    val_data: np.ndarray | None
    feature_std: np.ndarray | None  # spread of each feature of train_data; None: 1
    notes: list[str]


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


def _prepare(
    data: TrainingSet, model_config: ModelConfig, train_config: TrainConfig, where: str | None
) -> _Prepared:
    _check_frames(data.xyz, where, features=data.is_features)
    frames, atoms, dims = data.xyz.shape
    model_config = dataclasses.replace(model_config, features=atoms * dims)
    flat = data.xyz.reshape(frames, -1)
    if model_config.likelihood == "categorical":
        _check_categorical(flat, where)
    train_index, val_index = split_blocks(
        data.trajectory_lengths,
        train_config.val_fraction,
        blocks=train_config.val_blocks,
        seed=train_config.seed,
    )
    if len(train_index) < train_config.batch_size:
        raise BadInputError(
            f"{len(train_index)} training frames (after holding out "
            f"{len(val_index)} for validation) are fewer than one batch of "
            f"{train_config.batch_size}; lower --batch-size or --val-fraction",
            path=where,
        )
    notes: list[str] = []
    feature_std = None
    if model_config.likelihood == "categorical":  # class indicators are used as they are
        normalization = Normalization(
            np.zeros(flat.shape[1], np.float32), np.ones(flat.shape[1], np.float32)
        )
        feature_std = fit_normalization(flat[train_index]).std
    else:
        normalization = fit_normalization(flat[train_index])
        constant = int(np.sum(find_constant_features(flat[train_index])))
        if constant > 0:
            notes.append(f"{constant} feature(s) are constant; they are only centred")
    normalized = (flat - normalization.mean) / normalization.std
    return _Prepared(
        model_config=model_config,
        normalization=normalization,
        train_index=train_index,
        val_index=val_index,
        train_data=normalized[train_index],
        val_data=normalized[val_index] if len(val_index) else None,
        feature_std=feature_std,
        notes=notes,
    )


def _fingerprint(xyz: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(xyz, np.float32).tobytes())
    digest.update(repr(xyz.shape).encode())
    return digest.hexdigest()


def _mesh() -> Mesh | None:
    devices = jax.local_devices()
    return Mesh(np.array(devices), ("batch",)) if len(devices) > 1 else None


@dataclass(frozen=True)
class _Point:
    """Where a run stands after some epochs. Immutable: the loop commits an epoch by
    replacing the whole point, so an interrupt at any moment sees a consistent one, and
    a snapshot (the guard's anchor) is a reference. history: one value per epoch."""

    state: TrainState
    best_params: dict
    best_loss: float = math.inf  # by validation loss at the final beta
    best_epoch: int = 0
    since_best: int = 0
    history: dict[str, list] = field(default_factory=dict)

    @property
    def epoch(self) -> int:
        return int(self.state.epoch)


class _Run:
    """The loop's mutable record: the current point; the anchor, the end of the last
    clean epoch (no step far above the loss floor), which a bad epoch rolls back to;
    the recoveries so far."""

    def __init__(self, point: _Point):
        self.point = point
        self.anchor = point
        self.recoveries: list[dict[str, Any]] = []

    def epoch(self) -> int:
        return self.point.epoch


def _guard_tree(state: TrainState) -> dict[str, jax.Array]:
    """The TrainState scalars besides epoch, as a pytree a checkpoint holds bit for bit."""
    return {
        "lr_scale": state.lr_scale,
        "loss_level": state.loss_level,
        "loss_spread": state.loss_spread,
        "loss_floor": state.loss_floor,
        "over": state.over,
    }


def _history_arrays(history: dict[str, list]) -> dict[str, np.ndarray]:
    return {name: np.asarray(values) for name, values in history.items()}


def _point_fields(point: _Point) -> dict[str, Any]:
    return {
        "epoch": point.epoch,
        "best_loss": point.best_loss if math.isfinite(point.best_loss) else None,
        "best_epoch": point.best_epoch,
        "since_best": point.since_best,
    }


def _point_trees(prefix: str, point: _Point) -> dict[str, Any]:
    return {
        f"{prefix}state/params": point.state.params,
        f"{prefix}state/opt_state": point.state.opt_state,
        f"{prefix}state/guard": _guard_tree(point.state),
        f"{prefix}best/params": point.best_params,
    }


def _write_checkpoint(path: Path, run: _Run, fields: dict[str, Any]) -> None:
    """The current point, and the anchor when it is an earlier one (its history is the
    current history's first anchor-epoch entries)."""
    anchored = run.anchor is not run.point
    write_checkpoint(
        path,
        fields={
            **fields,
            **_point_fields(run.point),
            "anchor": _point_fields(run.anchor) if anchored else None,
            "recoveries": run.recoveries,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        trees={
            **_point_trees("", run.point),
            **(_point_trees("anchor/", run.anchor) if anchored else {}),
        },
        history=_history_arrays(run.point.history),
    )


def _check_resumable(saved: dict[str, Any], fields: dict[str, Any], path: Path) -> None:
    if (saved.get("atoms"), saved.get("dims")) != (fields["atoms"], fields["dims"]):
        raise BadInputError(
            f"the checkpoint was trained on {saved.get('atoms')} atoms in {saved.get('dims')}D "
            f"but the data have {fields['atoms']} atoms in {fields['dims']}D",
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


def _restore(path: Path, run: _Run, fields: dict[str, Any]) -> int:
    """Continue `run` from the checkpoint at `path`; returns the epoch it was at."""
    saved = read_checkpoint_fields(path)
    _check_resumable(saved, fields, path)
    template = run.point
    anchored = saved.get("anchor") is not None
    templates = {
        **_point_trees("", template),
        **(_point_trees("anchor/", template) if anchored else {}),
    }
    saved, trees, history = read_checkpoint(path, templates)
    missing = [name for name in HISTORY_METRICS if name not in history]
    if saved["epoch"] > 0 and missing:  # a resumed history must stay whole
        raise BadInputError(f"damaged checkpoint: missing /history/{missing[0]}", path=path)
    history = {name: list(values) for name, values in history.items()}

    def point(prefix: str, values: dict[str, Any]) -> _Point:
        state = template.state._replace(
            params=jax.tree.map(jnp.asarray, trees[f"{prefix}state/params"]),
            opt_state=jax.tree.map(jnp.asarray, trees[f"{prefix}state/opt_state"]),
            epoch=jnp.array(values["epoch"], jnp.int32),
            **{k: jnp.asarray(v) for k, v in trees[f"{prefix}state/guard"].items()},
        )
        return _Point(
            state=state,
            best_params=trees[f"{prefix}best/params"],
            best_loss=math.inf if values["best_loss"] is None else values["best_loss"],
            best_epoch=values["best_epoch"],
            since_best=values["since_best"],
            history={name: v[: values["epoch"]] for name, v in history.items()},
        )

    run.point = point("", saved)
    run.anchor = point("anchor/", saved["anchor"]) if anchored else run.point
    run.recoveries = list(saved.get("recoveries", []))
    saved_lr = json.loads(saved["train_config"]).get("lr")
    if run.recoveries and saved_lr != json.loads(fields["train_config"])["lr"]:
        # a new --lr replaces the rate the guard had lowered: it applies as given
        def as_given(p: _Point) -> _Point:
            state = p.state._replace(lr_scale=jnp.ones_like(p.state.lr_scale))
            return dataclasses.replace(p, state=state)

        current = as_given(run.point)
        run.anchor = as_given(run.anchor) if anchored else current
        run.point = current
    return saved["epoch"]


@dataclass
class _Timing:
    seconds: float = 0.0  # in epochs after the first of the process (which compiles)
    epochs: int = 0
    stopped_early: bool = False


def _recover(
    run: _Run,
    failed: TrainState,
    metrics: Any,
    train_config: TrainConfig,
    checkpoint: Path | None,
    fields: dict[str, Any],
    notes: list[str],
) -> None:
    """A bad epoch (run from the state `failed`): roll back to the anchor, the end of
    the last clean epoch, at half the rate; or stop (exit 3) when the recoveries are
    spent. Deterministic, so a resumed run recovers alike."""
    epoch = int(failed.epoch) + 1
    step = int(metrics.bad_step) + 1
    what = (
        "a non-finite loss or gradient" if int(metrics.bad_kind) == NON_FINITE else "a loss spike"
    )
    rate = train_config.lr * float(failed.lr_scale)
    if len(run.recoveries) >= train_config.max_recoveries:
        run.point = run.anchor  # the last good state
        where_saved = ""
        if checkpoint is not None:
            _write_checkpoint(checkpoint, run, fields)
            where_saved = f"; the last good state (epoch {run.anchor.epoch}) is in {checkpoint}"
        tries = len(run.recoveries)
        raise NumericalError(
            f"training diverged: {what} at epoch {epoch}, step {step}"
            + (f", after {tries} recoveries that lowered the rate to {rate:.2g}" if tries else "")
            + f"{where_saved}; try a lower --lr (below {rate:.2g}), --clip-norm 1 or --kl-warmup 20"
        )
    scale = float(failed.lr_scale) * _RATE_BACKOFF
    anchor = run.anchor
    state = anchor.state._replace(
        lr_scale=jnp.asarray(scale, jnp.float32), over=anchor.state.over * 0
    )
    run.point = run.anchor = dataclasses.replace(anchor, state=state)
    run.recoveries.append(
        {"epoch": epoch, "step": step, "kind": what, "lr": train_config.lr * scale}
    )
    notes.append(
        f"epoch {epoch}: {what} at step {step}; rolled back to the end of epoch {anchor.epoch} "
        f"and halved the learning rate to {train_config.lr * scale:.2g}"
    )


def _fit(
    run: _Run,
    trainer: Any,
    train_data: jax.Array,
    val_data: jax.Array | None,
    train_config: TrainConfig,
    *,
    keys: tuple[jax.Array, jax.Array],
    checkpoint: Path | None,
    fields: dict[str, Any],
    progress: Progress | None,
    notes: list[str],
) -> _Timing:
    """Run the epochs left; `run` holds the outcome. The epoch kept as best is judged by
    its loss at the final beta, so a KL warm-up does not favour its own early epochs."""
    epoch_key, val_key = keys
    final_beta = train_config.beta
    timing = _Timing()
    compiled = False
    while run.epoch() < train_config.epochs:
        check_stop()  # a signal before the epoch (during start-up, say): no epoch more
        point, epoch = run.point, run.epoch()
        beta = jnp.float32(train_config.beta_at(epoch))
        tick = time.perf_counter()
        before = point.state
        if epoch > 0 and train_config.beta_at(epoch) != train_config.beta_at(epoch - 1):
            # a rising beta raises the reconstruction loss on purpose: judge spikes
            # against the level reached under this beta, not an earlier one
            before = before._replace(loss_floor=before.loss_level)
        state, metrics = trainer.run_epoch(before, train_data, beta, key=epoch_key)
        if int(metrics.bad_step) >= 0:
            _recover(run, before, metrics, train_config, checkpoint, fields, notes)
            continue
        val = (
            None
            if val_data is None
            else trainer.evaluate(state.params, val_data, beta, key=val_key)
        )
        kl = np.asarray(metrics.kl).tolist()
        record = {
            "loss": float(metrics.loss),
            "reconstruction": float(metrics.reconstruction),
            "kl": kl,
            "beta": float(beta),
            "val_loss": math.nan if val is None else float(val.loss),
            "val_reconstruction": math.nan if val is None else float(val.reconstruction),
            "val_kl": [math.nan] * len(kl) if val is None else np.asarray(val.kl).tolist(),
            "lr_scale": float(state.lr_scale),
        }
        elapsed = time.perf_counter() - tick
        assert set(record) | {"seconds"} == set(HISTORY_METRICS)
        if compiled:
            timing.seconds += elapsed
            timing.epochs += 1
        compiled = True
        watched_terms = metrics if val is None else val
        watched = float(watched_terms.reconstruction) + final_beta * float(
            jnp.sum(watched_terms.kl)
        )
        record["seconds"] = elapsed
        history = {name: [*point.history.get(name, []), value] for name, value in record.items()}
        if watched < point.best_loss:
            best = {"best_params": jax.device_get(state.params), "best_loss": watched,
                    "best_epoch": epoch + 1, "since_best": 0}  # fmt: skip
        else:
            best = {"since_best": point.since_best + 1}
        run.point = dataclasses.replace(point, state=state, history=history, **best)  # commit
        if int(metrics.high_steps) == 0:
            run.anchor = run.point
        if progress is not None:
            rate = len(train_data) / elapsed if elapsed > 0 else math.nan
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
        check_stop()  # a signal during the epoch (deferred) or one Python swallowed
        if train_config.patience is not None and run.point.since_best >= train_config.patience:
            timing.stopped_early = True
            notes.append(
                f"stopped early after epoch {epoch + 1}: no validation gain in "
                f"{train_config.patience} epochs"
            )
            break
    return timing


def _require_training_memory(
    model_config: ModelConfig, train_config: TrainConfig, data_bytes: int
) -> None:
    """Refuse a network the machine cannot hold (`--hidden 10000000` aborted in XLA):
    the parameters about 8 times over (gradients, Adam's two moments, the best and
    the anchor epochs, host copies), a batch's activations, and the data twice."""
    hidden, layers, features = model_config.hidden, model_config.layers, model_config.features
    per_net = features * hidden + (layers - 2) * hidden * hidden + hidden * features
    params = 2 * per_net + hidden * (model_config.latent_dim + model_config.encoder_outputs)
    activations = train_config.batch_size * hidden * layers * 2 * 3
    require_memory(
        FLOAT * (8 * params + activations) + 2 * data_bytes,
        f"--hidden {hidden} with --layers {layers} ({params:,} parameters)",
        "use a smaller --hidden or fewer --layers",
    )


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
    Raises NumericalError when training diverges beyond recovery, and
    TrainingFailedError (holding the model and report) when the model it leaves
    explains almost none of the data.
    """
    started = time.perf_counter()
    if isinstance(data, AlignedData):
        data = TrainingSet.from_aligned(data, "aligned data")
    elif not isinstance(data, TrainingSet):
        data = TrainingSet.from_array(np.asarray(data))
    where = data.origin if data.origin not in ("array", "aligned data") else None
    prepared = _prepare(data, model_config, train_config, where)
    model_config, notes = prepared.model_config, list(prepared.notes)
    _require_training_memory(model_config, train_config, data.xyz.nbytes)
    frames, atoms, dims = data.xyz.shape
    mesh = _mesh()
    trainer = make_trainer(
        model_config,
        train_config,
        frames=len(prepared.train_index),
        mesh=mesh,
        feature_std=prepared.feature_std,
    )
    key = jax.random.key(train_config.seed)
    init_key, epoch_key, val_key, density_key = (jax.random.fold_in(key, i) for i in range(4))
    train_data = jnp.asarray(prepared.train_data)
    val_data = None if prepared.val_data is None else jnp.asarray(prepared.val_data)
    state = trainer.init(key=init_key)
    if mesh is not None:
        replicated = NamedSharding(mesh, PartitionSpec())
        state, train_data = jax.device_put((state, train_data), replicated)
        if val_data is not None:
            val_data = jax.device_put(val_data, replicated)
    run = _Run(_Point(state, jax.device_get(state.params)))
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
        resumed_from = _restore(checkpoint, run, fields)
        if mesh is not None:
            _replicate(run, NamedSharding(mesh, PartitionSpec()))
        notes.append(f"resumed from {checkpoint} after epoch {resumed_from}")
        notes.extend(
            f"epoch {r['epoch']}: {r['kind']} at step {r['step']}; recovered at rate {r['lr']:.2g}"
            for r in run.recoveries
        )
    try:
        with deferred():  # a signal stops the run at the end of its epoch (see _interrupt)
            timing = _fit(
                run,
                trainer,
                train_data,
                val_data,
                train_config,
                keys=(epoch_key, val_key),
                checkpoint=checkpoint,
                fields=fields,
                progress=progress,
                notes=notes,
            )
    except KeyboardInterrupt:
        if checkpoint is None or run.epoch() == 0:  # no epoch done: nothing to keep
            raise
        _write_checkpoint(checkpoint, run, fields)
        raise InterruptedRunError(
            f"interrupted after epoch {run.epoch()}; checkpoint written, "
            "run the same command with --resume to continue",
            path=checkpoint,
        ) from None

    point = run.point
    keep_best = train_config.keep == "best" and point.best_epoch > 0
    record = ModelRecord(
        model_config=model_config,
        params=jax.tree.map(np.asarray, point.best_params if keep_best else point.state.params),
        normalization_mean=prepared.normalization.mean,
        normalization_std=prepared.normalization.std,
        alignment=data.alignment,
        atom_indices=data.atom_indices,
        atoms=atoms,
        dims=dims,
        units=data.units,
        reference=data.reference,
        masses=data.masses,
        topology=data.topology,
        train_config=train_config.to_json(),
        history=_history_arrays(point.history),
    )
    model = Model(record)
    quality = _assess(model, data, prepared, train_config, key=density_key)
    history = point.history
    kept_epoch = point.best_epoch if keep_best else point.epoch
    report = TrainReport(
        frames=frames,
        train_frames=len(prepared.train_index),
        val_frames=len(prepared.val_index),
        trajectories=len(data.trajectory_lengths),
        atoms=atoms,
        dims=dims,
        latent_dim=model_config.latent_dim,
        epochs_run=run.epoch(),
        best_epoch=point.best_epoch,
        kept_epoch=kept_epoch,
        stopped_early=timing.stopped_early,
        resumed_from_epoch=resumed_from,
        train_loss=_at_epoch(history, "loss", kept_epoch),
        val_loss=_at_epoch(history, "val_loss", kept_epoch) if len(prepared.val_index) else None,
        **quality.fields,
        recoveries=list(run.recoveries),
        final_lr=train_config.lr * float(point.state.lr_scale),
        status="failed" if quality.failure else "ok",
        units=data.units,
        devices=1 if mesh is None else mesh.size,
        frames_per_s=len(prepared.train_index) * timing.epochs / timing.seconds
        if timing.seconds
        else math.nan,
        wall_time_s=time.perf_counter() - started,
        notes=notes + quality.notes,
    )
    record.summary = {k: v for k, v in report.to_dict().items() if k not in ("notes",)}
    record.provenance = {
        "sources": data.sources,
        "origin": data.origin,
        "data_sha256": fields["data_sha256"],
        "seed": train_config.seed,
        "train_frames": len(prepared.train_index),
        "val_frames": len(prepared.val_index),
        "val_blocks": _blocks(prepared.val_index),
        "vaetraj_version": __version__,
        "jax_version": jax.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if quality.failure:
        raise TrainingFailedError(quality.failure, model=model, report=report)
    return model, report


def _replicate(run: _Run, sharding: NamedSharding) -> None:
    """Put a restored run's states on every device of the mesh."""

    def placed(point: _Point) -> _Point:
        return dataclasses.replace(point, state=jax.device_put(point.state, sharding))

    same = run.anchor is run.point
    run.point = placed(run.point)
    run.anchor = run.point if same else placed(run.anchor)


def _at_epoch(history: dict[str, list], name: str, epoch: int) -> float:
    """history[name] of 1-based `epoch` (nan when there is none)."""
    values = history.get(name, [])
    return float(values[epoch - 1]) if 0 < epoch <= len(values) else math.nan


def _blocks(index: np.ndarray) -> list[list[int]]:
    """[first, last + 1) of each run of consecutive frames in a sorted index."""
    if len(index) == 0:
        return []
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    return [[int(run[0]), int(run[-1]) + 1] for run in np.split(index, breaks)]


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


@dataclass(frozen=True)
class _Quality:
    fields: dict[str, Any]  # TrainReport fields
    notes: list[str]
    failure: str | None  # why the model does not work, or None


def _assess(
    model: Model,
    data: TrainingSet,
    prepared: _Prepared,
    train_config: TrainConfig,
    *,
    key: jax.Array,
) -> _Quality:
    """Diagnostics of the kept parameters, and the latent density fitted into the model.
    Every frame is encoded and decoded once."""
    train_index, val_index = prepared.train_index, prepared.val_index
    xyz = data.xyz
    mean, std = model.encode(xyz)
    decoded = model.decode(mean).reshape(xyz.shape)
    finite = bool(np.isfinite(decoded).all() and np.isfinite(mean).all() and np.isfinite(std).all())
    displacement = np.sum((decoded - xyz) ** 2, axis=-1)  # (frames, atoms)
    rmsd = np.sqrt(displacement.mean(axis=1))
    centre = xyz[train_index].mean(axis=0, dtype=np.float64)
    explained_train = compute_explained_variance(xyz[train_index], decoded[train_index], centre)
    explained_val = (
        compute_explained_variance(xyz[val_index], decoded[val_index], centre)
        if len(val_index)
        else None
    )
    yardstick = train_index[:: max(1, math.ceil(len(train_index) / _PCA_MAX_FRAMES))]
    latent_dim = model.config.latent_dim
    pca = compute_pca_explained_variance(xyz[yardstick].reshape(len(yardstick), -1), latent_dim)
    # the decoded frames' spread about their own mean, as a share of the data's
    decoded_train = decoded[train_index].astype(np.float64)
    spread = np.sum((xyz[train_index] - centre) ** 2)
    decoded_variance = (
        float(np.sum((decoded_train - decoded_train.mean(axis=0)) ** 2) / spread)
        if spread > 0
        else math.nan
    )
    recon_train = float(rmsd[train_index].mean())
    recon_val = float(rmsd[val_index].mean()) if len(val_index) else None
    gap = recon_val / recon_train if recon_val is not None and recon_train > 0 else None
    fields = {
        "recon_rmsd_train": recon_train,
        "recon_rmsd_val": recon_val,
        "val_gap": gap,
        "explained_variance_train": explained_train,
        "explained_variance_val": explained_val,
        "pca_explained_variance": pca,
        "decoded_variance": decoded_variance,
        "recon_rmsd_per_atom_train": np.sqrt(displacement[train_index].mean(axis=0)).tolist(),
        "kl_per_dim": [],
        "active_units": 0,
        "density_components": 0,
    }
    notes: list[str] = []
    if not finite:
        return _Quality(fields, notes, "the trained model gives non-finite output")
    # The per-dimension KL at the marginal std (exact for a diagonal posterior).
    kl = compute_kl_diagonal(jnp.asarray(mean[train_index]), jnp.asarray(std[train_index]))
    fields["kl_per_dim"] = np.asarray(jnp.mean(kl, axis=0)).tolist()
    fields["active_units"] = int(compute_active_units(mean[train_index]))
    fields["density_components"] = _fit_density(model, mean, std, train_config, key=key)
    if not data.is_features:
        per_atom = np.sqrt(displacement[train_index].mean(axis=0) / xyz.shape[2])
        model.record.data_stats = compute_data_stats(
            xyz[train_index],
            data.topology,
            data.masses,
            held_out=xyz[val_index],
            tether_std=per_atom,
            latent=mean[train_index],
        ).to_dict()
    if gap is not None and gap > _GAP_NOTE:
        notes.append(
            f"validation RMSD is {gap:.2f}x the training RMSD: the model fits its training "
            "frames better than new ones (more frames, a smaller --hidden or --weight-decay "
            "help)"
        )
    return _Quality(fields, notes, _judge(fields, train_config, latent_dim))


def _judge(fields: dict[str, Any], train_config: TrainConfig, latent_dim: int) -> str | None:
    """Why the model does not work, or None: it explains less than min_explained of
    what PCA with as many components explains on the same frames."""
    pca, explained = fields["pca_explained_variance"], fields["explained_variance_train"]
    demanded = train_config.min_explained * pca
    if train_config.min_explained == 0 or not (math.isfinite(pca) and pca > 0):
        return None
    if explained >= demanded:
        return None
    components = f"{latent_dim} component" + ("s" if latent_dim > 1 else "")
    ignored = fields["decoded_variance"] < 0.1 * pca
    return (
        f"the model does not work: its reconstructions explain {explained:.1%} of the "
        f"training frames' variance, PCA with {components} {pca:.1%}"
        + ("; the decoder gives about the same structure whatever z is" if ignored else "")
    )


def _fit_density(
    model: Model, mean: np.ndarray, std: np.ndarray, train_config: TrainConfig, *, key: jax.Array
) -> int:
    """Fit the latent Gaussian mixture into the model; returns its component count."""
    draw_key, fit_key = jax.random.split(key)
    draws = min(_DENSITY_DRAWS_PER_FRAME, max(1, _DENSITY_MAX_POINTS // len(mean)))
    eps = np.asarray(jax.random.normal(draw_key, (draws, *mean.shape)))
    points = (mean[None] + std[None] * eps).reshape(-1, mean.shape[1])
    components = min(train_config.density_components, len(points))
    fit = fit_gaussian_mixture(jnp.asarray(points), components=components, key=fit_key)
    model.record.density = {
        name: np.asarray(value) for name, value in fit.mixture._asdict().items()
    }
    return components


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
    features), trained on as it is (see `train_features`).

    A model that does not work is written all the same, for inspection, and then
    TrainingFailedError names the file."""
    output = Path(output)
    if output.suffix.lower() not in (".h5", ".hdf5"):
        raise UsageError(f"a model file must be .h5, got '{output.suffix}'", path=output)
    given = [*(inputs or [DEFAULT_DATA]), read_options.top, checkpoint]
    check_output(output, overwrite=overwrite, inputs=given)
    checkpoint = Path(checkpoint) if checkpoint is not None else default_checkpoint(output)
    # one run at a time per model and checkpoint: a second is refused, naming the first
    with run_lock(output), run_lock(checkpoint):
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
        try:
            model, report = train(
                data,
                model_config,
                train_config,
                checkpoint=checkpoint,
                resume=resume,
                progress=progress,
            )
        except TrainingFailedError as failure:
            failure.model.save(output, overwrite=overwrite)
            checkpoint.unlink(missing_ok=True)
            failure.report.output, failure.report.checkpoint = str(output), str(checkpoint)
            raise TrainingFailedError(
                f"{failure.args[0]}; the model is written here for inspection only; "
                f"{_what_to_try(failure.report, train_config)}",
                model=failure.model,
                report=failure.report,
                path=output,
            ) from None
        model.save(output, overwrite=overwrite)
        checkpoint.unlink(missing_ok=True)
        report.output = str(output)
        report.checkpoint = str(checkpoint)
        return report


def _what_to_try(report: TrainReport, train_config: TrainConfig) -> str:
    """The first thing to change for a model that does not work, by what the run did."""
    lower = f"--lr {min(report.final_lr, train_config.lr) / 10:.1g}"
    if report.recoveries or train_config.lr > 1e-2:
        return f"try {lower}, or --clip-norm 1"
    if report.epochs_run < 50:
        return f"try more --epochs (this run had {report.epochs_run})"
    if report.decoded_variance < 0.1 * report.pca_explained_variance:
        return f"try {lower}, a lower --beta (now {train_config.beta:g}) or --kl-warmup 20"
    return "try more --epochs or a larger --latent-dim"
