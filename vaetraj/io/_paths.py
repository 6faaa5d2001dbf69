"""Inputs that must exist, checked without loading anything heavy (the settings file
is checked at the command line's start)."""

from __future__ import annotations

import os
from pathlib import Path

from vaetraj.errors import InputMissingError


def require_input(path: str | os.PathLike, what: str = "file") -> Path:
    """An input that must exist: a missing one ("no such `what`"), or a symbolic link
    that leads nowhere (a loop, a removed target), is InputMissingError (exit 66)."""
    path = Path(path)
    if not path.exists():
        if os.path.lexists(path):
            raise InputMissingError("a symbolic link that leads to no file (a loop?)", path=path)
        raise InputMissingError(f"no such {what}", path=path)
    return path
