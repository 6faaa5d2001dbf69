"""Metric kernels: structural descriptors, the geometry check, distribution distances."""

from vaetraj.metrics._distribution import compute_wasserstein_1d
from vaetraj.metrics._plausibility import (
    CONTACT_TOLERANCE,
    MIN_ANGLE_STD,
    MIN_RELATIVE_STD,
    WINDOW_SIGMAS,
    FrameCheck,
    GeometryLimits,
    GeometryTerms,
    TermStats,
    check_frame,
    compute_angles,
    compute_signed_volumes,
    geometry_terms,
    stereocentre_handedness,
    term_windows,
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
    "CONTACT_TOLERANCE",
    "MIN_ANGLE_STD",
    "MIN_RELATIVE_STD",
    "WINDOW_SIGMAS",
    "FrameCheck",
    "GeometryLimits",
    "GeometryTerms",
    "TermStats",
    "all_pairs",
    "check_frame",
    "compute_angles",
    "compute_chain_bond_lengths",
    "compute_end_to_end",
    "compute_nonbonded_distances",
    "compute_pair_distances",
    "compute_rg",
    "compute_signed_volumes",
    "compute_wasserstein_1d",
    "geometry_terms",
    "stereocentre_handedness",
    "summarize_chain",
    "term_windows",
]
