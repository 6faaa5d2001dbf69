"""Torsions: backbone and side-chain dihedrals as sin and cos (periodic angles made
continuous features; the pair keeps each angle's full circle)."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj._lazy import mdtraj as md
from vaetraj.configs import TORSION_KINDS as KINDS
from vaetraj.configs import FeaturizeConfig
from vaetraj.featurize._base import Featurizer, named_terms, register
from vaetraj.metrics import compute_dihedrals

DEFAULT_KINDS = FeaturizeConfig.torsions


@register
@dataclass(frozen=True)
class Torsions(Featurizer):
    """Dihedrals `torsions` (n, 4 atom indices), named `names`: features sin and cos
    of each, in that order per torsion."""

    kind = "torsions"
    torsions: tuple[tuple[int, ...], ...] = ()
    names: tuple[str, ...] = ()

    @classmethod
    def fit(cls, topology: md.Topology, kinds: tuple[str, ...] = DEFAULT_KINDS) -> Torsions:
        """The topology's dihedrals of these kinds (mdtraj's definitions: phi, psi,
        omega, chi1 to chi4), in residue order within each kind."""
        unknown = [kind for kind in kinds if kind not in KINDS]
        if unknown:
            raise ValueError(
                f"unknown torsion kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}"
            )
        frame = md.Trajectory(np.zeros((1, topology.n_atoms, 3), np.float32), topology)
        torsions, names = [], []
        for kind in kinds:
            indices, _ = getattr(md, f"compute_{kind}")(frame)
            for row in np.asarray(indices, np.int64).reshape(-1, 4):
                residue = topology.atom(int(row[1])).residue
                torsions.append(tuple(int(i) for i in row))
                names.append(f"{kind} {residue}")
        if not torsions:
            raise ValueError(f"the topology has no {'/'.join(kinds)} torsions")
        return cls(atoms=topology.n_atoms, torsions=tuple(torsions), names=tuple(names))

    @classmethod
    def from_config(cls, config: FeaturizeConfig, topology: md.Topology, frames=None):
        return cls.fit(topology, config.torsions)

    @classmethod
    def from_fields(cls, atoms: int, torsions, names) -> Torsions:
        quads, labels = named_terms(atoms, torsions, 4, names, "torsions")
        return cls(atoms=int(atoms), torsions=quads, names=labels)

    @property
    def labels(self) -> list[str]:
        return [f"{f}({name})" for name in self.names for f in ("sin", "cos")]

    def _kernel(self, columns) -> jax.Array:
        phi = compute_dihedrals(columns, jnp.asarray(self.torsions, jnp.int32))
        # (torsions, frames) -> (2 torsions, frames): sin, cos of each torsion in turn
        return jnp.stack([jnp.sin(phi), jnp.cos(phi)], axis=1).reshape(-1, phi.shape[-1])
