"""Alignment kernels: pure JAX functions over one frame; `vmap` them over frames."""

from vaetraj.geometry._batch import (
    METHODS,
    AlignTarget,
    BlockAlignment,
    count_axis_changes,
    make_block_aligner,
    make_frame_aligner,
)
from vaetraj.geometry._frames import (
    centred_float32,
    compute_center_of_mass,
    compute_weighted_rmsd,
    rotate_frame,
)
from vaetraj.geometry._kabsch import (
    KabschTarget,
    Superposition,
    make_kabsch_target,
    superpose_frame,
)
from vaetraj.geometry._principal import (
    AxisChange,
    PrincipalAlignment,
    align_principal_frame,
    compare_axes,
    compute_index_weights,
)

__all__ = [
    "METHODS",
    "AlignTarget",
    "BlockAlignment",
    "count_axis_changes",
    "make_block_aligner",
    "make_frame_aligner",
    "AxisChange",
    "KabschTarget",
    "PrincipalAlignment",
    "Superposition",
    "align_principal_frame",
    "compare_axes",
    "centred_float32",
    "compute_center_of_mass",
    "compute_index_weights",
    "compute_weighted_rmsd",
    "make_kabsch_target",
    "rotate_frame",
    "superpose_frame",
]
