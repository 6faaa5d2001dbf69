"""The model HDF5 file (format `vaetraj-model`, version 2), and its one owner: every
field is written by `_write` and read by `_read`, through `_MIGRATIONS` for an older
version (read -> migrate -> current), into a frozen `ModelRecord`.

Layout:
  attrs   format, format_version, model_config (JSON), train_config (JSON), alignment
          (JSON: method, reference, weights, config, read_options; a featurized model's
          method "featurized" and its featurizer's record; see
          `vaetraj.pipeline.representation`), units, atoms, dims,
          topology (JSON, when known), summary (JSON: the training summary, version
          SUMMARY_VERSION, the fields of SUMMARY_FIELDS), provenance (JSON: sources with
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

from vaetraj.configs import TrainConfig
from vaetraj.errors import (
    BadInputError,
    UsageError,
    VaetrajError,
)
from vaetraj.io._atomic import atomic_output, check_output, write_h5_bytes
from vaetraj.io._paths import require_input
from vaetraj.io._pytree import flatten_named, read_pytree, write_pytree
from vaetraj.io._schema import (
    Attr,
    Data,
    check_format,
    check_values,
    read_dataset,
    read_fields,
)
from vaetraj.io.topology import checked_topology
from vaetraj.model import ModelConfig, init_vae

MODEL_FORMAT = "vaetraj-model"
# 1: vaetraj until 2026-12-07; 2: the summary is a versioned record of named fields
# (not whatever the training report held), and a featurized model's alignment record
MODEL_FORMAT_VERSION = 2
SUMMARY_VERSION = 1
# what the training summary keeps of a run: renaming a report field does not change
# the file (`training_summary` refuses a report that lacks one)
SUMMARY_FIELDS = (
    "frames", "train_frames", "val_frames", "trajectories", "atoms", "dims", "latent_dim",
    "epochs_run", "best_epoch", "kept_epoch", "stopped_early", "resumed_from_epoch",
    "train_loss", "val_loss", "recon_rmsd_train", "recon_rmsd_val", "val_gap",
    "explained_variance_train", "explained_variance_val", "pca_explained_variance",
    "pca_explained_variance_val", "predictable_share", "decoded_variance",
    "recon_rmsd_per_atom_train", "kl_per_dim", "active_units", "density_components",
    "density_points", "recoveries", "final_lr", "status", "units", "devices", "processes",
    "frames_per_s", "wall_time_s", "streamed", "lag", "frame_time_ps",
)  # fmt: skip
_DENSITY_FIELDS = ("weights", "means", "scale_trils")


def training_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The summary a model file keeps of its training: SUMMARY_FIELDS of the report
    (`TrainReport.to_dict()`), and the summary's version. A report without one of them
    is a bug (KeyError), not a file that silently lacks it."""
    return {"version": SUMMARY_VERSION, **{name: report[name] for name in SUMMARY_FIELDS}}


@dataclass(frozen=True)
class ModelRecord:
    """Everything a model file holds, as plain arrays, JSON-able values and configs;
    complete once built (training makes it after the assessment, with its density,
    statistics, summary and provenance)."""

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
    train_config: TrainConfig | None = None  # None: not recorded, or not readable
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
        write_h5_bytes(tmp, lambda handle: _write(handle, record))


def _write(handle: h5py.File, record: ModelRecord) -> None:
    attrs = handle.attrs
    attrs["format"] = MODEL_FORMAT
    attrs["format_version"] = MODEL_FORMAT_VERSION
    attrs["model_config"] = record.model_config.to_json()
    if record.train_config is not None:
        attrs["train_config"] = record.train_config.to_json()
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
    path = require_input(path, "model file")
    if not h5py.is_hdf5(path):
        raise BadInputError("not a vaetraj model (not an HDF5 file)", path=path)
    try:
        with h5py.File(path, "r") as handle:
            return _read(handle, path)
    except OSError as error:
        raise BadInputError(f"cannot read HDF5 file ({error})", path=path) from None


_WHAT = "damaged model"
_ATTRS = (
    Attr("model_config", "object"),
    Attr("train_config", "object", required=False),
    Attr("alignment", "object"),
    Attr("units", "text"),
    Attr("atoms", "int", dim="atoms", minimum=1),
    Attr("dims", "int", dim="dims", minimum=1),
    Attr("topology", "object", required=False),
    Attr("summary", "object"),
    Attr("provenance", "object"),
    Attr("data_stats", "object", required=False),
)
_DATA = (
    Data("normalization/mean", "float", ("features",)),
    Data("normalization/std", "float", ("features",), positive=True),
    Data("alignment/atom_indices", "int", ("atoms",), nonnegative=True),
    Data("alignment/reference", "float", ("atoms", "dims"), required=False),
    Data("alignment/masses", "float", ("atoms",), required=False, positive=True),
)
_DENSITY = (
    Data("density/weights", "float", ("components",), nonnegative=True),
    Data("density/means", "float", ("components", "latent")),
    Data("density/scale_trils", "float", ("components", "latent", "latent")),
)


def _damaged(path: Path, problem: str) -> BadInputError:
    return BadInputError(f"{_WHAT}: {problem}", path=path)


def _model_config(fields: dict, path: Path) -> ModelConfig:
    try:
        return ModelConfig(**fields)
    except (ValueError, TypeError, VaetrajError) as error:
        # a config error names the field, as the file does
        raise _damaged(path, f"bad model_config ({error})") from None


