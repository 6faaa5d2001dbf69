"""`evaluate`: how good is a model on a trajectory? Reconstruction, likelihood bounds,
latent usage, and how samples compare with the data.

Likelihoods are in nats per frame for the aligned coordinates in the data's units (the
normalization's Jacobian is included). Sample fidelity is the 1-Wasserstein distance
between data and samples, per pairwise distance (then averaged) and for R_g. Prior holes
are the share of N(0, I) draws where the aggregate posterior (the mixture of the
encoded frames' posteriors) is thinner than at 99% of its own draws.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj.configs import EvaluateConfig
from vaetraj.errors import BadInputError, NumericalError, UsageError
from vaetraj.io.bias import read_weights
from vaetraj.io.trajectory import ReadOptions
from vaetraj.metrics import all_pairs, compute_wasserstein_1d
from vaetraj.model import (
    ModelConfig,
    compute_active_units,
    compute_aggregate_log_density,
    compute_elbo_terms,
    compute_importance_weighted_bound,
    compute_kl_diagonal,
    normalize,
)
from vaetraj.pipeline.generate import generate
from vaetraj.pipeline.model import Model, load_model
from vaetraj.pipeline.model_input import frame_aligner, iter_model_chunks, open_for_model
from vaetraj.pipeline.structure import (
    check_structures,
    compute_frame_rg,
    pair_distances,
    rg_weights,
)
from vaetraj.training import lagged_pairs

DEFAULT_MODEL = "model.h5"
_BATCH = 1024
_HOLE_POINTS = 4096
_REFINED_SAMPLES = 2_000  # refinement costs ~0.1 s per 200-atom structure on a CPU
_MAX_PAIRS = 4096


@dataclass
class EvaluateReport:
    frames: int
    atoms: int
    latent_dim: int
    units: str
    recon_rmsd: float
    recon_rmsd_per_atom: list[float]
    elbo: float
    reconstruction_log_likelihood: float
    kl: float
    iwae_log_likelihood: float
    iwae_samples: int
    kl_per_dim: list[float]
    active_units: int
    samples: int
    prior: str
    w1_pairwise_mean: float
    w1_pairwise_max: float
    w1_rg: float | None  # None for a model of features (W1 then over each feature)
    sample_mean_bond: float | None
    data_mean_bond: float | None
    sample_plausible_fraction: float | None
    raw_sample_plausible_fraction: float | None  # before refinement
    data_plausible_fraction: float | None
    prior_hole_fraction: float
    wall_time_s: float
    lag: int = 0  # a time-lagged model's: the likelihood figures score frame t + lag
    # "aligned" frames, or "featurized": errors and W1 are then over its features
    representation: str = "aligned"
    model: str | None = None
    data: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """The summary as (label, text) rows: what the command prints."""
        from vaetraj.pipeline.summaries import evaluate_rows

        return evaluate_rows(self)


@functools.lru_cache(maxsize=8)
def _likelihood_kernel(config: ModelConfig):
    def one(params, mean, std, xyz, target, noise):
        seen = normalize(xyz.reshape(-1), mean, std)
        x = normalize(target.reshape(-1), mean, std)
        iwae = compute_importance_weighted_bound(params, x, noise, config, seen=seen)
        log_likelihood, kl = compute_elbo_terms(params, x, noise, config, seen=seen)
        return iwae, log_likelihood, kl

    return jax.jit(jax.vmap(one, in_axes=(None, None, None, 0, 0, 0)))


@jax.jit
def _aggregate_log_density(means, stds, z):
    return jax.vmap(compute_aggregate_log_density, in_axes=(None, None, 0))(means, stds, z)


@jax.jit
def _wasserstein_columns(a, b):
    return jax.vmap(compute_wasserstein_1d, in_axes=(1, 1))(a, b)


def _likelihoods(
    model: Model, xyz: np.ndarray, targets: np.ndarray, k: int, key
) -> tuple[np.ndarray, ...]:
    """IWAE bound, expected log-likelihood and KL of each target frame, the encoder
    given the frame of xyz beside it (the same frame, but for a time-lagged model)."""
    kernel = _likelihood_kernel(model.config)
    params = jax.tree.map(jnp.asarray, model.params)
    mean = jnp.asarray(model.record.normalization_mean)
    std = jnp.asarray(model.record.normalization_std)
    parts = []
    for number, start in enumerate(range(0, len(xyz), _BATCH)):
        batch = jnp.asarray(xyz[start : start + _BATCH])
        target = jnp.asarray(targets[start : start + _BATCH])
        noise = jax.random.normal(
            jax.random.fold_in(key, number), (len(batch), k, model.latent_dim)
        )
        parts.append([np.asarray(a) for a in kernel(params, mean, std, batch, target, noise)])
    return tuple(np.concatenate(column) for column in zip(*parts, strict=True))


def _frames_to_evaluate(
    model: Model, data: np.ndarray | Sequence[str | os.PathLike], read_options: ReadOptions
) -> tuple[np.ndarray, list[str], list[int]]:
    """The frames, aligned as the training frames were, the reader's notes, and the
    frames of each trajectory (input file; an array is one)."""
    if isinstance(data, np.ndarray):
        if data.ndim != 3 or data.shape[1:] != (model.atoms, model.dims):
            raise BadInputError(
                f"frames of shape {data.shape[1:]} do not match the model's "
                f"({model.atoms} atoms, {model.dims}D)"
            )
        return frame_aligner(model)(data), [], [len(data)]
    trajectory, notes = open_for_model(model, list(data), read_options)
    chunks = list(iter_model_chunks(model, trajectory))
    if not chunks:
        raise BadInputError("no frames to evaluate", path=str(data[0]))
    lengths = np.bincount([number for _, number in chunks],
                          weights=[len(xyz) for xyz, _ in chunks])  # fmt: skip
    xyz = np.concatenate([xyz for xyz, _ in chunks])
    return xyz, notes + trajectory.notes, [int(n) for n in lengths if n > 0]


def _scored_pairs(model: Model, lengths: list[int], notes: list[str], where: str | None):
    """(inputs, targets): every frame with itself, or for a time-lagged model every pair
    (t, t + lag) within one trajectory, as it was trained to predict."""
    frames = np.arange(sum(lengths))
    if not model.lag:
        return frames, frames
    inputs, targets = lagged_pairs(lengths, frames, model.lag)
    if len(inputs) == 0:
        raise BadInputError(
            f"the model is time-lagged (lag {model.lag}) and no trajectory here has two "
            f"frames {model.lag} apart (the longest has {max(lengths)})",
            path=where,
        )
    notes.append(
        f"time-lagged model (lag {model.lag}): reconstruction and likelihoods score frame "
        f"t + {model.lag} from frame t, over {len(inputs)} pairs within trajectories"
    )
    return inputs, targets


def _likelihood_fields(
    model: Model,
    xyz: np.ndarray,
    posterior: tuple[np.ndarray, np.ndarray],
    config: EvaluateConfig,
    key: jax.Array,
    pairs: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:
    """Reconstruction, latent usage and likelihoods, in the data's units (the
    normalization divides by std: its log-Jacobian is taken off), of each pair's
    target frame from its input frame (the same frame but for a time-lagged model)."""
    inputs, targets = pairs
    mean, std = posterior[0][inputs], posterior[1][inputs]
    squared = (model.decode(mean) - xyz[targets]) ** 2
    # per atom (summed over its coordinates), or per feature for rows of features
    displacement = np.sum(squared, axis=-1) if squared.ndim == 3 else squared
    kl_per_dim = np.asarray(jnp.mean(compute_kl_diagonal(jnp.asarray(mean), jnp.asarray(std)), 0))
    iwae, log_likelihood, kl = _likelihoods(
        model, xyz[inputs], xyz[targets], config.iwae_samples, key
    )
    jacobian = float(np.sum(np.log(model.record.normalization_std)))
    return {
        "recon_rmsd": float(np.sqrt(displacement.mean(axis=1)).mean()),
        "recon_rmsd_per_atom": np.sqrt(displacement.mean(axis=0)).tolist(),
        "elbo": float(np.mean(log_likelihood - kl)) - jacobian,
        "reconstruction_log_likelihood": float(np.mean(log_likelihood)) - jacobian,
        "kl": float(np.mean(kl)),
        "iwae_log_likelihood": float(np.mean(iwae)) - jacobian,
        "iwae_samples": config.iwae_samples,
        "kl_per_dim": kl_per_dim.tolist(),
        "active_units": int(compute_active_units(posterior[0])),
        "lag": model.lag,
    }


def _sample_fields(
    model: Model, xyz: np.ndarray, config: EvaluateConfig, key: jax.Array, notes: list[str]
) -> dict[str, Any]:
    """How the model's samples compare with the frames: W1 distances over atom pairs and
    R_g, and the energy check's pass rates beside the data's (for rows of features: W1
    over each feature)."""
    n = config.samples or min(len(xyz), _REFINED_SAMPLES if config.refine else 10_000)
    if not model.representation.yields_structures:
        return _feature_sample_fields(model, xyz, n, config, key)
    made = generate(
        model, model.sample_latent(n, key=key, prior=config.prior), refine=config.refine
    )
    samples = made.xyz
    notes += made.notes
    if not np.isfinite(samples).all():
        raise NumericalError("the decoder gives non-finite coordinates for sampled points")
    pairs = all_pairs(model.atoms)
    if len(pairs) > _MAX_PAIRS:
        chosen = np.random.default_rng(config.seed).choice(len(pairs), _MAX_PAIRS, replace=False)
        pairs = pairs[np.sort(chosen)]
        notes.append(
            f"sample fidelity over {_MAX_PAIRS} random atom pairs of {model.atoms * (model.atoms - 1) // 2}"
        )
    w1 = np.asarray(
        _wasserstein_columns(
            jnp.asarray(pair_distances(xyz, pairs)), jnp.asarray(pair_distances(samples, pairs))
        )
    )
    weights, _ = rg_weights(model.masses, model.atoms)
    w1_rg = compute_wasserstein_1d(
        jnp.asarray(compute_frame_rg(xyz, weights)), jnp.asarray(compute_frame_rg(samples, weights))
    )
    stats = model.data_stats
    sample_check, raw_passed = made.check, made.raw_passed
    data_check = check_structures(xyz, stats, model.masses) if stats is not None else None
    return {
        "samples": n,
        "prior": config.prior,
        "w1_pairwise_mean": float(w1.mean()),
        "w1_pairwise_max": float(w1.max()),
        "w1_rg": float(w1_rg),
        "sample_mean_bond": float(sample_check.mean_bond.mean()) if sample_check else None,
        "data_mean_bond": float(data_check.mean_bond.mean()) if data_check else None,
        "sample_plausible_fraction": float(sample_check.plausible.mean()) if sample_check else None,
        "raw_sample_plausible_fraction": (
            float(raw_passed.mean()) if raw_passed is not None else None
        ),
        "data_plausible_fraction": float(data_check.plausible.mean()) if data_check else None,
    }


def _feature_sample_fields(
    model: Model, rows: np.ndarray, n: int, config: EvaluateConfig, key: jax.Array
) -> dict[str, Any]:
    """W1 between the data's and the samples' distribution of each feature."""
    samples = model.decode(model.sample_latent(n, key=key, prior=config.prior))
    if not np.isfinite(samples).all():
        raise NumericalError("the decoder gives non-finite features for sampled points")
    w1 = np.asarray(_wasserstein_columns(jnp.asarray(rows), jnp.asarray(samples)))
    empty = dict.fromkeys(("sample_mean_bond", "data_mean_bond", "sample_plausible_fraction"), None)
    return {
        "samples": n,
        "prior": config.prior,
        "w1_pairwise_mean": float(w1.mean()),
        "w1_pairwise_max": float(w1.max()),
        "w1_rg": None,
        **empty,
        "raw_sample_plausible_fraction": None,
        "data_plausible_fraction": None,
    }


def _prior_holes(
    posterior: tuple[np.ndarray, np.ndarray],
    seed: int,
    keys: tuple[jax.Array, jax.Array],
    notes: list[str],
) -> float:
    """The share of N(0, I) draws where the aggregate posterior is thinner than at 99%
    of the encoded frames' own draws."""
    hole_key, draw_key = keys
    mean, std = posterior
    subset = np.random.default_rng(seed).permutation(len(mean))[:_HOLE_POINTS]
    means, stds = jnp.asarray(mean[subset]), jnp.asarray(std[subset])
    own = means + stds * jax.random.normal(draw_key, means.shape)
    threshold = np.quantile(np.asarray(_aggregate_log_density(means, stds, own)), 0.01)
    prior_draws = jax.random.normal(hole_key, (_HOLE_POINTS, mean.shape[1]))
    holes = float(np.mean(np.asarray(_aggregate_log_density(means, stds, prior_draws)) < threshold))
    if holes > 0.5:
        notes.append(_holes_note(holes, mean, std))
    return holes


