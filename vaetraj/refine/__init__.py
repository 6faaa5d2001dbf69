"""Refinement kernels: decoded structures made thermal conformations of the training
data's statistical potential."""

from vaetraj.refine._thermal import (
    Refined,
    ThermalSettings,
    make_thermal_refiner,
    pair_cutoffs,
    pairs_within,
)

__all__ = [
    "Refined",
    "ThermalSettings",
    "make_thermal_refiner",
    "pair_cutoffs",
    "pairs_within",
]
