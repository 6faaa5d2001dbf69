"""`Model` and `load_model`: a trained VAE as a Python object over its file record."""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import numpy as np

from vaetraj._device import to_device, tree_to_device
from vaetraj._interrupt import check_stop
from vaetraj._programs import kept
from vaetraj.errors import BadInputError, UsageError
from vaetraj.io.model_file import ModelRecord, read_model_file, write_model_file
from vaetraj.io.trajectory import VaetrajWarning
from vaetraj.model import (
    GaussianMixture,
    ModelConfig,
    Normalization,
    decode_data,
    encode_data,
    sample_mixture,
)
from vaetraj.pipeline.representation import Representation, representation_of
from vaetraj.pipeline.structure import DataStats

_CHUNK_FRAMES = 8_192  # measured: 8k-frame chunks stay in cache, 1.35x faster than 64k


@functools.lru_cache(maxsize=16)
def _kernels(config: ModelConfig):
    """jit(vmap(...)) of the frame kernels for one architecture, compiled once each."""

    def encode(params, mean, std, flat):
        posterior = encode_data(params, flat, config, mean, std)
        return posterior.mean, posterior.std

    def decode(params, mean, std, z):
        return decode_data(params, z, config, mean, std)

    return (
        jax.jit(jax.vmap(encode, in_axes=(None, None, None, 0))),
        kept("decode", jax.jit(jax.vmap(decode, in_axes=(None, None, None, 0))), static=config),
    )


def _draw_mixture(mixture: GaussianMixture, keys: jax.Array) -> jax.Array:
    """One draw per key; the mixture is an argument, so every model shares one compile."""
    return jax.vmap(lambda key: sample_mixture(mixture, key=key))(keys)


_sample_mixture_batch = kept("sample_mixture", jax.jit(_draw_mixture))


def _chunks(total: int) -> Iterator[slice]:
    for start in range(0, total, _CHUNK_FRAMES):
        check_stop()  # a safe point for a signal (see vaetraj._interrupt)
        yield slice(start, min(total, start + _CHUNK_FRAMES))


