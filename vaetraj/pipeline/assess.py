"""What a trained model is worth: `assess` encodes and decodes every frame once and
returns a `Quality` record (the report's fields, notes, and why the model fails, if it
does) with the latent density and the data statistics the model file keeps. It writes
nothing into the model; `train` puts the results in the record."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj._memory import return_freed_memory
from vaetraj.model import (
    ExplainedVariance,
    Moments,
    compute_kl_diagonal,
    compute_moments,
    compute_pca_explained_variance,
    count_active_units,
    fit_gaussian_mixture,
)
from vaetraj.pipeline.model import Model
from vaetraj.pipeline.structure import compute_data_stats
from vaetraj.pipeline.training_set import TrainingSet
from vaetraj.training import TrainConfig

_DENSITY_DRAWS_PER_FRAME = 4
# EM runs over at most this many points: frames beyond MAX_POINTS / 4 get fewer draws,
# and beyond MAX_POINTS a random subset of frames one draw each (EM on 1M points took
# 98 s here; the count is in the report and the model's summary as density_points)
_DENSITY_MAX_POINTS = 50_000
# EM stops when the mean log-likelihood per point gains less than this (scikit-learn's
# default is 1e-3): at 1e-6, the float32 resolution of a mean near -3, a slowly
# converging fit ran all 500 iterations (7 s on 50k points) for no visible change
_DENSITY_TOL = 1e-4
_PCA_MAX_FRAMES = 4096  # the PCA yardstick is fitted on at most this many training frames
_CHUNK = 16_384  # frames encoded and decoded at a time (memory: about 10 copies of a chunk)
_GAP_NOTE = 1.5  # validation RMSD above this many times the training RMSD earns a note


@dataclass(frozen=True)
class Quality:
    """The outcome of `assess`.

    Attributes:
        fields: the `TrainReport` fields it measured.
        notes: remarks for the report (a large validation gap).
        failure: why the model does not work, or None.
        density: the latent Gaussian mixture's arrays, or None for a failed model.
        data_stats: the structure statistics (`DataStats.to_dict`), None for features.
    """

    fields: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    failure: str | None = None
    density: dict[str, np.ndarray] | None = None
    data_stats: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Reconstruction:
    """Every frame encoded and decoded once, and the figures read from that."""

    mean: np.ndarray  # (frames, latent)
    std: np.ndarray
    per_atom: np.ndarray  # (atoms,) mean squared displacement over the training frames
    finite: bool
    fields: dict[str, Any]


class _Sums:
    """What `_reconstruct` adds up over chunks of frames: per-frame RMSD, the training
    frames' per-atom squared displacement, the explained variance of each set, and the
    decoded training frames' moments."""

    def __init__(
        self, xyz: np.ndarray, train_index: np.ndarray, val_index: np.ndarray, moments: Any
    ):
        frames, atoms, dims = xyz.shape
        self.role = np.zeros(frames, np.int8)  # 1: training, 2: validation
        self.role[train_index], self.role[val_index] = 1, 2
        if moments is None:
            moments = compute_moments(xyz.reshape(frames, -1), train_index)
        self.centre, self.train_std = moments
        self.explained = {1: ExplainedVariance(self.centre), 2: ExplainedVariance(self.centre)}
        self.decoded = Moments(atoms * dims)
        self.per_atom = np.zeros(atoms)
        self.rmsd = np.zeros(frames, np.float32)
        self.finite = True

    def add(self, part: slice, xyz: np.ndarray, decoded: np.ndarray) -> None:
        displacement = np.sum((decoded - xyz) ** 2, axis=-1)  # (chunk, atoms)
        self.rmsd[part] = np.sqrt(displacement.mean(axis=1))
        role = self.role[part]
        flat, flat_decoded = xyz.reshape(len(xyz), -1), decoded.reshape(len(xyz), -1)
        for which, total in self.explained.items():
            chosen = role == which
            total.add(flat[chosen], flat_decoded[chosen])
        training = role == 1
        self.per_atom += displacement[training].sum(axis=0, dtype=np.float64)
        self.decoded.add(flat_decoded[training])
        self.finite &= bool(np.isfinite(decoded).all())


