"""The model HDF5 file (format `vaetraj-model`, version 1).

Layout:
  attrs   format, format_version, model_config (JSON), train_config (JSON), alignment
          (JSON: method, reference, weights, config, read_options), units, atoms, dims,
          topology (JSON, when known), summary (JSON), provenance (JSON: sources with
          SHA-256, seed, data SHA-256, vaetraj and JAX versions, created), data_stats
          (JSON, optional: bonds, plausibility limits and R_g range of the training
          frames; see `vaetraj.pipeline.structure`)
  /params/{encoder,decoder}/<layer>/{w,b}   float32, w is (inputs, outputs)
  /normalization/{mean,std}                 (features,) float32
  /alignment/atom_indices                   (atoms,) int64 into the original files
  /alignment/reference                      (atoms, dims) float32 (kabsch only)
  /alignment/masses                         (atoms,) float64 (when known)
  /density/{weights,means,scale_trils}      the latent Gaussian mixture
  /history/<metric>                         one value (or row) per epoch
No pickle anywhere: every array is a plain dataset and every structure is JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import jax
import numpy as np

from vaetraj._version import __version__
from vaetraj.errors import BadInputError, InputMissingError, UsageError, WriteError
from vaetraj.io._atomic import atomic_output, check_output, describe_os_error
from vaetraj.io._pytree import read_pytree, write_pytree
from vaetraj.model import ModelConfig, init_vae

MODEL_FORMAT = "vaetraj-model"
MODEL_FORMAT_VERSION = 1
_REQUIRED_ATTRS = ("model_config", "alignment", "units", "atoms", "dims", "summary", "provenance")
_DENSITY_FIELDS = ("weights", "means", "scale_trils")


@dataclass
class ModelRecord:
    """Everything a model file holds, as plain arrays and JSON-able values."""

    model_config: ModelConfig
    params: dict
    normalization_mean: np.ndarray
    normalization_std: np.ndarray
    alignment: dict[str, Any]
    atom_indices: np.ndarray
    atoms: int
    dims: int
    units: str
    reference: np.ndarray | None = None
    masses: np.ndarray | None = None
    topology: str | None = None
    train_config: str | None = None
    density: dict[str, np.ndarray] | None = None
    history: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    data_stats: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


def write_model_file(path: str | os.PathLike, record: ModelRecord, *, overwrite: bool) -> None:
    """Write atomically: a temporary file beside `path`, renamed when complete."""
    path = Path(path)
    if path.suffix.lower() not in (".h5", ".hdf5"):
        raise UsageError(f"a model file must be .h5, got '{path.suffix}'", path=path)
    check_output(path, overwrite=overwrite)
    with atomic_output(path, overwrite=overwrite) as tmp:
        try:
            with h5py.File(tmp, "w") as handle:
                _write(handle, record)
        except OSError as error:
            raise WriteError(describe_os_error(error), path=path) from None


def _write(handle: h5py.File, record: ModelRecord) -> None:
    attrs = handle.attrs
    attrs["format"] = MODEL_FORMAT
    attrs["format_version"] = MODEL_FORMAT_VERSION
    attrs["model_config"] = record.model_config.to_json()
    if record.train_config is not None:
        attrs["train_config"] = record.train_config
    attrs["alignment"] = json.dumps(record.alignment, sort_keys=True)
    attrs["units"] = record.units
    attrs["atoms"] = record.atoms
    attrs["dims"] = record.dims
    if record.topology is not None:
        attrs["topology"] = record.topology
    attrs["summary"] = json.dumps(record.summary, sort_keys=True)
    attrs["provenance"] = json.dumps(record.provenance, sort_keys=True)
    if record.data_stats is not None:
        attrs["data_stats"] = json.dumps(record.data_stats, sort_keys=True)
    write_pytree(handle.create_group("params"), record.params)
    normalization = handle.create_group("normalization")
    normalization["mean"] = np.asarray(record.normalization_mean, np.float32)
    normalization["std"] = np.asarray(record.normalization_std, np.float32)
    alignment = handle.create_group("alignment")
    alignment["atom_indices"] = np.asarray(record.atom_indices, np.int64)
    if record.reference is not None:
        alignment["reference"] = np.asarray(record.reference, np.float32)
    if record.masses is not None:
        alignment["masses"] = np.asarray(record.masses, np.float64)
    if record.density is not None:
        density = handle.create_group("density")
        for name in _DENSITY_FIELDS:
            density[name] = np.asarray(record.density[name])
    history = handle.create_group("history")
    for name, values in record.history.items():
        history[name] = np.asarray(values)


def read_model_file(path: str | os.PathLike) -> ModelRecord:
    """Read and check a model file: not one of ours, a newer format version or a missing
    field is a BadInputError naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputMissingError("no such model file", path=path)
    if not h5py.is_hdf5(path):
        raise BadInputError("not a vaetraj model (not an HDF5 file)", path=path)
    try:
        with h5py.File(path, "r") as handle:
            return _read(handle, path)
    except OSError as error:
        raise BadInputError(f"cannot read HDF5 file ({error})", path=path) from None