def _holes_note(holes: float, mean: np.ndarray, std: np.ndarray) -> str:
    """What the prior-holes figure measured, with the encoded cloud's own numbers: the
    spread of the means per dimension against N(0, I)'s 1, and how narrow each frame's
    posterior is."""
    spread = np.std(mean, axis=0)
    width = float(np.median(std))
    low, high = float(spread.min()), float(spread.max())
    scale = (
        "narrower than"
        if high < 0.8
        else "wider than"
        if low > 1.25
        else "about as wide as"
        if low > 0.8 and high < 1.25
        else "unlike"
    )
    return (
        f"{holes:.0%} of N(0, I) draws land where the encoded frames' aggregate posterior is "
        f"thinner than at 99% of their own draws: the encoded means spread {low:.2f} to "
        f"{high:.2f} per dimension ({scale} N(0, I)'s 1) and each frame's posterior is narrow "
        f"(median std {width:.2g}), so the frames fill only part of the prior. This is why "
        "sample and optimize draw from the latent density fitted to the encoded frames, not "
        "from N(0, I)"
    )


def _drawn_by_weights(model: Model, xyz: np.ndarray, weights: np.ndarray, seed: int,
                      notes: list[str], where: str | None) -> tuple[np.ndarray, list[int]]:  # fmt: skip
    """Biased frames drawn in proportion to their weights (one trajectory no more: a
    time-lagged model's pairs are of the biased dynamics, refused)."""
    if model.lag:
        raise UsageError("weights and a time-lagged model: its pairs would follow the biased "
                         "dynamics", fields=("weights",))  # fmt: skip
    weights = np.asarray(weights, np.float64)
    if len(weights) != len(xyz):
        raise BadInputError(f"{len(weights)} weights for {len(xyz)} frames", path=where)
    index = np.sort(
        np.random.default_rng(seed).choice(len(xyz), len(xyz), p=weights / weights.sum())
    )
    share = weights.sum() ** 2 / np.sum(weights**2) / len(weights)
    notes.append(
        f"frames drawn by their weights: effectively {share:.0%} of the {len(xyz):,} frames"
    )
    return xyz[index], [len(xyz)]


