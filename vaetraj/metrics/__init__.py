"""Metric kernels: structural descriptors, plausibility, distribution distances."""

from vaetraj.metrics._distribution import compute_wasserstein_1d
from vaetraj.metrics._plausibility import (
    FrameGeometry,
    StructureLimits,
    fit_structure_limits,
    is_plausible,
    measure_frame,
    split_pairs,
)
from vaetraj.metrics._structure import (
    all_pairs,
    compute_chain_bond_lengths,
    compute_end_to_end,
    compute_nonbonded_distances,
    compute_pair_distances,
    compute_rg,
    summarize_chain,
)

__all__ = [
    "FrameGeometry",
    "StructureLimits",
    "all_pairs",
    "compute_chain_bond_lengths",
    "compute_end_to_end",
    "compute_nonbonded_distances",
    "compute_pair_distances",
    "compute_rg",
    "compute_wasserstein_1d",
    "fit_structure_limits",
    "is_plausible",
    "measure_frame",
    "split_pairs",
    "summarize_chain",
]
