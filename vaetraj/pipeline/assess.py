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
    compute_pca_held_out_explained_variance,
    compute_prediction_explained_variance,
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
# with a lag: when the best linear prediction of the later frames keeps less than this
# share of what PCA explains of one frame (`predictable_share`), and the model's
# predictions too, frames that far apart share next to nothing (the textbook polymer at
# lag 5: 0.05), and no latent space can be shown to hold a slow process. A share, not
# an absolute level: PCA with 2 components explains only 14% of a 30-bead chain
LITTLE_TO_PREDICT = 0.1


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

    density_mean: np.ndarray  # (density frames, latent): their posterior means
    density_std: np.ndarray  # and stds
    per_atom: np.ndarray  # (atoms,) mean squared displacement over the training frames
    finite: bool
    fields: dict[str, Any]


class _Sums:
    """What `_reconstruct` adds up over chunks of frames: the RMSD and explained
    variance of each set, the training frames' per-atom squared displacement, KL per
    dimension and spread of posterior means, and the decoded training frames' moments.
    Nothing per frame is kept but the role (1: training, 2: validation)."""

    def __init__(
        self, xyz: np.ndarray, train_index: np.ndarray, val_index: np.ndarray, moments: Any,
        latent: int,
    ):  # fmt: skip
        frames, atoms, dims = xyz.shape
        self.role = np.zeros(frames, np.int8)
        self.role[train_index], self.role[val_index] = 1, 2
        if moments is None:
            moments = compute_moments(xyz.reshape(frames, -1), train_index)
        self.centre, self.train_std = moments
        self.explained = {1: ExplainedVariance(self.centre), 2: ExplainedVariance(self.centre)}
        self.rmsd = {1: 0.0, 2: 0.0}
        self.decoded = Moments(atoms * dims)
        self.latent = Moments(latent)
        self.kl = np.zeros(latent)
        self.per_atom = np.zeros(atoms)
        self.finite = True

    def add(self, part: slice, xyz: np.ndarray, decoded: np.ndarray, posterior: tuple) -> None:
        """Add the frames of `part`: `xyz` is what their decoded frames are scored
        against (with a lag, the frames `lag` later; it may be shorter than the part
        at the data's end, where no frame has a target and so none has a role)."""
        count = len(xyz)
        decoded, posterior = decoded[:count], tuple(value[:count] for value in posterior)
        displacement = np.sum((decoded - xyz) ** 2, axis=-1)  # (chunk, atoms)
        rmsd = np.sqrt(displacement.mean(axis=1))
        role = self.role[part][:count]
        flat, flat_decoded = xyz.reshape(len(xyz), -1), decoded.reshape(len(xyz), -1)
        for which, total in self.explained.items():
            chosen = role == which
            total.add(flat[chosen], flat_decoded[chosen])
            self.rmsd[which] += float(rmsd[chosen].sum(dtype=np.float64))
        training = role == 1
        self.per_atom += displacement[training].sum(axis=0, dtype=np.float64)
        self.decoded.add(flat_decoded[training])
        mean, std = (value[training] for value in posterior)
        # the KL per dimension at each frame's posterior (exact for a diagonal one)
        terms = compute_kl_diagonal(jnp.asarray(mean), jnp.asarray(std))
        self.kl += np.asarray(terms).sum(axis=0, dtype=np.float64)
        self.latent.add(mean)
        finite = [np.isfinite(value).all() for value in (decoded, *posterior)]
        self.finite &= bool(all(finite))


