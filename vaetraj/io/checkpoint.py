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
from vaetraj.io._atomic import atomic_output
from vaetraj.io._pytree import read_pytree, write_pytree

CHECKPOINT_FORMAT = "vaetraj-checkpoint"
CHECKPOINT_FORMAT_VERSION = 2


def write_checkpoint(
    path: str | os.PathLike,
    *,
    fields: dict[str, Any],
    trees: dict[str, Any],
    history: dict[str, np.ndarray],
) -> None:
    with atomic_output(path, overwrite=True) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs["format"] = CHECKPOINT_FORMAT
        handle.attrs["format_version"] = CHECKPOINT_FORMAT_VERSION
        handle.attrs["fields"] = json.dumps(fields, sort_keys=True)
        for name, tree in trees.items():
            write_pytree(handle.create_group(name), tree)
        group = handle.create_group("history")
        for name, values in history.items():
            group[name] = np.asarray(values)


def read_checkpoint_fields(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON fields only, to check a checkpoint against a run before restoring it."""
    with _open(Path(path)) as handle:
        return json.loads(handle.attrs["fields"])


def read_checkpoint(
    path: str | os.PathLike, templates: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, np.ndarray]]:
    """(fields, trees restored onto `templates`, history)."""
    path = Path(path)
    with _open(path) as handle:
        trees = {}
        for name, template in templates.items():
            if name not in handle:
                raise BadInputError(f"damaged checkpoint: missing /{name}", path=path)
            trees[name], problems = read_pytree(handle[name], template)
            if problems:
                raise BadInputError(f"damaged checkpoint: {'; '.join(problems)}", path=path)
        history = {name: handle["history"][name][()] for name in handle.get("history", {})}
        return json.loads(handle.attrs["fields"]), trees, history


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise InputMissingError("no checkpoint to resume from", path=path)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise BadInputError(f"not a readable checkpoint ({error})", path=path) from None
    if handle.attrs.get("format") != CHECKPOINT_FORMAT or "fields" not in handle.attrs:
        handle.close()
        raise BadInputError("not a vaetraj checkpoint", path=path)
    if int(handle.attrs.get("format_version", -1)) != CHECKPOINT_FORMAT_VERSION:
        handle.close()
        raise BadInputError("checkpoint from another vaetraj version; cannot resume", path=path)
    return handle
