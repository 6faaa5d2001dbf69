"""Where a training run stands, and its checkpoint: `Point` (an immutable snapshot
after some epochs), `Run` (the current point, the divergence guard's anchor and the
recoveries), written to and restored from a checkpoint bit for bit."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding

from vaetraj.configs import TrainConfig
from vaetraj.errors import BadInputError, UsageError
from vaetraj.io.checkpoint import read_checkpoint, read_checkpoint_fields, write_checkpoint
from vaetraj.pipeline.runtime.processes import replicated
from vaetraj.training import TrainState

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
    "lag",
)
# what a checkpoint of an older version that lacks a field had: the field's default
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


@dataclass(frozen=True)
class Point:
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


class Run:
    """The loop's mutable record: the current point; the anchor, the end of the last
    clean epoch (no step far above the loss floor), which a bad epoch rolls back to;
    the recoveries so far."""

    def __init__(self, point: Point):
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


def history_arrays(history: dict[str, list]) -> dict[str, np.ndarray]:
    return {name: np.asarray(values) for name, values in history.items()}


def _point_fields(point: Point) -> dict[str, Any]:
    return {
        "epoch": point.epoch,
        "best_loss": point.best_loss if math.isfinite(point.best_loss) else None,
        "best_epoch": point.best_epoch,
        "since_best": point.since_best,
    }


def _point_trees(prefix: str, point: Point) -> dict[str, Any]:
    return {
        f"{prefix}state/params": point.state.params,
        f"{prefix}state/opt_state": point.state.opt_state,
        f"{prefix}state/guard": _guard_tree(point.state),
        f"{prefix}best/params": point.best_params,
    }


def write_run_checkpoint(path: Path, run: Run, fields: dict[str, Any]) -> None:
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
        history=history_arrays(run.point.history),
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
    saved_layout = saved.get("data_layout", "in memory")
    if saved_layout != fields["data_layout"]:
        sharded = "processes" in saved_layout + fields["data_layout"]
        advice = "the same number of processes and " if sharded else ""
        raise UsageError(
            f"resume needs the checkpoint's data layout ({saved_layout}); this run's is "
            f"{fields['data_layout']}: give {advice}the same memory_budget",
            path=path,
            fields=("memory_budget",),
        )
    saved_train = json.loads(saved.get("train_config", "{}"))
    current_train = json.loads(fields["train_config"])
    changed = [k for k in _RESUME_FIXED if saved_train.get(k, _DEFAULTS[k]) != current_train[k]]
    if changed:
        raise UsageError(
            f"resume needs the checkpoint's {', '.join(changed)} "
            f"({', '.join(f'{saved_train.get(k)!r}' for k in changed)})",
            path=path,
            fields=tuple(changed),
        )


def restore_run(path: Path, run: Run, fields: dict[str, Any]) -> int:
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
    saved_history = {name: list(values) for name, values in history.items()}

    def point(prefix: str, values: dict[str, Any]) -> Point:
        state = template.state._replace(
            params=jax.tree.map(jnp.asarray, trees[f"{prefix}state/params"]),
            opt_state=jax.tree.map(jnp.asarray, trees[f"{prefix}state/opt_state"]),
            epoch=jnp.array(values["epoch"], jnp.int32),
            **{k: jnp.asarray(v) for k, v in trees[f"{prefix}state/guard"].items()},
        )
        return Point(
            state=state,
            best_params=trees[f"{prefix}best/params"],
            best_loss=math.inf if values["best_loss"] is None else values["best_loss"],
            best_epoch=values["best_epoch"],
            since_best=values["since_best"],
            history={name: v[: values["epoch"]] for name, v in saved_history.items()},
        )

    run.point = point("", saved)
    run.anchor = point("anchor/", saved["anchor"]) if anchored else run.point
    run.recoveries = list(saved.get("recoveries", []))
    saved_lr = json.loads(saved["train_config"]).get("lr")
    if run.recoveries and saved_lr != json.loads(fields["train_config"])["lr"]:
        # a new --lr replaces the rate the guard had lowered: it applies as given
        def as_given(p: Point) -> Point:
            state = p.state._replace(lr_scale=jnp.ones_like(p.state.lr_scale))
            return dataclasses.replace(p, state=state)

        current = as_given(run.point)
        run.anchor = as_given(run.anchor) if anchored else current
        run.point = current
    return saved["epoch"]


def replicate_run(run: Run, sharding: NamedSharding) -> None:
    """Put a restored run's states on every device of the mesh."""

    def placed(point: Point) -> Point:
        return dataclasses.replace(point, state=replicated(point.state, sharding))

    same = run.anchor is run.point
    run.point = placed(run.point)
    run.anchor = run.point if same else placed(run.anchor)


def default_checkpoint(output: str | os.PathLike) -> Path:
    """model.h5 -> model.ckpt.h5, beside the model."""
    output = Path(output)
    return output.with_name(output.stem + ".ckpt.h5")
