"""How a VAE is trained: a frozen, validated, JSON round-tripped config."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import optax

from vaetraj.errors import UsageError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """Optimization settings. The textbook's are epochs 250, batch 32, adam 1e-2,
    beta 0.01 and a constant rate; ours differ only in the schedule: a linear warm-up
    over warmup_epochs (adam's first steps at the full rate blow the loss up by orders
    of magnitude and kill ReLU units), then a cosine decay to final_lr_fraction of lr.

    kl_warmup: epochs over which beta ramps linearly from 0 (0: no ramp).
    samples: reparameterized draws per frame averaged in the reconstruction term.
    patience: stop when the validation loss has not improved for this many epochs and
    keep the parameters of the best epoch (None: run all epochs, keep the last).
    density_components: Gaussians in the latent density fitted after training.
    """

    epochs: int = 250
    batch_size: int = 32
    lr: float = 1e-2
    optimizer: str = "adam"
    schedule: str = "cosine"
    final_lr_fraction: float = 0.01
    warmup_epochs: int = 5
    clip_norm: float | None = None
    beta: float = 0.01
    kl_warmup: int = 0
    samples: int = 1
    val_fraction: float = 0.1
    patience: int | None = None
    seed: int = 0
    checkpoint_every: int = 10
    density_components: int = 8

    def __post_init__(self) -> None:
        rules = {
            "epochs": (self.epochs >= 1, "--epochs must be at least 1"),
            "batch_size": (self.batch_size >= 1, "--batch-size must be at least 1"),
            "lr": (self.lr > 0, "--lr must be positive"),
            "optimizer": (
                self.optimizer in OPTIMIZERS,
                f"--optimizer must be one of {', '.join(OPTIMIZERS)}",
            ),
            "schedule": (
                self.schedule in SCHEDULES,
                f"--schedule must be one of {', '.join(SCHEDULES)}",
            ),
            "final_lr_fraction": (
                0 <= self.final_lr_fraction <= 1,
                "final_lr_fraction must be in [0, 1]",
            ),
            "warmup_epochs": (self.warmup_epochs >= 0, "--warmup-epochs must be zero or more"),
            "clip_norm": (
                self.clip_norm is None or self.clip_norm > 0,
                "--clip-norm must be positive",
            ),
            "beta": (self.beta >= 0, "--beta must be zero or more"),
            "kl_warmup": (self.kl_warmup >= 0, "--kl-warmup must be zero or more"),
            "samples": (self.samples >= 1, "--samples must be at least 1"),
            "val_fraction": (0 <= self.val_fraction < 1, "--val-fraction must be in [0, 1)"),
            "patience": (
                self.patience is None or self.patience >= 1,
                "--patience must be at least 1",
            ),
            "checkpoint_every": (
                self.checkpoint_every >= 0,
                "--checkpoint-every must be zero (never) or more",
            ),
            "density_components": (
                self.density_components >= 1,
                "--density-components must be at least 1",
            ),
        }
        for name, (ok, rule) in rules.items():
            if not ok:
                raise UsageError(f"{rule}, got {getattr(self, name)!r}")

    def beta_at(self, epoch: int) -> float:
        """beta for 0-based `epoch`, ramped linearly over the first kl_warmup epochs."""
        if self.kl_warmup == 0:
            return self.beta
        return self.beta * min(1.0, (epoch + 1) / self.kl_warmup)

    def make_optimizer(self, steps_per_epoch: int) -> optax.GradientTransformation:
        warmup = min(self.warmup_epochs, self.epochs) * steps_per_epoch
        total = self.epochs * steps_per_epoch
        if self.schedule == "cosine":
            rate = optax.warmup_cosine_decay_schedule(
                0.0, self.lr, warmup, max(total, warmup + 1), self.lr * self.final_lr_fraction
            )
        elif warmup:
            rate = optax.join_schedules(
                [optax.linear_schedule(0.0, self.lr, warmup), optax.constant_schedule(self.lr)],
                [warmup],
            )
        else:
            rate = optax.constant_schedule(self.lr)
        base = {
            "adam": lambda: optax.adam(rate),
            "adamw": lambda: optax.adamw(rate),
            "sgd": lambda: optax.sgd(rate, momentum=0.9, nesterov=True),
            "rmsprop": lambda: optax.rmsprop(rate),
        }[self.optimizer]()
        if self.clip_norm is None:
            return base
        return optax.chain(optax.clip_by_global_norm(self.clip_norm), base)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        return cls(**json.loads(text))
