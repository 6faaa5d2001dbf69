"""The latent as an OpenMM force: a `PythonForce` whose energy is a latent coordinate
of a model and whose forces are minus its gradient.

Its computation is `LatentCV`, a module-level class that keeps the model's path and
reloads the model where it is unpickled (OpenMM pickles the computation when it
serializes a `PythonForce`, inside a `CustomCVForce` too). The function of the
positions is traced once: the model's own representation (alignment to its reference,
or its featurization), the encoder's posterior mean, and `jax.value_and_grad` of the
chosen coordinate, jit-compiled together.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj.errors import UsageError
from vaetraj.pipeline.model import Model, load_model


def openmm_module():
    """The `openmm` package, or a UsageError (exit 2) saying how to install it."""
    try:
        import openmm
    except ImportError:
        raise UsageError(
            "this needs OpenMM, an optional dependency: pip install 'vaetraj[openmm]'"
        ) from None
    return openmm


def prefer_synchronous_jax() -> None:
    """Run JAX's CPU computations on the calling thread (no asynchronous dispatch): a
    force evaluates one small network a step, where the hand-off to JAX's worker
    threads cost a third of its time (the encoder's value and Jacobian on alanine
    dipeptide: 0.36 ms a call, 0.23 ms without). It takes effect only before JAX's CPU
    backend starts (the first array made), so `vaetraj bias` calls it first; a script
    calls it before anything else touches JAX."""
    jax.config.update("jax_cpu_enable_async_dispatch", False)


def _bond_levels(bonds: list[tuple[int, int]], atoms: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """A spanning forest of the bond graph, breadth first, as (children, parents) per
    level; atoms bonded to nothing hang from the atom before them."""
    neighbours: list[list[int]] = [[] for _ in range(atoms)]
    for a, b in bonds:
        neighbours[a].append(b)
        neighbours[b].append(a)
    parent = np.full(atoms, -1)
    depth = np.zeros(atoms, dtype=int)
    seen = np.zeros(atoms, dtype=bool)
    for root in range(atoms):
        if seen[root]:
            continue
        seen[root] = True
        if root > 0 and not neighbours[root]:
            parent[root], depth[root] = root - 1, depth[root - 1] + 1
        queue = deque([root])
        while queue:
            atom = queue.popleft()
            for other in neighbours[atom]:
                if not seen[other]:
                    seen[other], parent[other], depth[other] = True, atom, depth[atom] + 1
                    queue.append(other)
    return [
        (np.flatnonzero(depth == level), parent[depth == level])
        for level in range(1, int(depth.max(initial=0)) + 1)
    ]


def make_whole(xyz: np.ndarray, box: np.ndarray, levels) -> np.ndarray:
    """Positions (atoms, 3) with every bonded atom moved by whole box vectors (OpenMM's
    reduced triclinic box (3, 3), rows a, b, c) next to the atom it hangs from: the
    molecule made whole, changed only by lattice translations (so the gradient of a
    function of the whole molecule is the gradient of the positions given)."""
    xyz = np.array(xyz, dtype=np.float64)
    for children, parents in levels:
        delta = xyz[children] - xyz[parents]
        for axis in (2, 1, 0):
            delta -= np.outer(np.round(delta[:, axis] / box[axis, axis]), box[axis])
        xyz[children] = xyz[parents] + delta
    return xyz


class LatentCV:
    """The computation of the latent force: called with an OpenMM `State` of the
    model's atoms, returns (value, forces (atoms, 3)) in kJ/mol and kJ/mol/nm, the
    value being the coordinate in the model's latent units.

    projection (latent,) and offset make the coordinate `mean @ projection - offset`
    (a latent dimension: a unit vector). Picklable: it keeps the model's path, not the
    model, and compiles on first use."""

    def __init__(
        self,
        model_path: str | os.PathLike,
        projection: np.ndarray,
        offset: float = 0.0,
        *,
        periodic: bool = False,
    ) -> None:
        self.model_path = str(model_path)
        self.projection = [float(v) for v in np.asarray(projection).ravel()]
        self.offset = float(offset)
        self.periodic = periodic
        self._compiled: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "_compiled"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._compiled = None

    def compile(self, model: Model | None = None) -> _Encoder:
        """Load the model (unless given) and trace its function once (shared by every
        coordinate of the same model file in this process)."""
        if self._compiled is None:
            self._compiled = _encoder(self.model_path, model)
        return self._compiled

    def value_and_gradient(self, xyz: np.ndarray) -> tuple[float, np.ndarray]:
        """The coordinate of one frame (atoms, 3) in nm and its gradient (atoms, 3)."""
        means, jacobian = self.compile().evaluate(np.asarray(xyz, dtype=np.float64))
        projection = np.asarray(self.projection)
        gradient = (projection @ jacobian.reshape(len(projection), -1)).reshape(-1, 3)
        return float(means @ projection) - self.offset, gradient

    def __call__(self, state) -> tuple[float, np.ndarray]:
        xyz = _positions(state)
        if self.periodic:
            box = np.asarray(state.getPeriodicBoxVectors(asNumpy=True)._value, np.float64)
            xyz = make_whole(xyz, box, self.compile().levels)
        value, gradient = self.value_and_gradient(xyz)
        return value, -gradient


def _positions(state) -> np.ndarray:
    """A State's positions (particles, 3) in nm, float64: read straight into an array
    (`State.getPositions(asNumpy=True)` costs 40 us a call in unit bookkeeping, run
    once a step per CV), or through it where OpenMM's internals differ."""
    try:
        xyz = np.empty((state._getNumParticles(), 3), dtype=np.float64)
        state._getVectorAsNumpy(state.Positions, xyz)
        return xyz
    except AttributeError:  # pragma: no cover - another OpenMM's State
        return np.asarray(state.getPositions(asNumpy=True)._value, dtype=np.float64)


