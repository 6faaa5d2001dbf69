"""`optimize`: structures that minimize (or maximize, or reach) an objective, found by
gradient descent in latent space through the decoder, every restart at once.

The textbook's plain descent runs to the centre of latent space, where the decoder
returns an averaged blob with overlapping beads. Here the model's latent density is a
trust region: a penalty on log p(z) below its `trust_quantile` (by default the 1st
percentile of log p over the density's own draws) keeps z where training frames were
encoded. Half the restarts start from density draws, half from the training frames
that score best on the objective (the model keeps the latent points of frames spread
over the data's R_g range). Every `record_every` steps of every restart is recorded, and
REFINED_RECORDS of those records spread along each restart's path (the last included)
are candidates; each candidate is made a thermal conformation near itself on the
training frames' statistical potential (`vaetraj.refine`). That is one thermal draw,
so the REDRAW_POINTS best latent points are drawn REDRAWS more times, with fresh noise.
The answer is the best refined candidate that passes `_optimize_verdicts`: its
energies inside the held-out MD frames' ranges (`vaetraj.pipeline.potential`; contacts
only on their hot side, since a structure more compact than every frame has more
contacts than every frame), its total at most their 95th percentile, and no contact
pair closer than the training frames' closest of its class: no folded angle, no
overlapping pair, no strain MD does not show.
(The search picks the most extreme of hundreds of candidates, so it would otherwise
pick the one at the edge of every range at once: on all-atom alanine dipeptide, 6.6
kJ/mol above MD's 99th percentile of the AMBER energy; with the cap, inside it.)
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from vaetraj._memory import FLOAT, require_memory
from vaetraj.configs import OptimizeConfig
from vaetraj.errors import BadInputError, NumericalError, UsageError
from vaetraj.geometry import make_kabsch_target, superpose_frame
from vaetraj.io._hash import compute_sha256
from vaetraj.io.structures import check_structure_output, write_structures
from vaetraj.io.topology import placeholder_topology
from vaetraj.io.trajectory import ReadOptions
from vaetraj.metrics import compute_rg
from vaetraj.model import compute_mixture_log_density, decode_data
from vaetraj.optim import (
    LatentGoal,
    LatentRun,
    Objective,
    make_latent_optimizer,
    make_objective,
)
from vaetraj.pipeline.model import Model, load_model, require_structure_model
from vaetraj.pipeline.potential import JUDGED, RELAX_STEPS, closest_approach, thermal_settings
from vaetraj.pipeline.structure import (
    DataStats,
    RefinedStructures,
    StructureCheck,
    check_structures,
    refine_structures,
    rg_weights,
)

DEFAULT_MODEL = "model.h5"
_REFERENCE_DRAWS = 4096
_LOG_2PI = math.log(2 * math.pi)

Progress = Callable[..., None]


@dataclass
class OptimizeResult:
    """The best structure, where it came from, and every restart's outcome."""

    xyz: np.ndarray  # (atoms, dims)
    z: np.ndarray  # (latent,)
    report: OptimizeReport
    values: np.ndarray  # (steps, restarts) objective along each restart


@dataclass
class OptimizeReport:
    objective: str
    direction: str
    target: float | None
    restarts: int
    steps: int
    trust_weight: float
    trust_threshold: float | None
    best_value: float
    best_restart: int
    best_step: int
    best_log_density: float
    inside_trust_region: bool
    plausible: bool | None
    plausible_candidates: int | None
    candidates: int  # refined and judged: the search's records, then the redraws
    redrawn: int  # of them, redraws of the best latent points (REDRAWS each)
    refined: bool
    moved: float | None  # RMSD the best structure moved in refinement
    tether_width: float | None  # the refinement's tether, x the decoder's per-atom error
    failures: dict[str, bool] | None  # which of VERDICTS the best structure fails
    contacts_colder_than_md: bool | None  # contacts below the frames' p1: allowed
    energy: float | None  # the statistical energy, kT
    train_energy_range: list[float] | None  # held-out MD frames' [p1, p99] of it
    data_starts: int  # restarts that began at training frames' latent points
    nearest_frame_rmsd: float | None  # to the nearest training frame after superposition
    rg: float
    train_rg_min: float | None
    train_rg_max: float | None
    beyond_training: bool | None
    min_bond: float
    max_bond: float
    mean_bond: float
    train_mean_bond: float | None
    closest_nonbonded: float
    limits: dict[str, float] | None
    sample_value_range: list[float]
    units: str
    optimize_time_s: float
    wall_time_s: float
    per_restart: list[dict[str, Any]]
    model: str | None = None
    output: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        """The summary as (label, text) rows: what the command prints."""
        from vaetraj.pipeline.summaries import optimize_rows

        return optimize_rows(self)