def _reconstruct(
    model: Model,
    xyz: np.ndarray,
    train_index: np.ndarray,
    val_index: np.ndarray,
    moments: tuple[np.ndarray, np.ndarray] | None,
    density_frames: np.ndarray,
    lag: int = 0,
) -> _Reconstruction:
    """Every frame encoded and decoded once, chunk by chunk: the sums the figures need
    are taken in float64 as the chunks pass, so no decoded copy of the data is held (at
    1M frames of 50 atoms that copy and its float64 sums took 21 s and 1.2 GB). Only
    the posteriors of `density_frames` (sorted) are kept. With a lag, each input
    frame's decoded frame is scored against the frame `lag` later (`train_index` and
    `val_index` are the pairs' inputs), and the yardstick is the best linear
    prediction of those frames instead of PCA."""
    if lag:  # the figures describe the targets: their moments, not the inputs'
        moments = compute_moments(xyz.reshape(len(xyz), -1), train_index + lag)
    sums = _Sums(xyz, train_index, val_index, moments, model.latent_dim)
    density_mean = np.zeros((len(density_frames), model.latent_dim), np.float32)
    density_std = np.zeros_like(density_mean)
    for start in range(0, len(xyz), _CHUNK):
        part = slice(start, start + _CHUNK)
        frames = xyz[part]  # one read (a file's frames are read from disk)
        mean, std = model.encode_rows(frames.reshape(len(frames), -1))
        picked = slice(*np.searchsorted(density_frames, [start, start + len(std)]))
        density_mean[picked] = mean[density_frames[picked] - start]
        density_std[picked] = std[density_frames[picked] - start]
        decoded = model.decode(mean).reshape(frames.shape)
        targets = xyz[start + lag : start + _CHUNK + lag] if lag else frames
        sums.add(part, targets, decoded, (mean, std))
    per_atom = sums.per_atom / max(1, len(train_index))
    fields = {
        **_rmsd_fields(sums, len(train_index), len(val_index)),
        "explained_variance_train": sums.explained[1].value,
        "explained_variance_val": sums.explained[2].value if len(val_index) else None,
        **_yardsticks(xyz, train_index, val_index, lag, model.latent_dim),
        "decoded_variance": _decoded_share(sums),
        "recon_rmsd_per_atom_train": np.sqrt(per_atom).tolist(),
        "kl_per_dim": (sums.kl / max(1, len(train_index))).tolist(),
        "active_units": int(count_active_units(sums.latent.result()[1] ** 2)),
        "density_components": 0,
        "density_points": 0,
    }
    return _Reconstruction(density_mean, density_std, per_atom, sums.finite, fields)


@dataclass(frozen=True)
class _Encoded:
    """The posterior means of frames of xyz, encoded when asked for (the data
    statistics want those of a few anchor frames: no means of every frame are kept)."""

    model: Model
    xyz: np.ndarray

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        return self.model.encode(self.xyz[np.asarray(rows)])[0]


def _yardsticks(
    xyz: np.ndarray, train_index: np.ndarray, val_index: np.ndarray, lag: int, components: int
) -> dict[str, float | None]:
    """What a linear map through `components` dimensions explains of the training
    frames (at most _PCA_MAX_FRAMES of them), as `pca_explained_variance`: PCA's share,
    or with a lag the best rank-`components` linear prediction of the frames `lag`
    later; without a lag, `pca_explained_variance_val` is what that PCA explains of the
    validation frames (the model's validation share is compared with it, like with
    like). With a lag, `predictable_share` is the second over the first: how much of
    the linear structure of one frame is still there `lag` frames later."""
    picked = train_index[:: max(1, math.ceil(len(train_index) / _PCA_MAX_FRAMES))]
    flat = xyz.reshape(len(xyz), -1)
    pca = compute_pca_explained_variance(flat[picked], components)
    if not lag:
        held_out = val_index[:: max(1, math.ceil(len(val_index) / _PCA_MAX_FRAMES))]
        pca_val = (
            compute_pca_held_out_explained_variance(flat[picked], flat[held_out], components)
            if len(held_out)
            else None
        )
        return {
            "pca_explained_variance": pca,
            "pca_explained_variance_val": pca_val,
            "predictable_share": None,
        }
    later = compute_prediction_explained_variance(flat[picked], flat[picked + lag], components)
    share = later / pca if math.isfinite(pca) and pca > 0 else math.nan
    return {
        "pca_explained_variance": later,
        "pca_explained_variance_val": None,
        "predictable_share": share,
    }


def _rmsd_fields(sums: _Sums, train: int, val: int) -> dict[str, Any]:
    recon_train = sums.rmsd[1] / max(1, train)
    recon_val = sums.rmsd[2] / val if val else None
    return {
        "recon_rmsd_train": recon_train,
        "recon_rmsd_val": recon_val,
        "val_gap": recon_val / recon_train if recon_val is not None and recon_train > 0 else None,
    }


