"""Metric kernels: structural descriptors of frames."""

from vaetraj.metrics._structure import (
    compute_chain_bond_lengths,
    compute_nonbonded_distances,
    compute_rg,
    summarize_chain,
)

__all__ = [
    "compute_chain_bond_lengths",
    "compute_nonbonded_distances",
    "compute_rg",
    "summarize_chain",
]
