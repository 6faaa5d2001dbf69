"""Distances and contacts between atoms of a selection: C-alpha pairs, or every
heavy-atom pair, with an optional cutoff."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vaetraj._lazy import mdtraj as md
from vaetraj.configs import FeaturizeConfig
from vaetraj.featurize._base import Featurizer, as_pairs, named_terms, register
from vaetraj.metrics import compute_pair_distances

DEFAULT_SELECTION = "name CA"
Frames = Any  # None, an array (frames, atoms, 3) or an iterable of such chunks
MIN_SEPARATION = 3  # bonds between two atoms for their distance to be a feature


def select_pairs(
    topology: md.Topology,
    selection: str = DEFAULT_SELECTION,
    frames: Frames = None,
    cutoff: float | None = None,
) -> np.ndarray:
    """Pairs (n, 2) of the selection's atoms, i < j, at least MIN_SEPARATION bonds
    apart (a bond's or an angle's distance barely moves); with a cutoff (nm), only the
    pairs closer than it in at least one of `frames` (frames, atoms, 3), or of an
    iterable of such chunks."""
    chosen = topology.select(selection)
    if len(chosen) < 2:
        raise ValueError(f"selection {selection!r} picks {len(chosen)} atom(s); pairs need 2")
    first, second = np.triu_indices(len(chosen), 1)
    pairs = np.stack([chosen[first], chosen[second]], axis=1)
    bonds = np.asarray([(a.index, b.index) for a, b in topology.bonds], np.int64).reshape(-1, 2)
    if len(bonds):
        import scipy.sparse  # here: a tenth of a second that most commands never need
        from scipy.sparse.csgraph import shortest_path

        graph = scipy.sparse.coo_matrix(
            (np.ones(len(bonds)), (bonds[:, 0], bonds[:, 1])), shape=(topology.n_atoms,) * 2
        )
        hops = shortest_path(graph, directed=False, unweighted=True, indices=chosen)
        where = {atom: k for k, atom in enumerate(chosen)}
        apart = hops[[where[i] for i in pairs[:, 0]], pairs[:, 1]]
        pairs = pairs[apart >= MIN_SEPARATION]
    if cutoff is not None:
        pairs = pairs[_closest(pairs, frames) < cutoff]
    if not len(pairs):
        raise ValueError(f"no pair of {selection!r} is left (bonded, or past the cutoff)")
    return pairs


def _closest(pairs: np.ndarray, frames) -> np.ndarray:
    """The shortest distance of each pair (n, 2) over frames: an array (frames, atoms,
    3), or an iterable of such chunks (read once)."""
    chunks = [frames] if isinstance(frames, np.ndarray) or frames is None else frames
    closest = np.full(len(pairs), np.inf)
    seen = 0
    for chunk in chunks:
        chunk = np.asarray(chunk, np.float32) if chunk is not None else np.zeros((0, 0, 3))
        for start in range(0, len(chunk), 1024):  # bounded memory: 1,024 frames at once
            block = chunk[start : start + 1024]
            r = np.linalg.norm(block[:, pairs[:, 0]] - block[:, pairs[:, 1]], axis=-1)
            closest = np.minimum(closest, r.min(axis=0))
        seen += len(chunk)
    if not seen:
        raise ValueError("a cutoff needs frames to measure the pairs on")
    return closest


def _pair_labels(topology: md.Topology | None, pairs) -> tuple[str, ...]:
    if topology is None:
        return tuple(f"{i}-{j}" for i, j in pairs)
    return tuple(f"{topology.atom(i)}--{topology.atom(j)}" for i, j in pairs)


@register
@dataclass(frozen=True)
class Distances(Featurizer):
    """Distances (nm) between the atoms of `pairs` (n, 2)."""

    kind = "distances"
    pairs: tuple[tuple[int, ...], ...] = ()
    names: tuple[str, ...] = ()

    @classmethod
    def fit(cls, topology: md.Topology, selection: str = DEFAULT_SELECTION,
            frames: Frames = None, cutoff: float | None = None) -> Distances:  # fmt: skip
        pairs = select_pairs(topology, selection, frames, cutoff)
        return cls(atoms=topology.n_atoms, pairs=as_pairs(pairs, 2, topology.n_atoms, "pairs"),
                   names=_pair_labels(topology, pairs))  # fmt: skip

    @classmethod
    def from_config(cls, config: FeaturizeConfig, topology: md.Topology, frames: Frames = None):
        return cls.fit(topology, config.pair_select or DEFAULT_SELECTION, frames, config.cutoff)

    @classmethod
    def from_fields(cls, atoms: int, pairs, names) -> Distances:
        checked, labels = named_terms(atoms, pairs, 2, names, "pairs")
        return cls(atoms=int(atoms), pairs=checked, names=labels)

    @property
    def labels(self) -> list[str]:
        return [f"d({name})" for name in self.names]

    def _kernel(self, columns) -> jax.Array:
        return compute_pair_distances(columns, jnp.asarray(self.pairs, jnp.int32))


@register
@dataclass(frozen=True)
class Contacts(Featurizer):
    """Smooth contacts of `pairs` (n, 2): s(r) = 1 / (1 + (r / r0)^6), 1 in contact,
    1/2 at r0, 0 far apart (PLUMED's rational switching function, n = 6, m = 12,
    written without its removable singularity at r0)."""

    kind = "contacts"
    pairs: tuple[tuple[int, ...], ...] = ()
    names: tuple[str, ...] = ()
    r0: float = 0.45

    @classmethod
    def fit(cls, topology: md.Topology, selection: str = DEFAULT_SELECTION,
            frames: Frames = None, cutoff: float | None = None,
            r0: float = 0.45) -> Contacts:  # fmt: skip
        if not r0 > 0:
            raise ValueError(f"the contact radius r0 must be positive, got {r0}")
        chosen = Distances.fit(topology, selection, frames, cutoff)
        return cls(atoms=chosen.atoms, pairs=chosen.pairs, names=chosen.names, r0=float(r0))

    @classmethod
    def from_config(cls, config: FeaturizeConfig, topology: md.Topology, frames: Frames = None):
        select = config.pair_select or DEFAULT_SELECTION
        return cls.fit(topology, select, frames, config.cutoff, config.contact_r0)

    @classmethod
    def from_fields(cls, atoms: int, pairs, names, r0: float) -> Contacts:
        checked = as_pairs(pairs, 2, atoms, "pairs")
        if len(names) != len(checked) or not float(r0) > 0:
            raise ValueError("names must match the pairs and r0 must be positive")
        return cls(
            atoms=int(atoms), pairs=checked, names=tuple(str(n) for n in names), r0=float(r0)
        )

    @property
    def labels(self) -> list[str]:
        return [f"c({name})" for name in self.names]

    def _kernel(self, columns) -> jax.Array:
        r = compute_pair_distances(columns, jnp.asarray(self.pairs, jnp.int32))
        return 1.0 / (1.0 + (r / self.r0) ** 6)
