"""Latent-space optimization kernels: objectives on structures, and restarts of
gradient descent through the decoder inside the latent density's trust region."""

from vaetraj.optim._latent import LatentGoal, LatentRun, make_latent_optimizer
from vaetraj.optim._objectives import OBJECTIVES, Objective, make_objective

__all__ = [
    "OBJECTIVES",
    "LatentGoal",
    "LatentRun",
    "Objective",
    "make_latent_optimizer",
    "make_objective",
]
