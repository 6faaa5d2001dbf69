"""Modules loaded on first use. mdtraj and optax take a tenth of a second or more each
to import, and most commands on most inputs never touch them (an `encode` of an .npz
reads no topology): the program imports them when an attribute is first read. Modules
take them from here (`from vaetraj._lazy import mdtraj as md`), typed as the real ones."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import TYPE_CHECKING


def lazy_import(name: str) -> ModuleType:
    """The module `name`, executed when one of its attributes is first read (at once
    when it is already imported)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


if TYPE_CHECKING:
    import mdtraj
    import optax
else:
    mdtraj = lazy_import("mdtraj")
    optax = lazy_import("optax")