REFINED_RECORDS = 8  # per restart: 64 restarts give 512 refined candidates
# Each refined candidate is one thermal draw near its latent point, and at the edge of
# the data a draw's luck decides whether it passes: the REDRAW_POINTS best latent
# points (by the objective, whatever their verdicts) are refined REDRAWS more times
# with fresh noise. On the demo's polymer, seeds 0-11, answers more compact than every
# training frame at MD's energy: 10 of 12 with one draw each, 12 of 12 with the redraws
# (`tests/benchmarks/quality_physics.py DIR --optimize-seeds 12`).
REDRAW_POINTS = 32
REDRAWS = 4
# candidates come from the edge of the latent density, further from any frame than
# samples: relaxed twice as long as `sample` relaxes (a few hundred structures, cheap)
OPTIMIZE_RELAX_STEPS = 2 * RELAX_STEPS


def _refined(structures: np.ndarray, stats: DataStats, config, seed: int) -> RefinedStructures:
    settings = thermal_settings(stats.potential)._replace(relax_steps=OPTIMIZE_RELAX_STEPS)
    return refine_structures(structures, stats, config.tether_width, seed=seed, settings=settings)


def _badness(values: np.ndarray, config: OptimizeConfig) -> np.ndarray:
    """Lower is better: the distance to --target, or the objective signed by direction."""
    if config.target is not None:
        return np.abs(values - config.target)
    return values if config.direction == "min" else -values


def _starts(model: Model, config: OptimizeConfig, land: _Landscape, key, prior):
    """Restart points (restarts, latent): a share from the training frames' latent points
    that score best on the objective (their decoded, refined structures), the rest drawn
    from the density; and how many came from the data."""
    stats = model.data_stats
    anchors = np.asarray(stats.anchor_z if stats is not None else [], np.float32)
    from_data = min(len(anchors), round(config.restarts * config.data_starts))
    drawn = (
        model.sample_latent(config.restarts - from_data, key=key, prior=prior)
        if from_data < config.restarts
        else np.zeros((0, model.latent_dim), np.float32)
    )
    if from_data == 0:
        return np.asarray(drawn), 0
    _, _, values = _made(model, land, config, anchors, config.seed)
    badness = _badness(values, config)
    best = np.argsort(np.where(np.isfinite(badness), badness, np.inf), kind="stable")[:from_data]
    return np.concatenate([anchors[best], np.asarray(drawn)]), from_data


def nearest_frame_rmsd(xyz: np.ndarray, frames: np.ndarray, weights: np.ndarray) -> float:
    """RMSD of one structure (atoms, dims) to the nearest of `frames` (n, atoms, dims),
    each superposed onto it (Kabsch)."""
    target = make_kabsch_target(xyz, weights)
    kernel = jax.jit(jax.vmap(lambda frame: superpose_frame(frame, target).rmsd))
    return min(
        float(np.min(kernel(jnp.asarray(frames[i : i + 8192], jnp.float32))))
        for i in range(0, len(frames), 8192)
    )


def _training_frames(model: Model, data) -> tuple[np.ndarray | None, str]:
    """The aligned training frames (or None) and where they came from (or why not)."""
    from vaetraj.io.aligned import read_aligned

    path = Path(data) if data is not None else Path(str(model.record.provenance.get("origin")))
    if data is None and not (path.suffix in (".h5", ".hdf5") and path.is_file()):
        return None, "the model's training file is not at hand (give it with --data)"
    xyz = read_aligned(path).xyz
    if xyz.shape[1:] != (model.atoms, model.dims):
        raise BadInputError(
            f"frames of {xyz.shape[1]} atoms in {xyz.shape[2]}D do not match the model",
            path=path,
        )
    return xyz, str(path)


def _standard_log_density(z):
    return -0.5 * jnp.sum(z**2) - 0.5 * z.shape[-1] * _LOG_2PI


