"""The memory a request needs, checked before the work.

A request the machine cannot hold (`sample -n 1e12`, `optimize --restarts 1e8`,
`train --hidden 1e7`) used to end in an allocator's abort (exit 134, an XLA dump) or an
out-of-memory traceback after minutes of work. Each command estimates what it will hold
at once from the request's sizes and refuses, in one line (exit 2), one that exceeds the
memory available: the host's, and the accelerator's where JAX reports it.

The estimates are rules of thumb measured on the built-in polymer (see each caller);
they are meant to catch requests off by orders of magnitude, not to budget to the byte.
"""

from __future__ import annotations

import math
import os

import numpy as np

from vaetraj.errors import UsageError

FLOAT = 4  # bytes per float32


def available_bytes() -> int | None:
    """Memory a new allocation can get now: the host's MemAvailable, and no more than
    the first accelerator's free memory when JAX has started one that reports it."""
    host = _host_available()
    device = _device_available()
    known = [b for b in (host, device) if b is not None]
    return min(known) if known else None


def _host_available() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _device_available() -> int | None:
    import sys

    if "jax" not in sys.modules:
        return None
    import jax

    device = jax.devices()[0]
    if device.platform == "cpu":
        return None  # host memory, counted above
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 (a backend without statistics)
        return None
    if "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def size_text(count: float) -> str:
    for unit, scale in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{int(count)} bytes"


def require_memory(needed: float, request: str, advice: str) -> None:
    """Refuse (UsageError, exit 2) a request estimated to need more than is available."""
    available = available_bytes()
    if available is not None and needed > available:
        raise UsageError(
            f"{request} needs about {size_text(needed)} of memory at once, "
            f"{size_text(available)} is available; {advice}"
        )


ALIGNMENT = 64  # bytes: what JAX's CPU client needs to use a host buffer without a copy


def empty_aligned(shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    """An uninitialized C-contiguous array whose data start on an ALIGNMENT-byte
    boundary, so that JAX on the CPU can take it as a device array without a copy
    (`vaetraj.training.place_rows`): a 1M-frame training set is then held once."""
    size = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    buffer = np.empty(size + ALIGNMENT, np.uint8)
    start = -buffer.ctypes.data % ALIGNMENT
    return buffer[start : start + size].view(dtype).reshape(shape)


_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9,
          "T": 1e12, "TB": 1e12, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30,
          "TIB": 1 << 40}  # fmt: skip


def parse_size(text: str, least: float = 1e6) -> int:
    """Bytes from a size such as `64MB`, `2GB`, `512MiB` or `1000000` (decimal units;
    KiB, MiB, GiB binary). Raises ValueError for anything else or a size below `least`
    (1 MB, the least memory budget)."""
    value = text.strip().upper().replace(" ", "")
    number = value.rstrip("KMGTIB")
    unit = value[len(number) :]
    try:
        size = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        size = math.nan
    if not math.isfinite(size):
        raise ValueError(f"cannot read '{text}' as a size (use 64MB or 2GB style)")
    if size < least:
        floor = "budget of 1MB" if least == 1e6 else f"of {least:g} bytes"
        raise ValueError(f"'{text}' is below the least {floor}")
    return int(size)


def resolve_memory_budget(given: int | None) -> int:
    """The memory budget: `given`, or by default half of the memory available now (the
    host's, and the accelerator's when smaller), 4 GB when that cannot be read."""
    if given is not None:
        return given
    available = available_bytes()
    return 4_000_000_000 if available is None else available // 2


def return_freed_memory() -> bool:
    """Give the memory freed so far back to the system (glibc's malloc_trim): glibc keeps
    freed chunks in its heap, and after a pass over a large file in tens-of-MB chunks a
    process held hundreds of MB it no longer used, which the next step's peak then sat
    on (a streamed 2M-frame run peaked at 1.37 GB; 0.89 GB with a trim between the
    steps). False where glibc is absent."""
    import ctypes

    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError, TypeError):
        return False
    return bool(trim(0))
