"""Training kernels: the config, and one jit-compiled epoch over a TrainState."""

from vaetraj.configs import KEEP, LR_SCALINGS, OPTIMIZERS, SCHEDULES, TrainConfig
from vaetraj.training._optimizer import make_optimizer, make_schedule
from vaetraj.training._split import lagged_pairs, split_blocks
from vaetraj.training._stream import (
    prefetch,
    run_streamed_epoch,
    seed_of,
    stream_batches,
    windows_of,
)
from vaetraj.training._trainer import (
    NON_FINITE,
    SPIKE,
    EpochMetrics,
    Frames,
    Trainer,
    TrainState,
    compute_layer_rates,
    make_trainer,
    place_rows,
)

__all__ = [
    "KEEP",
    "LR_SCALINGS",
    "NON_FINITE",
    "OPTIMIZERS",
    "SCHEDULES",
    "SPIKE",
    "EpochMetrics",
    "Frames",
    "TrainConfig",
    "TrainState",
    "Trainer",
    "compute_layer_rates",
    "make_optimizer",
    "make_schedule",
    "make_trainer",
    "place_rows",
    "lagged_pairs",
    "split_blocks",
    "prefetch",
    "run_streamed_epoch",
    "seed_of",
    "stream_batches",
    "windows_of",
]