def _select(model: Model, selection: str, option: str) -> np.ndarray:
    topology = model.topology or placeholder_topology(model.atoms)
    try:
        indices = topology.select(selection)
    except Exception as error:
        raise UsageError(f"cannot parse {option} '{selection}': {error}") from None
    if indices.size == 0:
        raise BadInputError(f"{option} '{selection}' matches no atom of the model")
    return np.asarray(indices)


def _target_structure(model: Model, path, top) -> np.ndarray:
    from vaetraj.pipeline.model_input import iter_model_frames, open_for_model

    trajectory, _ = open_for_model(model, [path], ReadOptions(top=top))
    first = next(iter_model_frames(model, trajectory, 1), None)
    if first is None:
        raise BadInputError("target structure file has no frames", path=path)
    return first[0]


def _make_objective(
    model: Model,
    config: OptimizeConfig,
    weights: np.ndarray,
    groups: tuple[str, str] | None,
    target_structure: str | os.PathLike | None,
    top: str | os.PathLike | None,
) -> Objective:
    """The objective of one structure, with the selections or target it needs."""
    objective_groups = None
    target_xyz = None
    if config.objective == "distance":
        if groups is None:
            raise UsageError("--objective distance needs --group-a and --group-b selections")
        objective_groups = (
            _select(model, groups[0], "--group-a"),
            _select(model, groups[1], "--group-b"),
        )
    if config.objective == "rmsd":
        if target_structure is None:
            raise UsageError("--objective rmsd needs --target-structure FILE")
        target_xyz = _target_structure(model, target_structure, top)
    return make_objective(
        config.objective, weights=weights, groups=objective_groups, target=target_xyz
    )


@dataclass(frozen=True)
class _Landscape:
    """The functions the search runs on, one structure or latent point at a time, and
    their batched, compiled forms."""

    decode: Callable[[jax.Array], jax.Array]  # z -> (atoms, dims)
    objective: Objective
    log_density: Callable[[jax.Array], jax.Array]
    decode_all: Callable[[jax.Array], jax.Array]
    score_all: Callable[[jax.Array], jax.Array]
    log_density_all: Callable[[jax.Array], jax.Array]


def _landscape(model: Model, objective: Objective, notes: list[str]) -> _Landscape:
    params = jax.tree.map(jnp.asarray, model.params)
    norm_mean = jnp.asarray(model.record.normalization_mean)
    norm_std = jnp.asarray(model.record.normalization_std)
    shape = (model.atoms, model.dims)

    def decode(z):
        return decode_data(params, z, model.config, norm_mean, norm_std).reshape(shape)

    density = model.density
    if density is None:
        notes.append("the model has no latent density; the trust region is N(0, I)")
        log_density = _standard_log_density
    else:

        def log_density(z):
            return compute_mixture_log_density(density, z)

    return _Landscape(
        decode, objective, log_density,
        jax.jit(jax.vmap(decode)), jax.jit(jax.vmap(objective)), jax.jit(jax.vmap(log_density)),
    )  # fmt: skip


def _goal(
    model: Model, config: OptimizeConfig, land: _Landscape, key: jax.Array, prior: str
) -> tuple[LatentGoal, np.ndarray]:
    """The search's goal: the objective's scale and the trust region's threshold, both
    read from draws of the prior; and the objective's values at those draws."""
    reference_z = jnp.asarray(model.sample_latent(_REFERENCE_DRAWS, key=key, prior=prior))
    reference_values = np.asarray(land.score_all(land.decode_all(reference_z)))
    reference_log_density = np.asarray(land.log_density_all(reference_z))
    threshold = float(np.quantile(reference_log_density, config.trust_quantile))
    goal = LatentGoal(
        sign=jnp.float32(1.0 if config.direction == "min" else -1.0),
        target=jnp.float32(config.target if config.target is not None else 0.0),
        has_target=jnp.bool_(config.target is not None),
        scale=jnp.float32(float(np.std(reference_values)) or 1.0),
        trust_weight=jnp.float32(config.trust_weight),
        threshold=jnp.float32(threshold),
    )
    return goal, reference_values


