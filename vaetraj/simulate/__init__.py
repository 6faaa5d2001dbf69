"""Simulation kernels: the built-in bead-spring polymer and its Langevin integrator."""

from vaetraj.simulate._langevin import (
    LangevinState,
    apply_per_particle,
    langevin_baoab,
    mass_factors,
)
from vaetraj.simulate._polymer import (
    PolymerConfig,
    initial_conformation,
    make_polymer_energy,
    simulate_polymer_kernel,
)

__all__ = [
    "LangevinState",
    "PolymerConfig",
    "apply_per_particle",
    "initial_conformation",
    "langevin_baoab",
    "make_polymer_energy",
    "mass_factors",
    "simulate_polymer_kernel",
]