class _Encoder:
    """A model's posterior means (latent,) of one frame and their Jacobian (latent,
    atoms, 3), jit-compiled together, with the last frame's answer kept: the CVs of
    one model (metadynamics along z0 and z1) cost one evaluation a step, not one each."""

    def __init__(self, model: Model) -> None:
        encoder = model.frame_encoder()
        self._run = jax.jit(lambda xyz: (encoder(xyz), jax.jacrev(encoder)(xyz)))
        self._run(jnp.zeros((model.atoms, model.dims), jnp.float32))  # compile now
        topology = model.topology
        bonds = [] if topology is None else [(b[0].index, b[1].index) for b in topology.bonds]
        self.levels = _bond_levels(bonds, model.atoms)
        self._last: tuple[bytes, tuple[np.ndarray, np.ndarray]] | None = None

    def evaluate(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(means (latent,), Jacobian (latent, atoms, 3)) of positions (atoms, 3)
        float64; the same positions again are answered from the last call."""
        key = xyz.tobytes()
        if self._last is None or self._last[0] != key:
            means, jacobian = self._run(_centred(xyz))
            self._last = (key, (np.asarray(means, np.float64), np.asarray(jacobian, np.float64)))
        return self._last[1]


_ENCODERS: dict[tuple[str, int, int], _Encoder] = {}


def _encoder(path: str, model: Model | None) -> _Encoder:
    """The encoder of the model file at `path` as it is now: a file written anew at the
    same path (a model retrained in the same session) is another key."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_mtime_ns, stat.st_size)
    if key not in _ENCODERS:
        _ENCODERS[key] = _Encoder(model or load_model(path))
    return _ENCODERS[key]


def _centred(xyz: np.ndarray) -> np.ndarray:
    xyz = np.asarray(xyz, dtype=np.float64)
    return (xyz - xyz.mean(axis=0)).astype(np.float32)


def _projection(model: Model, coordinate: int | np.ndarray) -> np.ndarray:
    if isinstance(coordinate, (int, np.integer)):
        if not 0 <= int(coordinate) < model.latent_dim:
            raise UsageError(
                f"coordinate {coordinate} is not one of the model's latent dimensions "
                f"0 to {model.latent_dim - 1}",
                fields=("coordinate",),
            )
        return np.eye(model.latent_dim)[int(coordinate)]
    projection = np.asarray(coordinate, dtype=np.float64).ravel()
    if projection.shape != (model.latent_dim,) or not np.all(np.isfinite(projection)):
        raise UsageError(
            f"a coordinate of {projection.shape[0]} weights does not match the model's "
            f"latent dimension {model.latent_dim}",
            fields=("coordinate",),
        )
    return projection


def slowest_coordinate(kinetics: str | os.PathLike) -> tuple[np.ndarray, float]:
    """The slowest VAMP coordinate of a `vaetraj kinetics -o kinetics.h5` run as
    (weights (latent,), offset): pass them to `latent_force(model, weights,
    offset=offset)`. BadInputError for a file without them (written before they were)."""
    import h5py

    from vaetraj.errors import BadInputError
    from vaetraj.io._paths import require_input

    path = require_input(kinetics, "kinetics file")
    try:
        with h5py.File(path, "r") as handle:
            coefficients = np.asarray(handle["slowest_coefficients"][()], np.float64)
    except (OSError, KeyError):
        raise BadInputError(
            "no /slowest_coefficients: run vaetraj kinetics -o again with this vaetraj",
            path=path,
        ) from None
    return coefficients[1:], -float(coefficients[0])


def latent_force(
    model: Model | str | os.PathLike,
    coordinate: int | np.ndarray = 0,
    *,
    offset: float = 0.0,
    particles: np.ndarray | None = None,
    periodic: bool = False,
):
    """An `openmm.PythonForce` whose energy is a latent coordinate of `model` and whose
    forces are minus its gradient: a collective variable for `CustomCVForce` and
    `app.Metadynamics`.

    Args:
        model: a model file's path, or a model loaded from one (`load_model`).
        coordinate: a latent dimension (its posterior mean), or weights (latent,) of a
            linear combination of the means (`mean @ weights - offset`), such as the
            slowest VAMP coordinate (`vaetraj.openmm.slowest_coordinate`).
        offset: subtracted from a combination (see above).
        particles: the system's particle index of each of the model's atoms, in its
            order; by default the atom indices the model was trained on (its atoms'
            places in the files it read).
        periodic: the system has a periodic box; molecules are made whole (along the
            model topology's bonds) before alignment or featurization.

    Raises:
        UsageError: OpenMM is missing; the model takes no frames (a table), has no 3D
            atoms, or was aligned outside vaetraj; the coordinate is out of range.
    """
    openmm = openmm_module()
    loaded = model if isinstance(model, Model) else load_model(model)
    if loaded.path is None:
        raise UsageError("the latent force reloads its model by path: save the model first")
    if loaded.dims != 3:
        raise UsageError(f"the model's frames are {loaded.dims}D; an OpenMM system is 3D")
    cv = LatentCV(loaded.path, _projection(loaded, coordinate), offset, periodic=periodic)
    cv.compile(loaded)
    force = openmm.PythonForce(cv)
    indices = loaded.record.atom_indices if particles is None else particles
    indices = np.asarray(indices, dtype=int).ravel()
    if indices.shape != (loaded.atoms,):
        raise UsageError(
            f"{indices.size} particles given for the model's {loaded.atoms} atoms",
            fields=("particles",),
        )
    force.setParticles([int(i) for i in indices])
    force.setUsesPeriodicBoundaryConditions(periodic)
    force.setName(f"vaetraj latent ({os.path.basename(str(loaded.path))})")
    return force