def _decoded_share(sums: _Sums) -> float:
    """The decoded training frames' spread about their own mean, as a share of the
    data's."""
    spread = float(np.sum(sums.train_std**2))
    decoded = float(np.sum(sums.decoded.result()[1] ** 2))
    return decoded / spread if spread > 0 else math.nan


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
    chosen = density_frames(len(xyz), key)
    recon = _reconstruct(model, xyz, train_index, val_index, moments, chosen, train_config.lag)
    fields = dict(recon.fields)
    if not recon.finite:
        return Quality(fields, failure="the trained model gives non-finite output")
    return_freed_memory()  # the chunks' copies, before the next steps' own
    density = fit_density(
        recon.density_mean, recon.density_std, train_config.density_components, key=key
    )
    fields["density_components"] = len(density["weights"])
    frames_used, draws = _density_sample(len(chosen))
    fields["density_points"] = frames_used * draws
    return_freed_memory()
    data_stats = None
    if data.representation.yields_structures:
        data_stats = compute_data_stats(
            xyz,
            data.topology,
            data.masses,
            index=train_index,
            held_out_index=val_index,
            tether_std=np.sqrt(recon.per_atom / xyz.shape[2]),
            latent=_Encoded(model, xyz),
        ).to_dict()
    notes = []
    gap = fields["val_gap"]
    if gap is not None and gap > _GAP_NOTE:
        notes.append(
            f"validation RMSD is {gap:.2f}x the training RMSD: the model fits its training "
            "frames better than new ones (more frames, a smaller --hidden or --weight-decay "
            "help)"
        )
    failure = judge(fields, train_config.min_explained, model.latent_dim, train_config.lag)
    return Quality(fields, notes, failure, density, data_stats)


def judge(
    fields: dict[str, Any], min_explained: float, latent_dim: int, lag: int = 0
) -> str | None:
    """Why the model does not work, or None: it explains less than `min_explained` of
    what PCA with as many components explains on the same frames (with a lag: of what
    the best linear prediction through as many dimensions explains of the frames `lag`
    later)."""
    pca, explained = fields["pca_explained_variance"], fields["explained_variance_train"]
    if min_explained == 0 or not (math.isfinite(pca) and pca > 0):
        return None
    share = fields.get("predictable_share")
    if lag and nearly_independent(fields):
        return (
            f"the model does not work: frames {lag} apart are nearly independent (the best "
            f"linear prediction through {latent_dim} dimensions explains {pca:.1%} of the later "
            f"frames' variance, {share:.0%} of what PCA explains of one frame; the model's "
            f"predictions {explained:.1%}), so the latent space carries next to nothing of "
            "what changes slowly"
        )
    if explained >= min_explained * pca:
        return None
    components = f"{latent_dim} component" + ("s" if latent_dim > 1 else "")
    ignored = fields["decoded_variance"] < 0.1 * pca
    if lag:
        what = f"predictions explain {explained:.1%} of the variance of the frames {lag} later"
        yardstick = f"a linear prediction through {latent_dim} dimension" + (
            "s" if latent_dim > 1 else ""
        )
    else:
        what = f"reconstructions explain {explained:.1%} of the training frames' variance"
        yardstick = f"PCA with {components}"
    return f"the model does not work: its {what}, {yardstick} {pca:.1%}" + (
        "; the decoder gives about the same structure whatever z is" if ignored else ""
    )


def nearly_independent(fields: dict[str, Any]) -> bool:
    """Frames a lag apart share next to nothing (`fields`: a lagged run's report
    fields): the best linear prediction of the later frame keeps under
    LITTLE_TO_PREDICT of what PCA explains of one frame (`predictable_share`), and the
    model's predictions do no better (PCA's share of one frame is the yardstick over
    the share). False without a share (no lag)."""
    share = fields.get("predictable_share")
    later, explained = fields["pca_explained_variance"], fields["explained_variance_train"]
    if share is None or not math.isfinite(share) or share >= LITTLE_TO_PREDICT:
        return False
    if share <= 0:  # the linear prediction explains nothing at all
        return explained <= 0
    return explained < LITTLE_TO_PREDICT * later / share


def _density_sample(frames: int) -> tuple[int, int]:
    """(frames drawn from, draws per frame) for the latent density's fit."""
    used = min(frames, _DENSITY_MAX_POINTS)
    return used, min(_DENSITY_DRAWS_PER_FRAME, max(1, _DENSITY_MAX_POINTS // used))


def density_frames(frames: int, key: jax.Array) -> np.ndarray:
    """The frames (sorted) whose posteriors the latent density is fitted to: all of
    them, or _DENSITY_MAX_POINTS drawn without replacement (from `key` folded with 2)."""
    if frames <= _DENSITY_MAX_POINTS:
        return np.arange(frames)
    pick = jax.random.fold_in(key, 2)
    return np.sort(
        np.asarray(jax.random.choice(pick, frames, (_DENSITY_MAX_POINTS,), replace=False))
    )


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
    chosen = density_frames(len(mean), key)
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
