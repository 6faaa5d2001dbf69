"""Traced programs kept on disk, for the `vaetraj` program's small commands.

XLA's persistent cache (`vaetraj._cache`) spares a command the compilation of what an
earlier command compiled, but JAX still traces and lowers each program in Python first:
for the refinement of `decode` and `sample` that was about 0.6 s of every run. `kept`
wraps a jit-compiled function so that, once the program has turned the cache on, its
first call with new shapes exports the traced program (`jax.export`) to the cache
folder's `programs/`, and later calls (in later commands) load it instead of tracing.

Loading costs something too: calling an exported program sets up LAPACK's handlers
(about 0.3 s, once a process), which a traced program pays only if it uses them. Keep
the programs whose tracing is long (refinement and what a decode runs with it), not the
quick ones (`encode`'s, `align`'s).

A kept program is found by a key of everything it depends on: its name and `static`
(what the function closes over, e.g. settings), the tree, shapes and dtypes of its
arguments, the versions of JAX and jaxlib, the backend, and a digest of vaetraj's own
source files (any change to the code makes new programs). A function that closes over
anything not in `static` must not be kept. A damaged or unreadable file is a miss (the
program is traced and written again); a program that cannot be exported (a host
callback, an argument that is a Python number) runs as a plain jit call. With the
cache off, and in the Python API, `kept` functions are the plain jit functions.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from vaetraj._cache import programs_folder

_loaded: dict[str, tuple[Any, Any] | None] = {}  # None: not exportable, run as jit
_lock = threading.Lock()


def kept(name: str, function: Callable, *, static: object = None) -> Callable:
    """`function` (a pure function of its arguments and `static`), whose traced program
    is kept on disk while the program's cache is on."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        folder, limit = programs_folder()
        if folder is None:
            return function(*args, **kwargs)
        leaves, tree = jax.tree.flatten((args, kwargs))
        if any(isinstance(leaf, (bool, int, float, complex)) for leaf in leaves):
            return function(*args, **kwargs)  # weakly typed: left to jit
        specs = [jax.ShapeDtypeStruct(np.shape(leaf), _dtype(leaf)) for leaf in leaves]
        key = _key(name, static, tree, specs)
        if key in _loaded:
            entry = _loaded[key]
        else:
            entry = _read(folder, key) or _export(folder, key, function, tree, specs, limit)
        if entry is None:
            return function(*args, **kwargs)
        exported, out_tree = entry
        return jax.tree.unflatten(out_tree, exported.call(*leaves))

    return call


def _dtype(leaf: Any) -> Any:
    if isinstance(leaf, jax.Array):
        return leaf.dtype
    return jax.dtypes.canonicalize_dtype(np.asarray(leaf).dtype)


def _key(name: str, static: object, tree: Any, specs: list) -> str:
    digest = hashlib.sha256()
    for part in (name, repr(static), str(tree), repr([(s.shape, str(s.dtype)) for s in specs]),
                 _environment()):  # fmt: skip
        digest.update(part.encode())
        digest.update(b"\0")
    return f"{name}-{digest.hexdigest()[:40]}"


@functools.cache
def _environment() -> str:
    """JAX's versions, the backend, and a digest of vaetraj's source files."""
    import jaxlib

    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    backend = jax.devices()[0].client
    return "|".join(
        [jax.__version__, jaxlib.__version__, backend.platform, backend.platform_version,
         digest.hexdigest()]
    )  # fmt: skip


def _read(folder: Path, key: str) -> tuple[Any, Any] | None:
    path = folder / f"{key}.program"
    try:
        blob, out_tree = pickle.loads(path.read_bytes())
        entry = (jax.export.deserialize(bytearray(blob)), out_tree)
        os.utime(path)  # recently used: pruned last
    except Exception:  # noqa: BLE001 (missing or damaged: a miss, written again)
        return None
    _loaded[key] = entry
    return entry


def _export(folder: Path, key: str, function: Callable, tree: Any, specs: list, limit: int):
    box: dict[str, Any] = {}

    def flat(*leaves):
        args, kwargs = jax.tree.unflatten(tree, leaves)
        out_leaves, box["tree"] = jax.tree.flatten(function(*args, **kwargs))
        return out_leaves

    try:
        exported = jax.export.export(jax.jit(flat))(*specs)
        blob = exported.serialize()
    except Exception:  # noqa: BLE001 (not exportable: a plain jit call, from now on)
        _loaded[key] = None
        return None
    entry = (exported, box["tree"])
    _loaded[key] = entry
    _write(folder / f"{key}.program", pickle.dumps((bytes(blob), box["tree"])), limit)
    return entry


def _write(path: Path, data: bytes, limit: int) -> None:
    """Whole or not at all (a reader never sees half a file), then the least recently
    used programs removed down to `limit` bytes; a failure is ignored."""
    with _lock:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
            _prune(path.parent, limit, keep=path)
        except OSError:
            tmp.unlink(missing_ok=True)


def _prune(folder: Path, limit: int, keep: Path) -> None:
    programs = []
    for path in folder.glob("*.program"):
        try:
            stat = path.stat()
        except OSError:  # removed by another command meanwhile
            continue
        programs.append((stat.st_mtime_ns, stat.st_size, path))
    total = sum(size for _, size, _ in programs)
    for _, size, path in sorted(programs):
        if total <= limit:
            break
        if path != keep:
            path.unlink(missing_ok=True)
            total -= size