def _search(
    land: _Landscape, config: OptimizeConfig, start: np.ndarray, goal: LatentGoal
) -> tuple[LatentRun, float]:
    """Run every restart; returns the run and its time (compiled apart, so the run is
    timed alone)."""
    run = make_latent_optimizer(
        land.decode,
        land.objective,
        land.log_density,
        steps=config.steps,
        learning_rate=config.learning_rate,
        record_every=config.record_every,
    )
    start_z = jnp.asarray(start)
    compiled = jax.jit(run).lower(start_z, goal).compile()
    timed = time.perf_counter()
    result = compiled(start_z, goal)
    result.z.block_until_ready()
    return result, time.perf_counter() - timed


@dataclass(frozen=True)
class _Candidates:
    """Every recorded latent point of every restart (records x restarts, row-major),
    decoded, refined, scored and checked."""

    z: np.ndarray  # (candidates, latent)
    steps: np.ndarray  # (candidates,) the step of the search each was recorded at
    restart: np.ndarray  # (candidates,) the restart each came from
    recorded: int  # the first `recorded` rows are the search's records; then redraws
    xyz: np.ndarray  # (candidates, atoms, dims)
    values: np.ndarray
    log_p: np.ndarray
    badness: np.ndarray  # inf where non-finite
    plausible: np.ndarray  # bool; finite only, without data statistics
    check: StructureCheck | None
    verdicts: np.ndarray | None  # (candidates, len(VERDICTS)) bool, `_optimize_verdicts`
    moved: np.ndarray | None
    best: int


def _kept_records(records: int) -> np.ndarray:
    """The records of every restart whose structures are refined and judged: at most
    REFINED_RECORDS spread evenly along the search, the last one always. Neighbouring
    records differ little, and each refined structure costs a short simulation."""
    return np.unique(np.linspace(0, records - 1, min(records, REFINED_RECORDS)).round()).astype(int)


# what `optimize` asks of its answer: each kind of energy and the total inside the
# held-out frames' range (contacts one-sided), the total at most their 95th percentile,
# no contact pair closer than the training frames' closest of its class
VERDICTS = (*JUDGED, "total above p95", "closer than any frame")


def _optimize_verdicts(structures: np.ndarray, check: StructureCheck, stats: DataStats):
    """(candidates, len(VERDICTS)) bool, True where a candidate passes: the energy
    check's verdicts as `optimize` reads them, then whether the total is at most the
    held-out frames' 95th percentile and whether every contact pair lies at or past its
    class's closest approach in the training frames (`closest_approach`).

    One verdict is read one-sided: contacts colder than MD. A structure more compact
    than every frame has more contacts than every frame, so that tail is where
    `--objective rg` is asked to go; the total keeps both tails, and the closest-approach
    rule keeps the contacts it made off every pair's wall. The cap at p95 and the
    closest approach matter because the search picks the most extreme of hundreds of
    candidates, the one at the edge of every range at once."""
    inside = check.inside.copy()
    contacts = JUDGED.index("contacts")
    inside[:, contacts] |= check.energies[:, contacts] < stats.energy_low[contacts]
    potential = stats.statistical_potential(structures.shape[1])
    capped = check.energy <= stats.energy_quantile(0.95)
    apart = closest_approach(structures, potential) >= 1.0
    return np.concatenate([inside, capped[:, None], apart[:, None]], axis=1)


