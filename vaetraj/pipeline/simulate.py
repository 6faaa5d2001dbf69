"""`simulate polymer`: run the kernel and write the trajectory."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaetraj.errors import UsageError
from vaetraj.io._atomic import atomic_output, check_output
from vaetraj.simulate import PolymerConfig


@dataclass(frozen=True)
class SimulationReport:
    output: str
    frames: int
    beads: int
    dim: int
    seed: int
    mean_bond: float
    min_nonbonded_distance: float
    mean_rg: float
    wall_time_s: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def simulate_polymer(config: PolymerConfig = PolymerConfig(), *, seed: int = 0) -> np.ndarray:
    """Simulate the bead-spring polymer (BAOAB Langevin dynamics).

    Args:
        config: beads, dimension, frames, stride, equilibration and the force field.
        seed: the random seed; the same seed gives the same trajectory.

    Returns:
        (frames, beads, dim) float32 coordinates.
    """
    import jax

    from vaetraj.simulate import simulate_polymer_kernel

    return np.asarray(simulate_polymer_kernel(config, key=jax.random.key(seed)))


def simulate_polymer_file(
    output: str | os.PathLike,
    config: PolymerConfig = PolymerConfig(),
    *,
    seed: int = 0,
    overwrite: bool = False,
) -> SimulationReport:
    """Simulate the polymer and write it to `.npz` (array `arr`, as the textbook's
    files) or `.npy`.

    Args:
        output: the file to write.
        config: the polymer and its run.
        seed: the random seed.
        overwrite: replace an existing output.

    Returns:
        The report (frames, R_g and bond statistics).
    """
    output = Path(output)
    if output.suffix.lower() not in (".npz", ".npy"):
        raise UsageError(
            f"cannot write a polymer trajectory as '{output.suffix}': use .npz or .npy", path=output
        )
    check_output(output, overwrite=overwrite)
    start = time.perf_counter()
    xyz = simulate_polymer(config, seed=seed)
    with atomic_output(output, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as handle:
            if output.suffix.lower() == ".npz":
                np.savez(handle, arr=xyz)
            else:
                np.save(handle, xyz)
    from vaetraj.metrics import summarize_chain

    stats = {name: float(value) for name, value in summarize_chain(xyz).items()}
    return SimulationReport(
        output=str(output),
        frames=config.frames,
        beads=config.beads,
        dim=config.dim,
        seed=seed,
        wall_time_s=time.perf_counter() - start,
        **stats,
    )
