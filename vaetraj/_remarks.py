"""Remarks: the notes a command's report carries ("time-lagged: 7140 training pairs",
"resumed from ...", "epoch 12: a loss spike ... rolled back"), said where they arise
(`remark`) and collected by the command that reports them (`collecting`), instead of
lists handed down as out-parameters."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

_ACTIVE: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "vaetraj_remarks", default=None
)


def remark(text: str) -> None:
    """Add a note to the report being collected (none is: the note is dropped)."""
    notes = _ACTIVE.get()
    if notes is not None:
        notes.append(text)


@contextlib.contextmanager
def collecting() -> Iterator[list[str]]:
    """Collect the remarks made inside the block, in order, into the list yielded."""
    notes: list[str] = []
    token = _ACTIVE.set(notes)
    try:
        yield notes
    finally:
        _ACTIVE.reset(token)
