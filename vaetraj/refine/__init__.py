"""Refinement kernels: decoded structures relaxed to the training data's local geometry."""

from vaetraj.refine._relax import Refined, Restraints, compute_restraint_energy, make_refiner

__all__ = ["Refined", "Restraints", "compute_restraint_energy", "make_refiner"]
