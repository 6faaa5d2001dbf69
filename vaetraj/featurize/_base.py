"""What every featurizer is: a named, fitted map from frames to a feature table, kept
in a model as a JSON record and rebuilt from it by name."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj.configs import FeaturizeConfig
from vaetraj.geometry import centred_float32
from vaetraj.metrics import frames_as_columns

CHUNK = 4096  # frames featurized in one kernel call


@dataclass(frozen=True)
class Featurizer:
    """A fitted featurizer: `transform` gives (frames, features) float32 from frames
    (frames, atoms, 3) in nm, atoms in the order of the topology it was fitted on.

    A subclass sets `kind` (its registered name), holds its fitted indices as fields,
    and writes `_kernel` (the batch's columns, see `vaetraj.metrics._vectors`, to a
    (features, frames) array) and `labels`. Every feature is invariant to rigid
    motions: no alignment is needed before it."""

    kind: ClassVar[str] = ""
    atoms: int  # atoms of the frames it takes

    @property
    def labels(self) -> list[str]:
        raise NotImplementedError

    @property
    def features(self) -> int:
        return len(self.labels)

    def _kernel(self, columns) -> jax.Array:
        raise NotImplementedError

    def transform(self, xyz: np.ndarray) -> np.ndarray:
        """(frames, features) float32 of frames (frames, atoms, 3), in chunks."""
        xyz = np.asarray(xyz)
        if xyz.ndim != 3 or xyz.shape[1:] != (self.atoms, 3):
            raise ValueError(
                f"frames of shape {xyz.shape[1:]} do not match the featurizer's "
                f"({self.atoms} atoms, 3D)"
            )
        xyz = centred_float32(xyz)  # every feature ignores a shift
        run = _compiled(self)
        parts = [
            np.asarray(run(jnp.asarray(xyz[i : i + CHUNK]))) for i in range(0, len(xyz), CHUNK)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, self.features), np.float32)

    def frame_features(self, xyz: jax.Array) -> jax.Array:
        """The features (features,) of one frame (atoms, 3): a JAX function, to trace
        inside `jit` and `grad` (the OpenMM latent force)."""
        return self._kernel(frames_as_columns(xyz[None]))[:, 0]

    def to_record(self) -> dict[str, Any]:
        """JSON-able: the kind and the fitted fields (`featurizer_from_record` reads it)."""
        fields = {name: _plain(value) for name, value in self.__dict__.items()}
        return {"kind": self.kind, **fields}


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


@functools.lru_cache(maxsize=8)
def _compiled(featurizer: Featurizer) -> Callable[[jax.Array], jax.Array]:
    return jax.jit(lambda xyz: featurizer._kernel(frames_as_columns(xyz)).T)


FEATURIZERS: dict[str, type[Featurizer]] = {}


def register(cls: type[Featurizer]) -> type[Featurizer]:
    """Class decorator: make a featurizer known by its `kind` (model files name it)."""
    if not cls.kind or cls.kind in FEATURIZERS:
        raise ValueError(f"featurizer kind {cls.kind!r} is empty or taken")
    FEATURIZERS[cls.kind] = cls
    return cls


def featurizer_from_record(record: dict[str, Any]) -> Featurizer:
    """The featurizer a record (`Featurizer.to_record`) describes; ValueError naming
    what is wrong with a record of an unknown kind or with missing fields."""
    if not isinstance(record, dict) or record.get("kind") not in FEATURIZERS:
        kind = record.get("kind") if isinstance(record, dict) else record
        raise ValueError(f"unknown featurizer {kind!r} (known: {', '.join(sorted(FEATURIZERS))})")
    cls = FEATURIZERS[record["kind"]]
    fields = {key: value for key, value in record.items() if key != "kind"}
    try:
        return cls.from_fields(**fields)  # type: ignore[attr-defined]
    except TypeError as error:
        raise ValueError(f"bad {cls.kind} featurizer record ({error})") from None


def fit_featurizer(config: FeaturizeConfig, topology, frames: Any = None) -> Featurizer:
    """The registered featurizer of `config.kind`, fitted on a topology (mdtraj) and,
    for a distance cutoff, on frames (an array or an iterable of chunks): ValueError
    naming what does not fit (no torsions of that kind, an empty selection)."""
    cls = FEATURIZERS.get(config.kind)
    if cls is None:
        raise ValueError(f"unknown featurizer {config.kind!r} (known: {', '.join(FEATURIZERS)})")
    return cls.from_config(config, topology, frames)  # type: ignore[attr-defined]


def named_terms(atoms: int, terms: Any, width: int, names: Any, what: str):
    """A record's index tuples (n, width), checked in range, and their n names: what
    every featurizer's `from_fields` reads."""
    checked = as_pairs(terms, width, atoms, what)
    if len(names) != len(checked):
        raise ValueError(f"{len(names)} names for {len(checked)} {what}")
    return checked, tuple(str(n) for n in names)


def as_pairs(value: Any, width: int, atoms: int, name: str) -> tuple[tuple[int, ...], ...]:
    """Index tuples (n, width) of atoms in range, as a hashable tuple of tuples."""
    array = np.asarray(value, dtype=np.int64).reshape(-1, width)
    if array.size and (array.min() < 0 or array.max() >= atoms):
        raise ValueError(f"{name} name atoms outside 0..{atoms - 1}")
    return tuple(tuple(int(i) for i in row) for row in array)