def _reconstruct(
    model: Model,
    xyz: np.ndarray,
    train_index: np.ndarray,
    val_index: np.ndarray,
    moments: tuple[np.ndarray, np.ndarray] | None,
) -> _Reconstruction:
    """Every frame encoded and decoded once, chunk by chunk: the sums the figures need
    are taken in float64 as the chunks pass, so no decoded copy of the data is held (at
    1M frames of 50 atoms that copy and its float64 sums took 21 s and 1.2 GB)."""
    sums = _Sums(xyz, train_index, val_index, moments)
    mean = np.zeros((len(xyz), model.latent_dim), np.float32)
    std = np.zeros_like(mean)
    for start in range(0, len(xyz), _CHUNK):
        part = slice(start, start + _CHUNK)
        mean[part], std[part] = model.encode(xyz[part])
        sums.add(part, xyz[part], model.decode(mean[part]).reshape(xyz[part].shape))
    finite = sums.finite and bool(np.isfinite(mean).all() and np.isfinite(std).all())
    spread = float(len(train_index) * np.sum(sums.train_std**2))
    decoded_spread = float(len(train_index) * np.sum(sums.decoded.result()[1] ** 2))
    has_val = len(val_index) > 0
    flat = xyz.reshape(len(xyz), -1)
    yardstick = train_index[:: max(1, math.ceil(len(train_index) / _PCA_MAX_FRAMES))]
    recon_train = float(sums.rmsd[train_index].mean())
    recon_val = float(sums.rmsd[val_index].mean()) if has_val else None
    per_atom = sums.per_atom / max(1, len(train_index))
    fields = {
        "recon_rmsd_train": recon_train,
        "recon_rmsd_val": recon_val,
        "val_gap": recon_val / recon_train if recon_val is not None and recon_train > 0 else None,
        "explained_variance_train": sums.explained[1].value,
        "explained_variance_val": sums.explained[2].value if has_val else None,
        "pca_explained_variance": compute_pca_explained_variance(flat[yardstick], model.latent_dim),
        "decoded_variance": float(decoded_spread / spread) if spread > 0 else math.nan,
        "recon_rmsd_per_atom_train": np.sqrt(per_atom).tolist(),
        "kl_per_dim": [],
        "active_units": 0,
        "density_components": 0,
        "density_points": 0,
    }
    return _Reconstruction(mean, std, per_atom, finite, fields)


def assess(
    model: Model,
    data: TrainingSet,
    train_index: np.ndarray,
    val_index: np.ndarray,
    train_config: TrainConfig,
    *,
    key: jax.Array,
    moments: tuple[np.ndarray, np.ndarray] | None = None,
) -> Quality:
    """Diagnose the kept parameters of a trained model.

    Args:
        model: the trained model (its record is not changed).
        data: the frames it was trained on.
        train_index: the training frames' indices into `data.xyz`.
        val_index: the validation frames' indices (may be empty).
        train_config: gives `min_explained` and `density_components`.
        key: the random key of the latent density's fit.
        moments: the training frames' mean and std per feature (float64), when known
            (else they are computed).

    Returns:
        The report's fields, notes, the failure (if any), the density and statistics.
    """
    xyz = data.xyz
    recon = _reconstruct(model, xyz, train_index, val_index, moments)
    fields = dict(recon.fields)
    if not recon.finite:
        return Quality(fields, failure="the trained model gives non-finite output")
    return_freed_memory()  # the chunks' copies, before the next steps' own
    fields["kl_per_dim"], fields["active_units"] = _latent_use(recon, train_index)
    density = fit_density(recon.mean, recon.std, train_config.density_components, key=key)
    fields["density_components"] = len(density["weights"])
    frames_used, draws = _density_sample(len(recon.mean))
    fields["density_points"] = frames_used * draws
    return_freed_memory()
    data_stats = None
    if not data.is_features:
        data_stats = compute_data_stats(
            xyz,
            data.topology,
            data.masses,
            index=train_index,
            held_out_index=val_index,
            tether_std=np.sqrt(recon.per_atom / xyz.shape[2]),
            latent=recon.mean,
        ).to_dict()
    notes = []
    gap = fields["val_gap"]
    if gap is not None and gap > _GAP_NOTE:
        notes.append(
            f"validation RMSD is {gap:.2f}x the training RMSD: the model fits its training "
            "frames better than new ones (more frames, a smaller --hidden or --weight-decay "
            "help)"
        )
    failure = judge(fields, train_config.min_explained, model.latent_dim)
    return Quality(fields, notes, failure, density, data_stats)


