"""Training checkpoints (format `vaetraj-checkpoint`, version 2): HDF5, written
atomically, so a run killed at any moment (even with kill -9) leaves the previous
checkpoint whole.

Layout: attrs format, format_version and the run's JSON fields (configs, epoch, data
fingerprint, ...); one group per pytree (/state/params, /state/opt_state, /state/guard, /best/params),
a dataset per leaf named by its path; /history/<metric>.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from vaetraj.errors import BadInputError, InputMissingError
from vaetraj.io._atomic import atomic_output, write_h5_bytes
from vaetraj.io._pytree import flatten_named, read_pytree, write_pytree
from vaetraj.io._schema import Data, check_format, check_values, read_dataset

CHECKPOINT_FORMAT = "vaetraj-checkpoint"
CHECKPOINT_FORMAT_VERSION = 2


def write_checkpoint(
    path: str | os.PathLike,
    *,
    fields: dict[str, Any],
    trees: dict[str, Any],
    history: dict[str, np.ndarray],
) -> None:
    def fill(handle: h5py.File) -> None:
        handle.attrs["format"] = CHECKPOINT_FORMAT
        handle.attrs["format_version"] = CHECKPOINT_FORMAT_VERSION
        handle.attrs["fields"] = json.dumps(fields, sort_keys=True)
        for name, tree in trees.items():
            write_pytree(handle.create_group(name), tree)
        group = handle.create_group("history")
        for name, values in history.items():
            group[name] = np.asarray(values)

    with atomic_output(path, overwrite=True, during_stop=True) as tmp:
        write_h5_bytes(tmp, fill)


_WHAT = "damaged checkpoint"
_INT = (int,)
# what a resumed run reads from the fields: a wrong kind is a damaged file, not a crash
_POINT_FIELDS = {"epoch": _INT, "best_epoch": _INT, "since_best": _INT}
_RUN_FIELDS: dict[str, tuple[type, ...]] = {
    "atoms": _INT,
    "dims": _INT,
    "data_sha256": (str,),
    "model_config": (str,),
    "train_config": (str,),
    "recoveries": (list,),
}


def _check_fields(fields: Any, path: Path) -> dict[str, Any]:
    def bad(problem: str) -> BadInputError:
        return BadInputError(f"{_WHAT}: {problem}", path=path)

    if not isinstance(fields, dict):
        raise bad("attribute 'fields' is not a JSON object")
    points = [("", fields)] + ([("anchor.", fields["anchor"])] if fields.get("anchor") else [])
    if (
        "anchor" in fields
        and fields["anchor"] is not None
        and not isinstance(fields["anchor"], dict)
    ):
        raise bad("field 'anchor' is not a JSON object")
    for prefix, point in points:
        for name, kinds in _POINT_FIELDS.items():
            value = point.get(name)
            if isinstance(value, bool) or not isinstance(value, kinds) or value < 0:
                raise bad(f"field '{prefix}{name}' is {value!r}, expected a count")
        loss = point.get("best_loss")
        if loss is not None and (isinstance(loss, bool) or not isinstance(loss, (int, float))):
            raise bad(f"field '{prefix}best_loss' is {loss!r}, expected a number")
    for name, run_kinds in _RUN_FIELDS.items():
        if not isinstance(fields.get(name), run_kinds) or isinstance(fields.get(name), bool):
            raise bad(f"field '{name}' is {fields.get(name)!r}")
    try:
        if not isinstance(json.loads(fields["train_config"]), dict):
            raise ValueError
    except ValueError:
        raise bad("field 'train_config' is not a JSON object") from None
    return fields


def _fields(handle: h5py.File, path: Path) -> dict[str, Any]:
    text = handle.attrs["fields"]
    try:
        fields = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        fields = None
    if fields is None:
        raise BadInputError(f"{_WHAT}: attribute 'fields' is not valid JSON", path=path)
    return _check_fields(fields, path)


def read_checkpoint_fields(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON fields only, to check a checkpoint against a run before restoring it."""
    path = Path(path)
    with _open(path) as handle:
        return _fields(handle, path)


def read_checkpoint(
    path: str | os.PathLike, templates: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """(fields, trees restored onto `templates`, history), every field checked: a
    damaged checkpoint is a BadInputError naming it and the field."""
    path = Path(path)
    try:
        return _read(path, templates)
    except OSError as error:  # a damaged HDF5 chunk
        raise BadInputError(f"{_WHAT}: cannot read it ({error})", path=path) from None


def _read(path: Path, templates: dict[str, Any]):
    with _open(path) as handle:
        fields = _fields(handle, path)
        trees = {}
        for name, template in templates.items():
            if name not in handle or not isinstance(handle[name], h5py.Group):
                raise BadInputError(f"{_WHAT}: missing /{name}", path=path)
            trees[name], problems = read_pytree(handle[name], template)
            if problems:
                raise BadInputError(f"{_WHAT}: {'; '.join(problems)}", path=path)
            for leaf_name, leaf in flatten_named(trees[name]).items():
                check_values(leaf, Data(f"{name}/{leaf_name}", "number", ()), path, _WHAT)
        history: dict[str, np.ndarray] = {}
        dims: dict[str, int] = {}
        group = handle["history"] if "history" in handle else {}
        if isinstance(group, h5py.Dataset):
            raise BadInputError(f"{_WHAT}: /history is not a group", path=path)
        for name in group:
            ndim = getattr(group[name], "ndim", 1)
            shape = ("epochs",) if ndim != 2 else ("epochs", f"columns of {name}")
            spec = Data(f"history/{name}", "number", shape, finite=False)
            values = read_dataset(handle, spec, path, _WHAT, dims)
            assert values is not None  # a required dataset
            history[name] = values
        if any(len(values) < fields["epoch"] for values in history.values()):
            raise BadInputError(
                f"{_WHAT}: the history is shorter than the epoch ({fields['epoch']})", path=path
            )
        return fields, trees, history


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise InputMissingError("no checkpoint to resume from", path=path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise BadInputError(f"not a readable checkpoint ({error})", path=path) from None
    try:
        check_format(handle.attrs, path, name=CHECKPOINT_FORMAT, what="checkpoint",
                     oldest=CHECKPOINT_FORMAT_VERSION, newest=CHECKPOINT_FORMAT_VERSION)  # fmt: skip
        if "fields" not in handle.attrs:
            raise BadInputError(f"{_WHAT}: missing attribute 'fields'", path=path)
    except BadInputError:
        handle.close()
        raise
    return handle