def evaluate(
    model: Model,
    data: np.ndarray | Sequence[str | os.PathLike],
    config: EvaluateConfig = EvaluateConfig(),
    read_options: ReadOptions = ReadOptions(),
    weights: np.ndarray | None = None,
) -> EvaluateReport:
    """Evaluate the model on frames.

    Args:
        model: a model of frames: aligned structures, or features it computes from
            them (scored on those features).
        data: frames (frames, atoms, dims) in the files' frame of reference, or
            trajectory paths; they are aligned as the training frames were.
        config: the samples, IWAE draws, prior and seed.
        read_options: how trajectory paths are read.
        weights: per-frame weights of biased frames: the frames are drawn (as many,
            with replacement, seeded) in proportion to them, so each score is an
            estimate over the unbiased ensemble.

    Returns:
        Reconstruction, likelihoods, sample fidelity, plausibility and prior holes.
    """
    started = time.perf_counter()
    representation = model.representation
    if not representation.takes_frames:
        raise UsageError(
            f"`evaluate` reads trajectories; this model is of {representation.describe()}: "
            "use encode --recon and the Python API for it"
        )
    xyz, notes, lengths = _frames_to_evaluate(model, data, read_options)
    where = None if isinstance(data, np.ndarray) else ", ".join(map(str, data))
    if weights is not None:
        xyz, lengths = _drawn_by_weights(model, xyz, weights, config.seed, notes, where)
    pairs = _scored_pairs(model, lengths, notes, where)
    key = jax.random.key(config.seed)
    likelihood_key, sample_key, hole_key, draw_key = jax.random.split(key, 4)
    posterior = model.encode(xyz)
    if not representation.yields_structures:  # scored on its features from here on
        xyz = representation.inputs(xyz, model.atoms, model.dims)
    likelihood = _likelihood_fields(model, xyz, posterior, config, likelihood_key, pairs)
    samples = _sample_fields(model, xyz, config, sample_key, notes)
    holes = _prior_holes(posterior, config.seed, (hole_key, draw_key), notes)
    return EvaluateReport(
        frames=len(xyz),
        atoms=model.atoms,
        latent_dim=model.latent_dim,
        units=model.units,
        **likelihood,
        **samples,
        prior_hole_fraction=holes,
        representation=representation.kind,
        wall_time_s=time.perf_counter() - started,
        notes=notes,
    )


def evaluate_file(
    inputs: Sequence[str | os.PathLike],
    model: str | os.PathLike = DEFAULT_MODEL,
    config: EvaluateConfig = EvaluateConfig(),
    read_options: ReadOptions = ReadOptions(),
    *,
    weights: str | os.PathLike | None = None,
) -> EvaluateReport:
    """Evaluate a model file on trajectory files.

    Args:
        inputs: trajectory files.
        model: the model file.
        config: samples, IWAE draws, prior and seed.
        read_options: how the inputs are read.
        weights: a file of per-frame weights of biased frames (`read_weights`).

    Returns:
        The report.
    """
    if not inputs:
        raise UsageError("no data given: vaetraj evaluate DATA... [--model model.h5]")
    frame_weights = None if weights is None else read_weights(weights)
    report = evaluate(load_model(Path(model)), list(inputs), config, read_options, frame_weights)
    report.model = str(model)
    report.data = ", ".join(str(p) for p in inputs)
    return report
