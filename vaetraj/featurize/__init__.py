"""Featurizers: frames to rigid-motion-invariant feature tables, computed by vaetraj
(JAX kernels, chunked), registered by name so that a model can record the one it was
trained on and rebuild it (`featurizer_from_record`).

    from vaetraj.featurize import Torsions
    torsions = Torsions.fit(topology)            # phi, psi, chi1 of every residue
    table = torsions.transform(xyz)              # (frames, 2 x torsions): sin, cos

A new featurizer is one module: a frozen dataclass subclassing `Featurizer`, with
`kind`, `fit`, `from_config`, `from_fields`, `labels` and `_kernel`, decorated with `@register`, and
imported here; its kind joins `FEATURIZATIONS` in `vaetraj.configs`.
"""

from vaetraj.featurize._base import (
    FEATURIZERS,
    Featurizer,
    featurizer_from_record,
    fit_featurizer,
    register,
)
from vaetraj.featurize.distances import Contacts, Distances, select_pairs
from vaetraj.featurize.torsions import Torsions

__all__ = [
    "FEATURIZERS",
    "Contacts",
    "Distances",
    "Featurizer",
    "Torsions",
    "featurizer_from_record",
    "fit_featurizer",
    "register",
    "select_pairs",
]
