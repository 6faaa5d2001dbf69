"""The biases `vaetraj bias` applies along latent coordinates, each a `CustomCVForce`
over the latent forces:

- `Metadynamics`: OpenMM's well-tempered metadynamics (`app.Metadynamics`), with what
  a resumable run and reweighting need on top: its grid saved and restored, and c(t).
- `Restraint`: a harmonic restraint 0.5 k |z - c|^2 (umbrella), or (steer) one whose
  centre moves linearly with the step from a start to an end value.

Each says its CV values, the bias energy on the current frame, its state to checkpoint,
and the log-weight estimator that undoes it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vaetraj.configs import BiasConfig
from vaetraj.openmm._force import openmm_module
from vaetraj.pipeline.forcefield import BOLTZMANN


def _free_group(system) -> int:
    used = {system.getForce(i).getForceGroup() for i in range(system.getNumForces())}
    free = sorted(set(range(32)) - used)
    if not free:
        raise RuntimeError("every OpenMM force group is taken; the bias needs one")
    return free[-1]


class Bias:
    """What a run asks of a bias (see the module's doc)."""

    estimator: str = ""
    group: int = 0
    cv_force: Any = None

    def step(self, simulation, steps: int) -> None:
        simulation.step(steps)

    def cvs(self, context) -> np.ndarray:
        return np.asarray(self.cv_force.getCollectiveVariableValues(context), dtype=np.float64)

    def energy(self, context) -> float:
        state = context.getState(getEnergy=True, groups={self.group})
        return float(state.getPotentialEnergy()._value)  # kJ/mol

    def offset(self) -> float:
        """c(t), for metadynamics; 0 otherwise."""
        return 0.0

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def restore(self, state: dict[str, np.ndarray], context) -> None:
        return None

    def extras(self) -> dict[str, np.ndarray]:
        """Arrays for the output beside the rows (metadynamics' free-energy surface)."""
        return {}


class Restraint(Bias):
    """umbrella: 0.5 k |z - center|^2; steer: the same with its centre moved every
    `pace` steps along the straight line from center[0] (step 0) to center[1] (the
    run's last step)."""

    def __init__(self, system, forces: list, config: BiasConfig) -> None:
        openmm = openmm_module()
        terms = " + ".join(f"(z{i} - vaetraj_c{i})^2" for i in range(len(forces)))
        self.cv_force = openmm.CustomCVForce(f"0.5 * vaetraj_k * ({terms})")
        self.cv_force.addGlobalParameter("vaetraj_k", config.k)
        assert config.center is not None  # BiasConfig's rule
        for i, force in enumerate(forces):
            self.cv_force.addGlobalParameter(f"vaetraj_c{i}", config.center[i])
            self.cv_force.addCollectiveVariable(f"z{i}", force)
        self.group = _free_group(system)
        self.cv_force.setForceGroup(self.group)
        system.addForce(self.cv_force)
        self.config = config
        self.steered = config.method == "steer"
        self.estimator = (
            "none: a steered run is out of equilibrium (no weights are written)"
            if self.steered
            else "exp(+V/kT) of the static restraint on each frame"
        )

    def step(self, simulation, steps: int) -> None:
        if not self.steered:
            simulation.step(steps)
            return
        start, end = self.config.center or (0.0, 0.0)
        done = simulation.currentStep
        goal = done + steps
        while done < goal:
            chunk = min(self.config.pace, goal - done)
            fraction = min(1.0, done / self.config.steps)
            simulation.context.setParameter("vaetraj_c0", start + (end - start) * fraction)
            simulation.step(chunk)
            done += chunk


def _grid_update(meta) -> None:
    """Push the metadynamics grid into its tabulated function (what OpenMM's own
    Gaussian deposit does after adding one)."""
    flat = meta._totalBias.flatten()
    if len(meta.variables) == 1:
        meta._table.setFunctionParameters(flat, *meta._limits)
    else:
        meta._table.setFunctionParameters(*meta._widths, flat, *meta._limits)


class Metadynamics(Bias):
    """Well-tempered metadynamics over OpenMM's `app.Metadynamics` (Barducci et al.
    2008): Gaussians of height h exp(-V(s, t) / k dT) every `pace` steps, dT = (gamma
    - 1) T. Frames are reweighted by exp((V(s, t) - c(t)) / kT), Tiwary and Parrinello's
    estimator (J. Phys. Chem. B 2015), c(t) computed from the grid at each frame."""

    estimator = "exp((V(s,t) - c(t))/kT), Tiwary-Parrinello c(t) of well-tempered metadynamics"

    def __init__(self, system, forces: list, config: BiasConfig, temperature: float,
                 ranges: np.ndarray, widths: np.ndarray) -> None:  # fmt: skip
        openmm_module()
        from openmm import app

        # OpenMM's default grid has 5 points a width: 200 x 200 for two CVs, whose
        # spline OpenMM recomputes at every Gaussian (20 ms: 0.16 ms a step at a pace of
        # 125); at 2.5 points a width a cubic spline is within 0.03% of a Gaussian's height
        points = 5.0 if len(forces) == 1 else 2.5
        variables = [
            app.BiasVariable(
                force,
                float(lo),
                float(hi),
                float(width),
                periodic=False,
                gridWidth=int(np.ceil(points * (hi - lo) / width)),
            )  # fmt: skip
            for force, (lo, hi), width in zip(forces, ranges, widths, strict=True)
        ]
        self.meta = app.Metadynamics(
            system, variables, temperature, config.bias_factor, config.height, config.pace
        )
        self.cv_force = self.meta._force
        self.group = self.cv_force.getForceGroup()
        self.beta = 1.0 / (BOLTZMANN * temperature)
        self.gamma = config.bias_factor
        self.ranges = np.asarray(ranges, dtype=np.float64)

    def step(self, simulation, steps: int) -> None:
        self.meta.step(simulation, steps)

    def offset(self) -> float:
        grid = self.meta._totalBias
        top = float(grid.max())
        scaled = self.beta * (grid - top) / (self.gamma - 1)
        log_ratio = np.log(np.sum(np.exp(self.gamma * scaled))) - np.log(np.sum(np.exp(scaled)))
        return top + float(log_ratio) / self.beta

    def state(self) -> dict[str, np.ndarray]:
        return {"state/grid": np.array(self.meta._selfBias)}

    def restore(self, state: dict[str, np.ndarray], context) -> None:
        grid = np.asarray(state["state/grid"], dtype=np.float64)
        if grid.shape != self.meta._selfBias.shape:
            raise ValueError(f"a bias grid of shape {grid.shape}, not {self.meta._selfBias.shape}")
        self.meta._selfBias = grid.copy()
        self.meta._totalBias = grid.copy()
        _grid_update(self.meta)
        self.cv_force.updateParametersInContext(context)

    def extras(self) -> dict[str, np.ndarray]:
        fes = np.asarray(self.meta.getFreeEnergy()._value)  # kJ/mol, axes reversed
        axes = {
            f"fes_axis_{i}": np.linspace(lo, hi, fes.shape[fes.ndim - 1 - i])
            for i, (lo, hi) in enumerate(self.ranges)
        }
        return {"fes": fes.T - fes.min(), **axes}
