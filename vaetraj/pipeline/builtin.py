"""The built-in polymer data set: simulated once, then cached on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path

from vaetraj._cache import cache_root
from vaetraj._lazy import mdtraj as md
from vaetraj.simulate import PolymerConfig

BUILTIN_SEED = 0


def builtin_polymer(
    config: PolymerConfig = PolymerConfig(), seed: int = BUILTIN_SEED
) -> tuple[Path, md.Topology]:
    """The built-in polymer trajectory, simulated on first use and cached.

    Args:
        config: the polymer and its run.
        seed: the random seed.

    Returns:
        The cached file's path and its topology.
    """
    from vaetraj.io.topology import polymer_topology
    from vaetraj.pipeline.simulate import simulate_polymer_file

    tag = hashlib.sha256(f"{config.to_json()}|{seed}".encode()).hexdigest()[:12]
    path = cache_root() / f"polymer-{config.beads}x{config.dim}d-{tag}.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        simulate_polymer_file(path, config, seed=seed, overwrite=True)
    return path, polymer_topology(config.beads)