def _read(handle: h5py.File, path: Path) -> ModelRecord:
    attrs = handle.attrs
    if attrs.get("format") != MODEL_FORMAT:
        found = attrs.get("format")
        what = f"a '{found}' file" if found is not None else "no vaetraj format attribute"
        raise BadInputError(f"not a vaetraj model ({what})", path=path)
    version = int(attrs.get("format_version", -1))
    if not 1 <= version <= MODEL_FORMAT_VERSION:
        raise BadInputError(
            f"model format version {version} is not one this vaetraj ({__version__}) reads "
            f"(it reads 1 to {MODEL_FORMAT_VERSION}); upgrade vaetraj",
            path=path,
        )
    missing = [name for name in _REQUIRED_ATTRS if name not in attrs]
    missing += [
        name
        for name in ("params", "normalization/mean", "normalization/std", "alignment/atom_indices")
        if name not in handle
    ]
    if missing:
        raise BadInputError(f"damaged model: missing {', '.join(missing)}", path=path)
    try:
        config = ModelConfig.from_json(attrs["model_config"])
    except (ValueError, TypeError) as error:
        raise BadInputError(f"damaged model: bad model_config ({error})", path=path) from None
    template = jax.tree.map(np.asarray, init_vae(config, key=jax.random.key(0)))
    params, problems = read_pytree(handle["params"], template)
    if problems:
        raise BadInputError(f"damaged model: {'; '.join(problems)}", path=path)

    def optional(name):
        return handle[name][()] if name in handle else None

    density = None
    if "density" in handle:
        absent = [name for name in _DENSITY_FIELDS if name not in handle["density"]]
        if absent:
            raise BadInputError(f"damaged model: density lacks {', '.join(absent)}", path=path)
        density = {name: handle["density"][name][()] for name in _DENSITY_FIELDS}
    return ModelRecord(
        model_config=config,
        params=params,
        normalization_mean=handle["normalization/mean"][()],
        normalization_std=handle["normalization/std"][()],
        alignment=json.loads(attrs["alignment"]),
        atom_indices=handle["alignment/atom_indices"][()],
        atoms=int(attrs["atoms"]),
        dims=int(attrs["dims"]),
        units=str(attrs["units"]),
        reference=optional("alignment/reference"),
        masses=optional("alignment/masses"),
        topology=str(attrs["topology"]) if "topology" in attrs else None,
        train_config=str(attrs["train_config"]) if "train_config" in attrs else None,
        density=density,
        history={name: handle["history"][name][()] for name in handle.get("history", {})},
        summary=json.loads(attrs["summary"]),
        data_stats=json.loads(attrs["data_stats"]) if "data_stats" in attrs else None,
        provenance=json.loads(attrs["provenance"]),
    )
