"""A stop request that survives where an exception would not.

A signal handler that raises KeyboardInterrupt can land inside a `__del__` or a weakref
callback, where Python prints "Exception ignored" and carries on: the interrupt is lost.
So the handler also records the request here, and long loops (training) check it at
every epoch and stop cleanly.
"""

from __future__ import annotations

import threading

_requested = threading.Event()


def request_stop() -> None:
    _requested.set()


def stop_requested() -> bool:
    return _requested.is_set()


def clear_stop() -> None:
    _requested.clear()