def _made(
    model: Model, land: _Landscape, config: OptimizeConfig, z: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The structures of latent points z (n, latent): decoded, refined with the
    sampler's noise from `seed` when the model has the data's potential (and how far
    each moved), and their objective values."""
    structures, moved = np.asarray(land.decode_all(jnp.asarray(z))), None
    stats = model.data_stats
    if stats is not None and config.refine:
        refined = _refined(structures, stats, config, seed)
        structures, moved = np.asarray(refined.xyz), np.asarray(refined.moved)
    return structures, moved, np.asarray(land.score_all(jnp.asarray(structures)))


def _redraw_rows(badness: np.ndarray) -> np.ndarray:
    """The rows drawn again: the REDRAW_POINTS best finite candidates, each REDRAWS
    times."""
    finite = np.flatnonzero(np.isfinite(badness))
    best = finite[np.argsort(badness[finite], kind="stable")[:REDRAW_POINTS]]
    return np.repeat(best, REDRAWS)


def _candidates(
    model: Model, land: _Landscape, config: OptimizeConfig, path: np.ndarray, notes: list[str]
) -> _Candidates:
    kept = _kept_records(len(path))
    path = path[kept]
    steps = np.repeat(kept * config.record_every, path.shape[1])
    restart = np.tile(np.arange(path.shape[1]), len(kept))
    flat = path.reshape(-1, path.shape[-1])
    finite = np.isfinite(flat).all(axis=1)
    if not finite.any():
        raise NumericalError("every restart diverged to non-finite latent points; lower --lr")
    flat = np.where(finite[:, None], flat, 0.0).astype(np.float32)
    structures, moved, values = _made(model, land, config, flat, config.seed)
    finite &= np.isfinite(values) & np.isfinite(structures).all(axis=(1, 2))
    recorded = len(flat)
    if moved is not None and finite.any():  # thermal draws: the best points drawn again
        rows = _redraw_rows(np.where(finite, _badness(values, config), np.inf))
        again, moved_again, values_again = _made(model, land, config, flat[rows], config.seed + 1)
        finite_again = np.isfinite(values_again) & np.isfinite(again).all(axis=(1, 2))
        flat, steps, restart = (np.concatenate([v, v[rows]]) for v in (flat, steps, restart))
        structures = np.concatenate([structures, again])
        moved = np.concatenate([moved, np.asarray(moved_again)])
        values = np.concatenate([values, values_again])
        finite = np.concatenate([finite, finite_again])
    if not finite.all():
        notes.append(f"{int((~finite).sum())} candidate point(s) were non-finite and dropped")
    if not finite.any():
        raise NumericalError("every candidate structure was non-finite; lower --lr")
    log_p = np.asarray(land.log_density_all(jnp.asarray(flat)))
    badness = np.where(finite, _badness(values, config), np.inf)
    stats = model.data_stats
    check, verdicts, plausible = None, None, finite
    if stats is not None:
        check = check_structures(structures, stats, model.masses)
        verdicts = _optimize_verdicts(structures, check, stats)
        plausible = verdicts.all(axis=1) & finite
    else:
        notes.append(
            "the model has no statistical potential of its training frames (written by an "
            "older vaetraj: retrain it); not refined or judged"
        )
    if plausible.any():
        best = int(np.argmin(np.where(plausible, badness, np.inf)))
    else:
        best = int(np.argmin(badness))
        notes.append(
            "no candidate lies inside the held-out MD frames' energy ranges; returning the "
            "best one anyway"
        )
    return _Candidates(
        flat, steps, restart, recorded, structures, values, log_p, badness, plausible,
        check, verdicts, moved, best,
    )  # fmt: skip


def _per_restart(found: _Candidates, restarts: int) -> list[dict[str, Any]]:
    """How each restart went: its first and last values and its best plausible one
    (its redraws included)."""
    out = []
    for restart in range(restarts):
        mine = np.flatnonzero(found.restart == restart)
        path = mine[mine < found.recorded]  # the search's records, in step order
        final = path[-1]
        good = mine[found.plausible[mine]]
        chosen = good[np.argmin(found.badness[good])] if good.size else None
        out.append(
            {
                "restart": restart,
                "start_value": float(found.values[path[0]]),
                "final_value": float(found.values[final]),
                "final_log_density": float(found.log_p[final]),
                "final_plausible": bool(found.plausible[final]),
                "best_plausible_value": None if chosen is None else float(found.values[chosen]),
                "best_plausible_step": None if chosen is None else int(found.steps[chosen]),
            }
        )
    return out


def _beyond_training(
    stats: DataStats | None, config: OptimizeConfig, rg: float, notes: list[str]
) -> bool | None:
    """For an R_g search without a target: whether the answer is beyond every training
    frame (with a note when it is not)."""
    if stats is None or config.objective != "rg" or config.target is not None:
        return None
    beyond = rg < stats.rg_min if config.direction == "min" else rg > stats.rg_max
    if not beyond:
        extreme = "more compact" if config.direction == "min" else "more extended"
        notes.append(
            f"no plausible structure {extreme} than every training frame was found; "
            f"this is the {'most compact' if config.direction == 'min' else 'most extended'} "
            "plausible one"
        )
    return bool(beyond)


def _novelty_fields(
    xyz: np.ndarray,
    weights: np.ndarray,
    training_frames: np.ndarray | None,
    stats: DataStats | None,
    config: OptimizeConfig,
    notes: list[str],
) -> dict[str, Any]:
    """How new the answer is: its R_g, whether beyond the training frames', and the
    RMSD to the nearest training frame (when they are given)."""
    novelty = None
    if training_frames is not None and len(training_frames):
        novelty = nearest_frame_rmsd(xyz, training_frames, weights)
    rg = float(compute_rg(jnp.asarray(xyz), jnp.asarray(weights, jnp.float32)))
    return {
        "nearest_frame_rmsd": novelty,
        "rg": rg,
        "beyond_training": _beyond_training(stats, config, rg, notes),
    }


def _search_fields(found: _Candidates, config: OptimizeConfig, threshold: float) -> dict[str, Any]:
    """Where the best candidate was found, its trust-region standing and refinement."""
    best, moved = found.best, found.moved
    return {
        "trust_threshold": threshold if config.trust_weight > 0 else None,
        "best_value": float(found.values[best]),
        "best_restart": int(found.restart[best]),
        "best_step": int(found.steps[best]),
        "best_log_density": float(found.log_p[best]),
        "inside_trust_region": bool(found.log_p[best] >= threshold),
        "candidates": len(found.z),
        "redrawn": len(found.z) - found.recorded,
        "refined": moved is not None,
        "moved": float(moved[best]) if moved is not None else None,
        "tether_width": config.tether_width if moved is not None else None,
    }


def _contacts_colder(check: StructureCheck | None, stats: DataStats | None, best: int):
    """Whether the best structure's contact energy is below the held-out frames' 1st
    percentile (None without a check)."""
    if check is None or stats is None:
        return None
    contacts = JUDGED.index("contacts")
    return bool(check.energies[best, contacts] < stats.energy_low[contacts])


def _geometry_fields(found: _Candidates, stats: DataStats | None) -> dict[str, Any]:
    """The best candidate's bonds and contacts, and the training limits they meet."""
    best, check = found.best, found.check
    geometry = check.frame if check is not None else None

    def at_best(values: ArrayLike | None) -> float:
        return float(np.asarray(values)[best]) if values is not None else math.nan

    return {
        "plausible": bool(found.plausible[best]) if stats is not None else None,
        "plausible_candidates": int(found.plausible.sum()) if stats is not None else None,
        "failures": (
            dict(zip(VERDICTS, (~found.verdicts[best]).tolist(), strict=True))
            if found.verdicts is not None
            else None
        ),
        "contacts_colder_than_md": _contacts_colder(check, stats, best),
        "energy": float(check.energy[best]) if check is not None else None,
        "train_energy_range": [stats.energy_low[-1], stats.energy_high[-1]] if stats else None,
        "min_bond": at_best(geometry.min_bond if geometry else None),
        "max_bond": at_best(geometry.max_bond if geometry else None),
        "mean_bond": at_best(geometry.mean_bond if geometry else None),
        "closest_nonbonded": at_best(geometry.min_nonbonded if geometry else None),
        "train_mean_bond": stats.mean_bond if stats else None,
        "train_rg_min": stats.rg_min if stats else None,
        "train_rg_max": stats.rg_max if stats else None,
        "limits": {"bond_min": stats.bond_min, "bond_max": stats.bond_max,
                   "nonbonded_min": stats.contact_min} if stats is not None else None,
    }  # fmt: skip


def optimize(
    model: Model,
    config: OptimizeConfig = OptimizeConfig(),
    *,
    groups: tuple[str, str] | None = None,
    target_structure: str | os.PathLike | None = None,
    top: str | os.PathLike | None = None,
    training_frames: np.ndarray | None = None,
) -> OptimizeResult:
    """Optimize `config.objective` over the model's latent space (see the module doc).

    Args:
        model: a model of structures.
        config: the objective, its direction or target, and the search's settings.
        groups: two atom selections, for `objective="distance"`.
        target_structure: a structure file (and `top`, its topology) for "rmsd".
        training_frames: (n, atoms, dims) aligned frames; when given, the report says
            how far the answer is from the nearest of them.

    Returns:
        The best structure, its latent point, the report and every restart's values.
    """
    started = time.perf_counter()
    require_structure_model(model, "optimize")
    notes: list[str] = []
    weights, _ = rg_weights(model.masses, model.atoms)
    objective = _make_objective(model, config, weights, groups, target_structure, top)
    land = _landscape(model, objective, notes)
    reference_key, start_key = jax.random.split(jax.random.key(config.seed))
    prior = "density" if model.density is not None else "standard"
    goal, reference_values = _goal(model, config, land, reference_key, prior)
    stats = model.data_stats
    start, from_data = _starts(model, config, land, start_key, prior)
    result, optimize_time = _search(land, config, start, goal)
    found = _candidates(model, land, config, np.asarray(result.path), notes)
    best, restarts = found.best, config.restarts
    best_xyz = found.xyz[best]
    report = OptimizeReport(
        objective=config.objective,
        direction=config.direction,
        target=config.target,
        restarts=restarts,
        steps=config.steps,
        trust_weight=config.trust_weight,
        **_search_fields(found, config, float(goal.threshold)),
        data_starts=from_data,
        **_novelty_fields(best_xyz, weights, training_frames, stats, config, notes),
        **_geometry_fields(found, stats),
        sample_value_range=[float(reference_values.min()), float(reference_values.max())],
        units=model.units,
        optimize_time_s=optimize_time,
        wall_time_s=time.perf_counter() - started,
        per_restart=_per_restart(found, restarts),
        notes=notes,
    )
    return OptimizeResult(
        xyz=best_xyz, z=found.z[best], report=report, values=np.asarray(result.value)
    )


def _require_search_memory(model: Model, config: OptimizeConfig) -> None:
    """Refuse a search the machine cannot hold: every record_every-th step of every
    restart is a candidate structure, refined and checked; each step runs the decoder
    (and its gradient) on every restart."""
    candidates = config.restarts * (config.steps // config.record_every)
    per_step = config.restarts * model.config.hidden * model.config.layers * 2 * 3
    require_memory(
        FLOAT * (4 * candidates * model.features + per_step),
        f"--restarts {config.restarts:,} with --steps {config.steps}",
        "use fewer --restarts (or fewer --steps)",
    )


def _structure_attrs(config: OptimizeConfig, result: OptimizeResult, model: Path) -> dict:
    """What the written structure records of its search."""
    return {
        "command": "optimize",
        "objective": config.objective,
        "direction": config.direction,
        "target": config.target,
        "value": result.report.best_value,
        "z": result.z.tolist(),
        "model": str(model.resolve()),
        "model_sha256": compute_sha256(model),
    }


def optimize_file(
    model: str | os.PathLike = DEFAULT_MODEL,
    output: str | os.PathLike = "optimized.npz",
    config: OptimizeConfig = OptimizeConfig(),
    *,
    groups: tuple[str, str] | None = None,
    target_structure: str | os.PathLike | None = None,
    top: str | os.PathLike | None = None,
    data: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> OptimizeReport:
    """Optimize and write the best structure (one frame).

    Args:
        model: the model file.
        output: the structure file to write.
        config: the objective and the search.
        groups: two atom selections, for the distance objective.
        target_structure: a structure file, for the RMSD objective.
        top: its topology, if it needs one.
        data: the aligned training file, to say how far the answer is from its nearest
            frame (default: the file the model was trained from, when it is there).
        overwrite: replace an existing output.

    Returns:
        The report.
    """
    started = time.perf_counter()
    check_structure_output(output, overwrite=overwrite, inputs=[model, target_structure, top, data])
    model_path = Path(model)
    loaded = load_model(model_path)
    _require_search_memory(loaded, config)
    frames, where = _training_frames(loaded, data)
    result = optimize(
        loaded,
        config,
        groups=groups,
        target_structure=target_structure,
        top=top,
        training_frames=frames,
    )
    report = result.report
    report.model = str(model_path)
    if frames is None:
        report.notes.append(f"{where}; the distance to the nearest training frame is not given")
    report.notes += write_structures(
        output,
        result.xyz[None],
        topology_json=loaded.record.topology,
        units=loaded.units,
        attrs=_structure_attrs(config, result, model_path),
        overwrite=overwrite,
    )
    report.output = str(output)
    report.wall_time_s = time.perf_counter() - started  # the command's, reading and writing too
    return report
