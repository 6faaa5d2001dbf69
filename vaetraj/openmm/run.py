"""`vaetraj bias`: a biased OpenMM simulation along latent coordinates of a model, its
frames saved with the CVs, the bias and the weights that undo it.

The run saves a frame every `report` steps: positions, time, the CVs, the bias energy
on the frame and (metadynamics) c(t). A checkpoint (OpenMM's own, the rows so far and
the bias's state) is written every `checkpoint_every` steps and when a signal stops
the run (exit 75); `--resume` goes on from it exactly (the same platform: OpenMM's
checkpoints restore the thermostat's random state too). At the end the trajectory and
the bias file are written, each atomically.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from vaetraj._interrupt import check_stop
from vaetraj._version import __version__
from vaetraj.configs import BiasConfig
from vaetraj.errors import BadInputError, InterruptedRunError, UsageError
from vaetraj.io._atomic import check_output
from vaetraj.io._hash import compute_sha256
from vaetraj.io.bias import read_bias_checkpoint, write_bias_checkpoint, write_bias_file
from vaetraj.io.structures import check_structure_output, write_structures
from vaetraj.io.topology import topology_to_json
from vaetraj.openmm._biases import Bias, Metadynamics, Restraint
from vaetraj.openmm._force import latent_force, openmm_module, slowest_coordinate
from vaetraj.openmm._systems import Setup, platform_for
from vaetraj.pipeline.forcefield import BOLTZMANN
from vaetraj.pipeline.model import Model

Progress = Callable[[int, int], None]
ROWS = ("time", "cv", "bias", "ct")
RANGE_DRAWS = 20_000  # latent draws that set the default grid


@dataclass
class BiasReport:
    """What `vaetraj bias --json` prints, and the summary table."""

    method: str
    estimator: str
    system: str
    model: str
    cv: list[str]
    frames: int
    steps: int
    simulated_ns: float
    ms_per_step: float
    cv_min: list[float]
    cv_max: list[float]
    effective_fraction: float | None  # Kish's effective sample size over the frames
    output: str
    trajectory: str
    resumed_from_step: int = 0
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def rows(self) -> list[tuple[str, str]]:
        visited = ", ".join(
            f"z{c} {lo:.3g} to {hi:.3g}"
            for c, lo, hi in zip(self.cv, self.cv_min, self.cv_max, strict=True)
        )
        ess = (
            "none (steered)"
            if self.effective_fraction is None
            else f"{self.effective_fraction:.1%} of the frames"
        )
        return [
            ("system", self.system),
            ("bias", f"{self.method} along {', '.join(self.cv)} of {self.model}"),
            (
                "simulated",
                f"{self.simulated_ns:.4g} ns ({self.steps:,} steps, {self.frames:,} frames)",
            ),
            ("cost", f"{self.ms_per_step:.3g} ms a step"),
            ("CV visited", visited),
            ("weights", self.estimator),
            ("effective sample", ess),
            ("written", f"{self.output}, {self.trajectory}"),
        ]


def default_ranges(model: Model, cvs: tuple[int, ...], slowest=None) -> np.ndarray:
    """(cvs, 2): each CV's [p0.5, p99.5] over draws of the model's latent density
    (N(0, I) without one), padded by half that span on each side."""
    key = jax.random.PRNGKey(0)
    prior = "density" if model.density is not None else "standard"
    draws = model.sample_latent(RANGE_DRAWS, key=key, prior=prior)
    if slowest is not None:
        draws = (draws @ slowest[0] - slowest[1])[:, None]
    else:
        draws = draws[:, list(cvs)]
    low, high = np.percentile(draws, [0.5, 99.5], axis=0)
    span = high - low
    return np.stack([low - span / 2, high + span / 2], axis=1)


def _bias(
    setup: Setup, model: Model, config: BiasConfig, temperature: float, slowest=None
) -> tuple[Bias, np.ndarray]:
    """The bias and its CV ranges (cvs, 2); `slowest` (weights, offset): one CV, that
    combination of the latent means instead of `config.cv`."""
    for cv in config.cv:
        if cv >= model.latent_dim:
            raise UsageError(
                f"--cv {cv}: the model's latent dimensions are 0 to {model.latent_dim - 1}"
            )
    indices = np.asarray(model.record.atom_indices)
    if indices.size and indices.max() >= setup.system.getNumParticles():
        raise BadInputError(
            f"the model's atoms (indices up to {indices.max()}) are not all in "
            f"{setup.what} ({setup.system.getNumParticles()} particles)"
        )
    periodic = setup.system.usesPeriodicBoundaryConditions()
    if slowest is not None:
        if len(config.cv) != 1:
            raise UsageError("--slowest is one CV: leave out --cv")
        forces = [latent_force(model, slowest[0], offset=slowest[1], periodic=periodic)]
    else:
        forces = [latent_force(model, cv, periodic=periodic) for cv in config.cv]
    if config.cv_range is not None:
        ranges = np.asarray(config.cv_range, dtype=np.float64).reshape(-1, 2)
    else:
        ranges = default_ranges(model, config.cv, slowest)
    if config.method != "metad":
        return Restraint(setup.system, forces, config), ranges
    widths = np.asarray(config.width) if config.width else (ranges[:, 1] - ranges[:, 0]) / 40
    return Metadynamics(setup.system, forces, config, temperature, ranges, widths), ranges


def _simulation(setup: Setup, config: BiasConfig, temperature: float, time_step: float):
    openmm = openmm_module()
    from openmm import app

    integrator = openmm.LangevinMiddleIntegrator(temperature, config.friction, time_step)
    integrator.setRandomNumberSeed(config.seed + 1)  # OpenMM takes seed 0 as "any seed"
    platform, properties = platform_for(setup.system.getNumParticles())
    if platform is None:
        simulation = app.Simulation(setup.topology, setup.system, integrator)
    else:
        simulation = app.Simulation(setup.topology, setup.system, integrator, platform, properties)
    return simulation


@dataclass
class _Rows:
    """The saved frames so far."""

    time: list[float] = dataclasses.field(default_factory=list)
    cv: list[np.ndarray] = dataclasses.field(default_factory=list)
    bias: list[float] = dataclasses.field(default_factory=list)
    ct: list[float] = dataclasses.field(default_factory=list)
    positions: list[np.ndarray] = dataclasses.field(default_factory=list)

    def arrays(self, cvs: int) -> dict[str, np.ndarray]:
        return {
            "time": np.asarray(self.time, dtype=np.float64),
            "cv": np.asarray(self.cv, dtype=np.float64).reshape(-1, cvs),
            "bias": np.asarray(self.bias, dtype=np.float64),
            "ct": np.asarray(self.ct, dtype=np.float64),
        }

    def extend(self, arrays: dict[str, np.ndarray]) -> None:
        self.time += list(arrays["time"])
        self.cv += list(arrays["cv"])
        self.bias += list(arrays["bias"])
        self.ct += list(arrays["ct"])
        self.positions += list(arrays["positions"])


def _record(rows: _Rows, simulation, bias: Bias, time_step: float) -> None:
    context = simulation.context
    state = context.getState(getPositions=True)
    rows.positions.append(np.asarray(state.getPositions(asNumpy=True)._value, dtype=np.float32))
    rows.time.append(simulation.currentStep * time_step)
    rows.cv.append(bias.cvs(context))
    rows.bias.append(bias.energy(context))
    rows.ct.append(bias.offset())


def log_weights(
    arrays: dict[str, np.ndarray], method: str, temperature: float
) -> np.ndarray | None:
    """Each frame's log weight (up to a constant): (V - c(t)) / kT for metadynamics,
    V / kT for a static restraint, None for a steered run."""
    if method == "steer":
        return None
    beta = 1.0 / (BOLTZMANN * temperature)
    return beta * (arrays["bias"] - arrays["ct"])


def weights_of(log_w: np.ndarray) -> np.ndarray:
    """Weights of mean 1 from log weights (shifted first: no overflow)."""
    w = np.exp(log_w - log_w.max())
    return w / w.mean()


class BiasRun:
    """One run: `setup` biased along `config.cv` of `model` (a model loaded from its file)."""

    def __init__(
        self,
        setup: Setup,
        model: Model,
        config: BiasConfig,
        *,
        checkpoint: Path | None,
        slowest: Path | None = None,
    ) -> None:
        if model.path is None:
            raise UsageError("the bias reloads its model by path: save the model first")
        self.setup, self.model, self.config = setup, model, config
        self.checkpoint = checkpoint
        self.temperature = config.temperature or setup.temperature
        self.time_step = config.time_step or setup.time_step
        self.slowest = None if slowest is None else str(slowest)
        combination = None if slowest is None else slowest_coordinate(slowest)
        self.bias, self.ranges = _bias(setup, model, config, self.temperature, combination)
        self.simulation = _simulation(setup, config, self.temperature, self.time_step)
        self.rows = _Rows()
        self.model_sha256 = compute_sha256(model.path)
        self.resumed_from = 0

    def fields(self) -> dict[str, Any]:
        return {
            "config": dataclasses.asdict(self.config),
            "model": {"path": str(self.model.path), "sha256": self.model_sha256},
            "system": self.setup.what,
            "particles": self.setup.system.getNumParticles(),
            "temperature": self.temperature,
            "time_step": self.time_step,
            "ranges": self.ranges.tolist(),
            "slowest": self.slowest,
            "step": self.simulation.currentStep,
            "estimator": self.bias.estimator,
            "vaetraj_version": __version__,
        }

    def start(self) -> None:
        context = self.simulation.context
        context.setPositions(self.setup.positions)
        self.simulation.minimizeEnergy()
        context.setVelocitiesToTemperature(self.temperature, self.config.seed + 1)

    def resume(self) -> None:
        """Go on from the checkpoint: refused (naming what differs) when it is of
        another model, system or configuration (the number of steps may grow)."""
        assert self.checkpoint is not None
        fields, arrays, state = read_bias_checkpoint(self.checkpoint)
        mine = json.loads(json.dumps(self.fields()))  # as the checkpoint keeps them
        for key in (
            "model",
            "system",
            "particles",
            "temperature",
            "time_step",
            "ranges",
            "slowest",
        ):
            if fields.get(key) != mine[key]:
                raise UsageError(
                    f"the checkpoint is of another run: its {key} differs", path=self.checkpoint
                )
        grows = "steps" if mine["config"]["method"] != "steer" else None  # its schedule
        ours = {k: v for k, v in mine["config"].items() if k != grows}
        theirs = {k: v for k, v in fields["config"].items() if k != grows}
        if ours != theirs:
            changed = sorted(k for k in ours if ours[k] != theirs.get(k))
            raise UsageError(
                f"the checkpoint was run with other options ({', '.join(changed)})",
                path=self.checkpoint,
            )
        self.simulation.context.loadCheckpoint(state)
        self.bias.restore(arrays, self.simulation.context)
        self.rows.extend(arrays)
        self.resumed_from = int(fields["step"])

    def save_checkpoint(self) -> None:
        if self.checkpoint is None:
            return
        arrays = {**self.rows.arrays(len(self.config.cv)), **self.bias.state(),
                  "positions": np.asarray(self.rows.positions, np.float32)}  # fmt: skip
        state = self.simulation.context.createCheckpoint()
        write_bias_checkpoint(self.checkpoint, self.fields(), arrays, state)

    def run(self, progress: Progress | None = None) -> float:
        """Simulate to `config.steps`, saving frames; returns the seconds per step."""
        config, simulation = self.config, self.simulation
        total = config.steps // config.report
        started, steps_run = time.perf_counter(), 0
        try:
            while len(self.rows.time) < total:
                self.bias.step(simulation, config.report)
                steps_run += config.report
                _record(self.rows, simulation, self.bias, self.time_step)
                if progress is not None:
                    progress(len(self.rows.time), total)
                due = (
                    config.checkpoint_every
                    and simulation.currentStep % config.checkpoint_every < config.report
                )
                if due and len(self.rows.time) < total:
                    self.save_checkpoint()
                check_stop()
        except KeyboardInterrupt:
            # a checkpoint is written where the rows end (a second signal can land in
            # the middle of a report's steps: then the last periodic checkpoint stands)
            at_a_row = simulation.currentStep == len(self.rows.time) * config.report
            if self.checkpoint is None or not self.rows.time or not at_a_row:
                raise
            self.save_checkpoint()
            raise InterruptedRunError(
                f"interrupted at step {simulation.currentStep:,}; go on with --resume",
                path=self.checkpoint,
            ) from None
        return (time.perf_counter() - started) / max(1, steps_run)

    def finish(
        self, output: Path, trajectory: Path, seconds_per_step: float, *, overwrite: bool
    ) -> BiasReport:
        """Write the trajectory and the bias file; remove the checkpoint."""
        import mdtraj as md

        config = self.config
        arrays = self.rows.arrays(len(config.cv))
        log_w = log_weights(arrays, config.method, self.temperature)
        if config.method != "metad":
            arrays.pop("ct")
        if log_w is not None:
            arrays["weights"] = weights_of(log_w)
        arrays.update(self.bias.extras())
        topology_json = topology_to_json(md.Topology.from_openmm(self.setup.topology))
        write_structures(trajectory, np.asarray(self.rows.positions), topology_json=topology_json,
                         units="nm", time=arrays["time"], overwrite=overwrite)  # fmt: skip
        fields = {**self.fields(), "method": config.method, "trajectory": str(trajectory)}
        write_bias_file(output, fields, arrays, overwrite=overwrite)
        if self.checkpoint is not None:
            self.checkpoint.unlink(missing_ok=True)
        return self.report(arrays, output, trajectory, seconds_per_step)

    def report(self, arrays, output: Path, trajectory: Path, seconds_per_step: float) -> BiasReport:
        weights = arrays.get("weights")
        ess = (
            None
            if weights is None
            else float(weights.sum() ** 2 / np.sum(weights**2) / len(weights))
        )
        cv = arrays["cv"]
        return BiasReport(
            method=self.config.method,
            estimator=self.bias.estimator,
            system=self.setup.what,
            model=Path(str(self.model.path)).name,
            cv=["slowest VAMP coordinate"] if self.slowest else [f"z{c}" for c in self.config.cv],
            frames=len(cv),
            steps=self.simulation.currentStep,
            simulated_ns=self.simulation.currentStep * self.time_step / 1000,
            ms_per_step=seconds_per_step * 1000,
            cv_min=[float(v) for v in cv.min(axis=0)],
            cv_max=[float(v) for v in cv.max(axis=0)],
            effective_fraction=ess,
            output=str(output),
            trajectory=str(trajectory),
            resumed_from_step=self.resumed_from,
        )


def bias_file(
    setup: Setup,
    model: Model,
    config: BiasConfig,
    output: Path,
    trajectory: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    slowest: Path | None = None,
) -> BiasReport:
    """Run the biased simulation and write its trajectory and bias file (see the
    module's doc); the checkpoint is `<output>.checkpoint.h5`. `slowest`: a kinetics
    file, to bias along its slowest VAMP coordinate (one CV) instead of `config.cv`."""
    if output.suffix.lower() not in (".h5", ".hdf5"):
        raise UsageError(
            f"the bias file must be .h5, got '{output.suffix or output.name}'", path=output
        )
    check_output(output, overwrite=overwrite)
    check_structure_output(trajectory, overwrite=overwrite)
    checkpoint = output.with_name(output.name + ".checkpoint.h5")
    run = BiasRun(setup, model, config, checkpoint=checkpoint, slowest=slowest)
    if resume:
        run.resume()
    else:
        if checkpoint.exists():
            raise UsageError(
                "a checkpoint of an unfinished run is here: --resume it, or remove it",
                path=checkpoint,
            )
        run.start()
    seconds = run.run(progress)
    return run.finish(output, trajectory, seconds, overwrite=overwrite)