class Model:
    """A trained VAE: the architecture, parameters, normalization, the alignment its
    frames had, the latent density, training history and provenance.

    encode/decode work on frames aligned as the training frames were (the alignment
    recorded in `alignment`); shapes are (frames, atoms, dims) and (frames, latent).
    """

    def __init__(self, record: ModelRecord):
        self.record = record
        self.path: Path | None = None  # the file it was loaded from, if any
        self._params = tree_to_device(record.params)

    # -- what it is -------------------------------------------------------------------
    @property
    def config(self) -> ModelConfig:
        return self.record.model_config

    @property
    def latent_dim(self) -> int:
        return self.config.size[1]

    @property
    def atoms(self) -> int:
        return self.record.atoms

    @property
    def dims(self) -> int:
        return self.record.dims

    @functools.cached_property
    def representation(self) -> Representation:
        """What the network takes and gives (`vaetraj.pipeline.representation`)."""
        return representation_of(self.record.alignment)

    @property
    def features(self) -> int:
        return self.config.size[0]

    @property
    def units(self) -> str:
        """Length units of the coordinates: "nm" for mdtraj formats, else as recorded."""
        return self.record.units

    @property
    def params(self) -> dict:
        return self.record.params

    @property
    def normalization(self) -> Normalization:
        return Normalization(self.record.normalization_mean, self.record.normalization_std)

    @property
    def density(self) -> GaussianMixture | None:
        if self.record.density is None:
            return None
        return GaussianMixture(**tree_to_device(dict(self.record.density)))

    @property
    def alignment(self) -> dict:
        return self.record.alignment

    @property
    def history(self) -> dict[str, np.ndarray]:
        return self.record.history

    @property
    def summary(self) -> dict:
        return self.record.summary

    @property
    def lag(self) -> int:
        """Frames between the frame a time-lagged model encodes and the one it decodes
        (`train --lag`); 0 for a plain VAE, or a model from before the lag existed."""
        config = self.record.train_config
        return 0 if config is None else config.lag

    @functools.cached_property
    def data_stats(self) -> DataStats | None:
        """The training frames' bonds, plausibility limits and R_g range, or None for a
        model written before vaetraj recorded them. Parsed once per model (its record
        is frozen), so the terms a DataStats caches serve every later check, refinement
        and optimization."""
        stats = self.record.data_stats
        return None if stats is None else DataStats.from_dict(stats)

    @property
    def masses(self) -> np.ndarray | None:
        return self.record.masses

    @property
    def topology(self):
        """The mdtraj Topology of the modelled atoms, or None."""
        if self.record.topology is None:
            return None
        from vaetraj.io.topology import topology_from_json

        return topology_from_json(self.record.topology)

    # -- what it does -----------------------------------------------------------------
    def encode(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and std (frames, latent) of frames (frames, atoms, dims),
        aligned as the training frames were (featurized here for a featurized model),
        or of a table (frames, features) for a table model. Deterministic: no draw is
        made."""
        return self.encode_rows(self.representation.inputs(xyz, self.atoms, self.dims))

    def encode_rows(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As `encode`, of the network's input rows (frames, features) float32: what
        the representation made of the frames (training's own data, say)."""
        encode, _ = _kernels(self.config)
        mean, std = self._normalization_arrays()
        parts = [encode(self._params, mean, std, flat[part]) for part in _chunks(len(flat))]
        if not parts:
            empty = np.zeros((0, self.latent_dim), np.float32)
            return empty, empty
        return (
            np.concatenate([np.asarray(m) for m, _ in parts]),
            np.concatenate([np.asarray(s) for _, s in parts]),
        )

    def frame_encoder(self) -> Callable[[jax.Array], jax.Array]:
        """The posterior mean (latent,) of one frame (atoms, dims) float32 as read (its
        molecule whole), aligned or featurized as `encode` does it, as a JAX function
        to trace inside `jit` and `grad` (the OpenMM latent force). A UsageError for a
        model that takes no frames, or whose frames were aligned outside vaetraj."""
        row = self.representation.frame_row(self)
        params, config = self._params, self.config
        mean, std = self._normalization_arrays()
        return lambda xyz: encode_data(params, row(xyz), config, mean, std).mean

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Decoder means as frames (points, atoms, dims) for latent points (points,
        latent); a model of a table or of features gives rows (points, features),
        which for the categorical likelihood hold class probabilities."""
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise BadInputError(
                f"latent points of shape {z.shape} do not match the model's latent "
                f"dimension {self.latent_dim}"
            )
        _, decode = _kernels(self.config)
        mean, std = self._normalization_arrays()
        parts = [np.asarray(decode(self._params, mean, std, z[part])) for part in _chunks(len(z))]
        flat = np.concatenate(parts) if parts else np.zeros((0, self.features), np.float32)
        return self.representation.rows(flat, self.atoms, self.dims)

    def sample_latent(
        self, n: int, *, key: jax.Array, prior: str = "density", temperature: float = 1.0
    ) -> np.ndarray:
        """n latent points from the fitted density ("density") or N(0, I) ("standard").
        temperature multiplies every standard deviation: below 1 stays nearer the modes,
        above 1 explores further out."""
        if n <= 0:
            raise UsageError(f"the number of samples must be at least 1, got {n}")
        if not temperature > 0:
            raise UsageError(
                f"temperature must be positive, got {temperature}", fields=("temperature",)
            )
        if prior == "standard":
            return np.asarray(jax.random.normal(key, (n, self.latent_dim)) * temperature)
        if prior != "density":
            raise UsageError(
                f"prior must be 'density' or 'standard', got '{prior}'", fields=("prior",)
            )
        density = self.density
        if density is None:
            raise BadInputError(
                "this model has no latent density; use prior standard", fields=("prior",)
            )
        density = density._replace(scale_trils=density.scale_trils * temperature)
        return np.asarray(_sample_mixture_batch(density, jax.random.split(key, n)))

    def sample(
        self, n: int, *, key: jax.Array, prior: str = "density", temperature: float = 1.0
    ) -> np.ndarray:
        """n decoded conformations (n, atoms, dims), or rows for a model of features."""
        return self.decode(self.sample_latent(n, key=key, prior=prior, temperature=temperature))

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> None:
        write_model_file(path, self.record, overwrite=overwrite)

    def _normalization_arrays(self) -> tuple[jax.Array, jax.Array]:
        return to_device(self.record.normalization_mean), to_device(self.record.normalization_std)


def require_structure_model(model: Model, command: str, *, path=None) -> None:
    """Refuse a model of features where a command needs structures (atoms in 2D or 3D)."""
    representation = model.representation
    if not representation.yields_structures:
        instead = "encode, kinetics on its latent path, or decode and sample to a table"
        if representation.takes_frames:
            instead = (
                "encode, evaluate, kinetics on its latent path, or decode and sample to a table"
            )
        raise UsageError(
            f"`{command}` needs a model of structures; this one is of "
            f"{representation.describe()}: use {instead}",
            path=path,
        )


def _check_representation(model: Model, path) -> None:
    """The recorded representation rebuilt and matching the network: a damaged or
    unknown one names the problem."""
    try:
        representation = model.representation
    except (TypeError, ValueError) as error:
        raise BadInputError(f"damaged model: bad alignment record ({error})", path=path) from None
    featurizer = representation.featurizer
    if featurizer is not None and (featurizer.atoms, featurizer.features) != (
        model.atoms,
        model.features,
    ):
        raise BadInputError(
            f"damaged model: its featurizer takes {featurizer.atoms} atoms to "
            f"{featurizer.features} features, the model has {model.atoms} atoms and "
            f"{model.features} inputs",
            path=path,
        )


def load_model(path: str | os.PathLike) -> Model:
    """Read a model file written by `vaetraj train` (or `Model.save`).

    Args:
        path: the model `.h5`.

    Returns:
        The model. One whose training failed its check (written for inspection) loads
        with a VaetrajWarning.

    Raises:
        BadInputError: the file is damaged (naming the field).
    """
    model = Model(read_model_file(path))
    model.path = Path(path)
    _check_representation(model, path)
    if model.record.data_stats is not None and model.representation.yields_structures:
        try:
            stats = model.data_stats
            if stats is not None:
                stats.check(model.atoms, model.dims, model.latent_dim)
        except (TypeError, ValueError) as error:
            raise BadInputError(f"damaged model: bad data_stats ({error})", path=path) from None
    summary = model.record.summary
    if summary.get("status") == "failed":
        warnings.warn(
            f"{path}: this model failed the check after training (its reconstructions "
            f"explain {summary.get('explained_variance_train', float('nan')):.1%} of the "
            f"training variance, PCA {summary.get('pca_explained_variance', float('nan')):.1%})"
            "; what it gives means little",
            VaetrajWarning,
            stacklevel=2,
        )
    return model
