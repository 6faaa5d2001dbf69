"""What every benchmark script shares (run them as scripts: this folder is on sys.path)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_time(function: Callable[[], object], repeats: int = 3, *, warm_up: bool = True) -> float:
    """The fastest of `repeats` calls, in seconds, after one untimed call (compilation)."""
    if warm_up:
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)
