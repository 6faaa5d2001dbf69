"""Training kernels: the config, and one jit-compiled epoch over a TrainState."""

from vaetraj.train._config import OPTIMIZERS, SCHEDULES, TrainConfig
from vaetraj.train._trainer import EpochMetrics, Trainer, TrainState, make_trainer

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "EpochMetrics",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "make_trainer",
]