def _latent_use(recon: _Reconstruction, train_index: np.ndarray) -> tuple[list[float], int]:
    """The mean KL per dimension over the training frames (at each frame's posterior:
    exact for a diagonal one) and the active units, a chunk of frames at a time."""
    kl = np.zeros(recon.mean.shape[1])
    spread = Moments(recon.mean.shape[1])
    for start in range(0, len(train_index), _CHUNK):
        part = train_index[start : start + _CHUNK]
        mean, std = recon.mean[part], recon.std[part]
        terms = compute_kl_diagonal(jnp.asarray(mean), jnp.asarray(std))
        kl += np.asarray(terms).sum(axis=0, dtype=np.float64)
        spread.add(mean)
    active = count_active_units(spread.result()[1] ** 2)
    return (kl / max(1, len(train_index))).tolist(), int(active)


def judge(fields: dict[str, Any], min_explained: float, latent_dim: int) -> str | None:
    """Why the model does not work, or None: it explains less than `min_explained` of
    what PCA with as many components explains on the same frames."""
    pca, explained = fields["pca_explained_variance"], fields["explained_variance_train"]
    if min_explained == 0 or not (math.isfinite(pca) and pca > 0):
        return None
    if explained >= min_explained * pca:
        return None
    components = f"{latent_dim} component" + ("s" if latent_dim > 1 else "")
    ignored = fields["decoded_variance"] < 0.1 * pca
    return (
        f"the model does not work: its reconstructions explain {explained:.1%} of the "
        f"training frames' variance, PCA with {components} {pca:.1%}"
        + ("; the decoder gives about the same structure whatever z is" if ignored else "")
    )


def _density_sample(frames: int) -> tuple[int, int]:
    """(frames drawn from, draws per frame) for the latent density's fit."""
    used = min(frames, _DENSITY_MAX_POINTS)
    return used, min(_DENSITY_DRAWS_PER_FRAME, max(1, _DENSITY_MAX_POINTS // used))


def fit_density(
    mean: np.ndarray, std: np.ndarray, components: int, *, key: jax.Array
) -> dict[str, np.ndarray]:
    """Fit the latent Gaussian mixture to draws from the encoder's posteriors.

    Args:
        mean: (frames, latent) posterior means.
        std: (frames, latent) posterior standard deviations.
        components: the most mixture components wanted.
        key: a JAX random key.

    Returns:
        The mixture's arrays by name, as the model file stores them.
    """
    draw_key, fit_key = jax.random.split(key)
    if len(mean) > _DENSITY_MAX_POINTS:
        pick = jax.random.fold_in(key, 2)
        chosen = np.sort(
            np.asarray(jax.random.choice(pick, len(mean), (_DENSITY_MAX_POINTS,), replace=False))
        )
        mean, std = mean[chosen], std[chosen]
    _, draws = _density_sample(len(mean))
    eps = np.asarray(jax.random.normal(draw_key, (draws, *mean.shape)))
    points = (mean[None] + std[None] * eps).reshape(-1, mean.shape[1])
    fit = fit_gaussian_mixture(
        jnp.asarray(points),
        components=min(components, len(points)),
        key=fit_key,
        tol=_DENSITY_TOL,
    )
    return {name: np.asarray(value) for name, value in fit.mixture._asdict().items()}
