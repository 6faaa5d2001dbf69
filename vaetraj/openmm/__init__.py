"""vaetraj's latent in a real MD engine: OpenMM forces along a model's latent
coordinates, and biased simulations along them (`vaetraj bias`).

OpenMM is an optional dependency (`pip install "vaetraj[openmm]"`); this package
imports it only where it is used, and says how to install it when it is missing.
"""

from vaetraj.openmm._force import (
    LatentCV,
    latent_force,
    make_whole,
    prefer_synchronous_jax,
    slowest_coordinate,
)

__all__ = ["LatentCV", "latent_force", "make_whole", "prefer_synchronous_jax", "slowest_coordinate"]
