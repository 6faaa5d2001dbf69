"""Biased runs (format `vaetraj-bias`, version 1), their checkpoints, and per-frame
weights read for reweighting.

A bias file (`vaetraj bias -o bias.h5`), one row per saved frame of its trajectory:
  /time (frames,) ps; /cv (frames, cvs) the biased latent coordinates; /bias (frames,)
  kJ/mol, the bias potential on the frame when it was saved; /ct (frames,) kJ/mol,
  metadynamics' c(t); /weights (frames,), the reweighting weights (mean 1), absent for
  a steered run (it has none); /fes (grid...) kJ/mol and /fes_axis_<i> for
  metadynamics: the free energy along the CVs from the final bias. attrs: format,
  format_version and `fields` (JSON: method, estimator, config, model, system,
  trajectory, temperature, time_step, ...).
A checkpoint (`vaetraj-bias-checkpoint`, version 1): the same rows so far, /positions
  (frames, particles, 3) float32, the bias's own state (/state/<name>), OpenMM's
  checkpoint bytes (/openmm) and `fields`.
Weights (`--weights` of train, evaluate, kinetics, plot): a bias file, a .npy array,
  or a text file (.txt, .dat, .csv) of one number per line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from vaetraj.errors import BadInputError
from vaetraj.io._atomic import atomic_output, write_h5_bytes
from vaetraj.io._paths import require_input
from vaetraj.io._schema import check_format

BIAS_FORMAT = "vaetraj-bias"
BIAS_CHECKPOINT_FORMAT = "vaetraj-bias-checkpoint"
FORMAT_VERSION = 1
WEIGHT_SUFFIXES = (".h5", ".hdf5", ".npy", ".txt", ".dat", ".csv")


def _write(path, name: str, fields: dict, arrays: dict, *, overwrite: bool, during_stop=False):
    def fill(handle: h5py.File) -> None:
        handle.attrs["format"] = name
        handle.attrs["format_version"] = FORMAT_VERSION
        handle.attrs["fields"] = json.dumps(fields, sort_keys=True, default=float)
        for key, value in arrays.items():
            handle[key] = np.asarray(value)

    with atomic_output(path, overwrite=overwrite, during_stop=during_stop) as tmp:
        write_h5_bytes(tmp, fill)


def _read(path: Path, name: str, what: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    require_input(path, what)
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise BadInputError(f"not a readable {what} ({error})", path=path) from None
    with handle:
        check_format(handle.attrs, path, name=name, what=what, newest=FORMAT_VERSION)
        try:
            fields = json.loads(handle.attrs["fields"])
            arrays = {key: _dataset(handle, key) for key in _leaves(handle)}
        except (KeyError, ValueError, TypeError, OSError) as error:
            raise BadInputError(f"damaged {what}: {error}", path=path) from None
    if not isinstance(fields, dict):
        raise BadInputError(f"damaged {what}: its fields are not a JSON object", path=path)
    return fields, arrays


def _leaves(handle: h5py.File) -> list[str]:
    names: list[str] = []
    handle.visititems(
        lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None
    )
    return names


def _dataset(handle: h5py.File, key: str) -> np.ndarray:
    value = handle[key][()]
    return np.frombuffer(value, np.uint8) if isinstance(value, bytes) else np.asarray(value)


def write_bias_file(path, fields: dict, arrays: dict, *, overwrite: bool = False) -> None:
    _write(path, BIAS_FORMAT, fields, arrays, overwrite=overwrite)


def read_bias_file(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(fields, arrays) of a bias file; BadInputError naming what is wrong."""
    fields, arrays = _read(Path(path), BIAS_FORMAT, "bias file")
    frames = len(arrays.get("time", ()))
    for key in ("time", "cv", "bias"):
        if key not in arrays or len(arrays[key]) != frames:
            raise BadInputError(
                f"damaged bias file: /{key} missing or not one row per frame", path=path
            )
    return fields, arrays


def write_bias_checkpoint(path, fields: dict, arrays: dict, openmm_state: bytes) -> None:
    arrays = {**arrays, "openmm": np.frombuffer(openmm_state, np.uint8)}
    _write(path, BIAS_CHECKPOINT_FORMAT, fields, arrays, overwrite=True, during_stop=True)


def read_bias_checkpoint(
    path: str | os.PathLike,
) -> tuple[dict[str, Any], dict[str, np.ndarray], bytes]:
    fields, arrays = _read(Path(path), BIAS_CHECKPOINT_FORMAT, "bias checkpoint")
    if "openmm" not in arrays or "step" not in fields:
        raise BadInputError("damaged bias checkpoint: no OpenMM state or step", path=path)
    return fields, arrays, arrays.pop("openmm").astype(np.uint8).tobytes()


def read_weights(path: str | os.PathLike, frames: int | None = None) -> np.ndarray:
    """Per-frame weights (frames,) float64 scaled to mean 1, from a bias file, a .npy
    or a text file: BadInputError (naming the file) for a negative, non-finite or
    all-zero weight, for a steered run (no weights) or a count other than `frames`."""
    return read_weights_and_temperature(path, frames)[0]


def read_weights_and_temperature(
    path: str | os.PathLike, frames: int | None = None
) -> tuple[np.ndarray, float | None]:
    """As `read_weights`, with the bias run's temperature (K; None for a .npy or text
    file, which do not say), read in one pass."""
    path = Path(path)
    temperature = None
    require_input(path, "weights")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        fields, arrays = read_bias_file(path)
        if "weights" not in arrays:
            raise BadInputError(
                f"a {fields.get('method')} run has no equilibrium weights", path=path
            )
        weights, temperature = arrays["weights"], fields.get("temperature")
    elif suffix == ".npy":
        try:
            weights = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            raise BadInputError(f"not a NumPy array file ({error})", path=path) from None
    elif suffix in WEIGHT_SUFFIXES:
        try:
            weights = np.loadtxt(path, delimiter="," if suffix == ".csv" else None, ndmin=1)
        except ValueError as error:
            raise BadInputError(f"not one number per line ({error})", path=path) from None
    else:
        raise BadInputError(
            f"weights must be {', '.join(WEIGHT_SUFFIXES)}, got '{suffix}'", path=path
        )
    return _checked(np.asarray(weights, dtype=np.float64), path, frames), temperature


def _checked(weights: np.ndarray, path: Path, frames: int | None) -> np.ndarray:
    if weights.ndim != 1:
        raise BadInputError(
            f"weights must be one number per frame, got shape {weights.shape}", path=path
        )
    if frames is not None and len(weights) != frames:
        raise BadInputError(f"has {len(weights)} weights for {frames} frames", path=path)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or not weights.sum() > 0:
        raise BadInputError("weights must be finite, not negative, and not all zero", path=path)
    return weights / weights.mean()
