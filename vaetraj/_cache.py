"""vaetraj's cache folder (`cache_root`: the built-in polymer, compiled programs), and
the `vaetraj` program's persistent compilation cache: what XLA compiles for a command
is kept on disk, and the next command with the same programs loads it instead of
compiling again (a small `decode` or `sample` spent most of its time compiling).

It is JAX's own cache (`jax_compilation_cache_dir`), set up before JAX is imported:

- in the `jax` folder of `cache_root()`: `$VAETRAJ_CACHE_DIR`, else
  `$XDG_CACHE_HOME/vaetraj`, else `~/.cache/vaetraj`;
- off with `VAETRAJ_NO_CACHE=1`, and when the folder cannot be made or written (a
  read-only home): then every command compiles, as without a cache;
- bounded: at most `VAETRAJ_CACHE_SIZE` (default 512MB; `64MB` or `1GB` style), the
  least recently used programs removed first;
- shared safely by commands running at once: JAX reads and writes it under a file lock
  (the `filelock` package), and over several processes only process 0 writes;
- a damaged entry is a miss: JAX warns and compiles, and the warning is dropped here;
- beside it, in `programs/` (a quarter of the bound; XLA's programs get the rest), the
  traced programs of `vaetraj._programs`, which spare a command JAX's tracing too.

A user who sets `JAX_COMPILATION_CACHE_DIR` keeps their own cache and its settings.
The Python API (`import vaetraj`) sets nothing: a library leaves JAX's configuration
to its caller.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

from vaetraj.errors import UsageError

DEFAULT_SIZE = "512MB"
_OFF = {"1", "true", "yes", "on"}
# where `vaetraj._programs` keeps traced programs (None: nowhere) and their bound
_PROGRAMS: dict[str, Any] = {"folder": None, "limit": 0}


def cache_root(environ: Mapping[str, str] = os.environ) -> Path:
    """$VAETRAJ_CACHE_DIR, else $XDG_CACHE_HOME/vaetraj, else ~/.cache/vaetraj."""
    given = environ.get("VAETRAJ_CACHE_DIR")
    if given:
        return Path(given).expanduser()
    base = environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vaetraj"


def cache_folder(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the compiled programs are kept."""
    return cache_root(environ) / "jax"


def cache_size(environ: Mapping[str, str] = os.environ) -> int:
    """The cache's bound in bytes, from `VAETRAJ_CACHE_SIZE`."""
    from vaetraj._memory import parse_size  # NumPy: not before a command needs it

    text = environ.get("VAETRAJ_CACHE_SIZE") or DEFAULT_SIZE
    try:
        return parse_size(text, least=1)
    except ValueError as error:
        raise UsageError(f"VAETRAJ_CACHE_SIZE: {error}") from None


def compile_cache_settings(environ: Mapping[str, str] = os.environ) -> dict | None:
    """JAX's settings for the cache that `environ` asks for (its folder made here), or
    None when it is off: `VAETRAJ_NO_CACHE`, the user's own `JAX_COMPILATION_CACHE_DIR`,
    or a folder that cannot be written."""
    if environ.get("VAETRAJ_NO_CACHE", "").strip().lower() in _OFF:
        return None
    if environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None  # the user's own JAX cache, with their own settings
    size = cache_size(environ)
    try:
        folder = cache_folder(environ)
    except RuntimeError:  # no home folder to be found (Path.home)
        return None
    if not _writable(folder):
        return None
    return {
        "jax_compilation_cache_dir": str(folder),
        "jax_compilation_cache_max_size": size - size // 4,  # the rest: programs/
        # every program, however quick to compile or small: a command compiles dozens
        # of small ones, and together they are most of its time
        "jax_persistent_cache_min_compile_time_secs": 0,
        "jax_persistent_cache_min_entry_size_bytes": -1,
    }


def enable_compile_cache(environ: MutableMapping[str, str] = os.environ) -> Path | None:
    """Turn the cache on for this process (and the processes it starts), before its
    first compilation; returns its folder, or None when it is off."""
    settings = compile_cache_settings(environ)
    if settings is None:
        return None
    if "jax" in sys.modules:  # imported already (the program run in-process, by tests)
        import jax

        theirs = getattr(jax.config, "jax_compilation_cache_dir", None)
        if theirs:  # a cache the caller set up: left as it is
            return Path(theirs)
        for name, value in settings.items():
            jax.config.update(name, value)
    else:
        environ.update({name.upper(): str(value) for name, value in settings.items()})
    quiet_cache_warnings()
    # the traced programs (vaetraj._programs) beside XLA's, a quarter of the bound
    limit = cache_size(environ) // 4
    _PROGRAMS.update(folder=cache_root(environ) / "programs", limit=limit)
    return Path(settings["jax_compilation_cache_dir"])


def programs_folder() -> tuple[Path | None, int]:
    """Where traced programs are kept (None: not kept) and their bound in bytes."""
    return _PROGRAMS["folder"], _PROGRAMS["limit"]


def quiet_cache_warnings() -> None:
    """A damaged, locked or full cache is a miss (JAX compiles instead): not news."""
    for text in ("Error reading persistent compilation cache", "Error writing persistent "
                 "compilation cache", "Cache value for key"):  # fmt: skip
        warnings.filterwarnings("ignore", message=text)


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True
