"""A stop request that survives where an exception would not.

A signal handler that raises KeyboardInterrupt can land inside a `__del__` or a weakref
callback, where Python prints "Exception ignored" and carries on: the interrupt is lost.
So the handler also records the request here, and long loops (training) check it at
every epoch and stop cleanly. Inside `deferred()` (a CLI command's whole run) the
handler only records the request, and the long loops raise it at their safe points
(`check_stop`: every epoch, every chunk of frames or structures, before an output is
renamed into place): an exception raised in the middle of an import, a JAX compilation
or a GC callback is what made the process print "Exception ignored" or crash. A second
signal still interrupts at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_requested = threading.Event()


def request_stop() -> None:
    _requested.set()


def stop_requested() -> bool:
    return _requested.is_set()


def clear_stop() -> None:
    _requested.clear()


def check_stop() -> None:
    """A safe point of a long loop: raise KeyboardInterrupt if a stop was requested."""
    if _requested.is_set():
        raise KeyboardInterrupt


class _Deferral:
    depth = 0


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A section whose loop checks `stop_requested()` at its safe points."""
    _Deferral.depth += 1
    try:
        yield
    finally:
        _Deferral.depth -= 1


def should_raise_now() -> bool:
    """What a signal handler does with a stop request: record it and raise
    KeyboardInterrupt, or (inside `deferred`, the first time) only record it."""
    first = not _requested.is_set()
    request_stop()
    return _Deferral.depth == 0 or not first
