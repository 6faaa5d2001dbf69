"""What a model's network takes and gives: how frames (or a table) become its input
rows, and whether its decoder's rows are structures.

One class per kind, rebuilt from the record a model file keeps under `alignment`
(`representation_of`):

- `Aligned`: Cartesian frames aligned as `align` does (principal axes, Kabsch, centre
  only, or frames aligned outside vaetraj, "as-given"); the decoder gives structures.
- `Table`: a table the user computed (`train --features`); rows in, rows out.
- `Featurized`: frames featurized by vaetraj (`train --featurize`, a registered
  `vaetraj.featurize.Featurizer`); frames in, feature rows out.

A command asks the representation, never the record: `yields_structures` (decode,
sample, optimize, the energy check), `takes_frames` (trajectories rather than a
table), `aligner` and `inputs`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import numpy as np

from vaetraj.errors import BadInputError, UsageError
from vaetraj.featurize import Featurizer, featurizer_from_record
from vaetraj.pipeline.align import FrameAligner

TABLE_METHOD = "features"  # the alignment "method" of a model of a user's table
FEATURIZED_METHOD = "featurized"  # ... of frames featurized by vaetraj
ALIGN_METHODS = ("principal", "kabsch", "none")  # aligned by vaetraj (FrameAligner)


@dataclass(frozen=True)
class Representation:
    """The input of a model of `atoms` x `dims` (its structure, or for a table its
    features x 1) with `features` network inputs; `record` is the file's alignment
    JSON it was rebuilt from."""

    record: dict[str, Any]
    featurizer: Featurizer | None = None  # a featurized model's
    kind: ClassVar[str] = ""
    yields_structures: ClassVar[bool] = True
    takes_frames: ClassVar[bool] = True
    what: ClassVar[str] = ""  # in messages: "a model of <what>"

    def describe(self) -> str:
        """What the model was trained on, for messages: "a model of <this>"."""
        return self.what

    def aligner(self, model) -> Callable[[np.ndarray], np.ndarray]:
        """Frames as read (frames, atoms, dims) to what `inputs` takes."""
        return lambda xyz: np.asarray(xyz, np.float32)

    def inputs(self, x: np.ndarray, atoms: int, dims: int) -> np.ndarray:
        """The network's input rows (frames, features) float32 of x, checked."""
        raise NotImplementedError

    def rows(self, decoded: np.ndarray, atoms: int, dims: int) -> np.ndarray:
        """Decoder rows (n, features) as the model gives them: frames or table rows."""
        return decoded

    def frame_row(self, model) -> Callable[[jax.Array], jax.Array]:
        """What `aligner` then `inputs` do, for one frame (atoms, dims) float32 to its
        input row (features,), as a JAX function to trace inside `jit` and `grad` (the
        OpenMM latent force); a UsageError where the model takes no frames it aligns or
        featurizes itself."""
        raise UsageError(f"a model of {self.describe()} takes no frames to follow")

    @property
    def featurizer_kind(self) -> str | None:
        return None if self.featurizer is None else self.featurizer.kind

    @property
    def method(self) -> str:
        return str(self.record.get("method"))


def _check_frames(x: np.ndarray, atoms: int, dims: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[1:] != (atoms, dims):
        raise BadInputError(
            f"frames of shape {x.shape[1:]} do not match the model's ({atoms} atoms, {dims}D)"
        )
    return x


@dataclass(frozen=True)
class Aligned(Representation):
    kind = "aligned"
    what = "aligned structures"

    def aligner(self, model) -> FrameAligner:
        weights = np.ones(model.atoms)
        if self.record.get("weights") == "mass" and model.masses is not None:
            weights = np.asarray(model.masses, dtype=np.float64)
        config = self.record.get("config") or {}
        return FrameAligner(
            self.method,
            weights,
            model.dims,
            model.record.reference,
            degeneracy_tol=float(config.get("degeneracy_tol", 1e-2)),
        )

    def inputs(self, x: np.ndarray, atoms: int, dims: int) -> np.ndarray:
        x = _check_frames(x, atoms, dims)
        return x.reshape(x.shape[0], -1)

    def rows(self, decoded: np.ndarray, atoms: int, dims: int) -> np.ndarray:
        return decoded.reshape(len(decoded), atoms, dims)

    def frame_row(self, model) -> Callable[[jax.Array], jax.Array]:
        align = self.aligner(model).frame_kernel()
        if align is None:
            raise UsageError(
                f"the model's frames were aligned outside vaetraj ({self.method}); "
                "its latent depends on how a frame is oriented"
            )
        return lambda xyz: align(xyz).reshape(-1)


@dataclass(frozen=True)
class Table(Representation):
    kind = "table"
    yields_structures = False
    takes_frames = False
    what = "a feature table (--features)"

    def inputs(self, x: np.ndarray, atoms: int, dims: int) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        table = x[:, None] if x.ndim == 1 else x[:, :, 0] if x.ndim == 3 and x.shape[2] == 1 else x
        if table.ndim != 2 or table.shape[1] != atoms * dims:
            raise BadInputError(
                f"a table of {table.shape[1:]} features does not match the model's "
                f"{atoms * dims} features"
            )
        return table


@dataclass(frozen=True)
class Featurized(Representation):
    kind = "featurized"
    yields_structures = False

    def describe(self) -> str:
        assert self.featurizer is not None
        return f"{self.featurizer.kind} computed from its frames (--featurize)"

    def inputs(self, x: np.ndarray, atoms: int, dims: int) -> np.ndarray:
        assert self.featurizer is not None
        return self.featurizer.transform(_check_frames(x, atoms, dims))

    def frame_row(self, model) -> Callable[[jax.Array], jax.Array]:
        assert self.featurizer is not None
        return self.featurizer.frame_features


def featurized_record(featurizer: Featurizer, read_options: dict[str, Any]) -> dict[str, Any]:
    """The alignment record of a featurized model (no alignment: features are
    invariant to rigid motions)."""
    return {
        "method": FEATURIZED_METHOD,
        "reference": "none",
        "weights": "none",
        "featurizer": featurizer.to_record(),
        "read_options": read_options,
    }


def representation_of(record: dict[str, Any]) -> Representation:
    """The representation a model file's alignment record describes; a featurized
    record whose featurizer cannot be rebuilt is a ValueError naming the problem."""
    method = record.get("method")
    if method == TABLE_METHOD:
        return Table(record)
    if method == FEATURIZED_METHOD:
        return Featurized(record, featurizer_from_record(record.get("featurizer", {})))
    return Aligned(record)