def _read_params(handle: h5py.File, config: ModelConfig, path: Path) -> dict:
    # the weights' names, shapes and dtypes, traced without drawing them (drawing them
    # compiled a program per layer shape: 1.7 s of every command that reads a model)
    shapes = jax.eval_shape(lambda: init_vae(config, key=jax.random.key(0)))
    template = jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), shapes)
    if not isinstance(handle.get("params"), h5py.Group):
        raise _damaged(path, "missing /params (a group of the weights)")
    params, problems = read_pytree(handle["params"], template)
    if problems:
        raise _damaged(path, "; ".join(problems))
    for name, leaf in flatten_named(params).items():
        check_values(leaf, Data(f"params/{name}", "float", ()), path, _WHAT)
    return params


def _check_alignment(alignment: dict, arrays: dict, path: Path) -> None:
    kinds = {
        "method": str,
        "reference": str,
        "weights": str,
        "config": dict,
        "read_options": dict,
        "featurizer": dict,
    }
    if "method" not in alignment:
        raise _damaged(path, "attribute 'alignment' has no method")
    for key, kind in kinds.items():
        if key in alignment and not isinstance(alignment[key], kind):
            raise _damaged(path, f"attribute 'alignment' has a bad {key} ({alignment[key]!r})")
    if alignment["method"] == "kabsch" and "alignment/reference" not in arrays:
        raise _damaged(path, "a kabsch model needs /alignment/reference")


def _summary_from_v1(summary: dict[str, Any]) -> dict[str, Any]:
    """Version 1 kept the whole training report: its SUMMARY_FIELDS (those it had; a
    model from before a field existed lacks it), as version 1 of the summary."""
    return {"version": SUMMARY_VERSION, **{k: summary[k] for k in SUMMARY_FIELDS if k in summary}}


# format version -> what makes its attributes (parsed) those of the next version
_MIGRATIONS = {1: lambda attrs: {**attrs, "summary": _summary_from_v1(attrs["summary"])}}


def _format_version(attrs) -> int:
    version = attrs.get("format_version", -1)
    return int(version[()] if isinstance(version, np.ndarray) else version)


def _migrated(fields: dict[str, Any], version: int) -> dict[str, Any]:
    """A file's parsed attributes brought from its version to the current one."""
    for step in range(version, MODEL_FORMAT_VERSION):
        fields = _MIGRATIONS[step](fields)
    return fields


def _train_config(fields: dict[str, Any]) -> TrainConfig | None:
    """The recorded training config; None when absent or not one this vaetraj reads
    (a field it does not know, a value out of range): it is provenance, not needed to
    use the model."""
    try:
        return TrainConfig(**fields["train_config"]) if "train_config" in fields else None
    except (TypeError, ValueError, VaetrajError):
        return None


def _read(handle: h5py.File, path: Path) -> ModelRecord:
    attrs = handle.attrs
    check_format(attrs, path, name=MODEL_FORMAT, what="model", newest=MODEL_FORMAT_VERSION)
    fields = read_fields(handle, _ATTRS, (), path=path, what=_WHAT)
    fields.attrs = _migrated(fields.attrs, _format_version(attrs))
    config = _model_config(fields.attrs["model_config"], path)
    atoms, dims = fields.attrs["atoms"], fields.attrs["dims"]
    features, latent = config.size
    # a featurized model's network takes its featurizer's features, not the atoms'
    # coordinates (`vaetraj.pipeline.representation` checks the two agree)
    featurized = fields.attrs["alignment"].get("method") == "featurized"
    if atoms * dims != features and not featurized:
        raise _damaged(
            path, f"{atoms} atoms in {dims}D do not make the model's {features} features"
        )
    known = {"features": features, "latent": latent}
    arrays = read_fields(
        handle, (), _DATA, path=path, what=_WHAT, dims={**fields.dims, **known}
    ).arrays
    _check_alignment(fields.attrs["alignment"], arrays, path)
    if "topology" in attrs:
        checked_topology(attrs["topology"], atoms=atoms, path=path, what=_WHAT)
    density = None
    if "density" in handle:
        found = read_fields(handle, (), _DENSITY, path=path, what=_WHAT, dims=known).arrays
        density = {name: found[f"density/{name}"] for name in _DENSITY_FIELDS}
    params = _read_params(handle, config, path)
    history = _read_history(handle, path)
    return ModelRecord(
        model_config=config,
        params=params,
        normalization_mean=arrays["normalization/mean"],
        normalization_std=arrays["normalization/std"],
        alignment=fields.attrs["alignment"],
        atom_indices=arrays["alignment/atom_indices"],
        atoms=atoms,
        dims=dims,
        units=fields.attrs["units"],
        reference=arrays.get("alignment/reference"),
        masses=arrays.get("alignment/masses"),
        topology=attrs["topology"] if "topology" in attrs else None,
        train_config=_train_config(fields.attrs),
        density=density,
        history=history,
        summary=fields.attrs["summary"],
        data_stats=fields.attrs.get("data_stats"),
        provenance=fields.attrs["provenance"],
    )


def _read_history(handle: h5py.File, path: Path) -> dict[str, np.ndarray]:
    """One value (or row) per epoch for every metric; NaN is allowed (a diverged epoch
    the guard rolled back is recorded as it was)."""
    if "history" not in handle:
        return {}
    group = handle["history"]
    if not isinstance(group, h5py.Group):
        raise _damaged(path, "/history is not a group")
    history: dict[str, np.ndarray] = {}
    dims: dict[str, int] = {}
    for name in group:
        spec = Data(f"history/{name}", "number", ("epochs",), finite=False)
        dataset = group[name]
        if isinstance(dataset, h5py.Dataset) and dataset.ndim == 2:
            spec = Data(spec.name, "number", ("epochs", "columns_" + name), finite=False)
        values = read_dataset(handle, spec, path, _WHAT, dims)
        assert values is not None  # a required dataset
        history[name] = values
    return history
