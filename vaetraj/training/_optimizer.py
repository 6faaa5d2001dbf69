"""The optimizer of a training run, from its config: optax clipping, direction, weight
decay, the scheduled rate and per-layer rates."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from vaetraj.configs import TrainConfig


def make_schedule(config: TrainConfig, steps_per_epoch: int) -> optax.Schedule:
    """The peak rate `lr` after a linear warm-up from 0 over `warmup` epochs, then
    constant or cosine-decayed to final_lr_fraction of `lr` at the last step."""
    warmup = config.warmup * steps_per_epoch
    total = config.epochs * steps_per_epoch
    if config.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, config.lr, warmup, max(total, warmup + 1), config.lr * config.final_lr_fraction
        )
    if warmup:
        return optax.join_schedules(
            [optax.linear_schedule(0.0, config.lr, warmup), optax.constant_schedule(config.lr)],
            [warmup],
        )
    return optax.constant_schedule(config.lr)


def make_optimizer(
    config: TrainConfig, steps_per_epoch: int, *, layer_rates: Any = None
) -> optax.GradientTransformation:
    """The optimizer over a VAE's parameters: clipping, the optimizer's direction,
    decoupled weight decay on the weight matrices ("adamw" alone: 1e-4 unless
    weight_decay is set), the scheduled rate, and `layer_rates`, a pytree like the
    parameters of factors on each leaf's rate (None: 1 everywhere)."""
    direction = {
        "adam": optax.scale_by_adam,
        "adamw": optax.scale_by_adam,
        "sgd": lambda: optax.trace(decay=0.9, nesterov=True),
        "rmsprop": optax.scale_by_rms,
    }[config.optimizer]()
    decay = config.weight_decay or (1e-4 if config.optimizer == "adamw" else 0.0)
    parts = [] if config.clip_norm is None else [optax.clip_by_global_norm(config.clip_norm)]
    parts.append(direction)
    if decay:
        parts.append(optax.add_decayed_weights(decay, mask=_weight_matrices))
    parts.append(optax.scale_by_learning_rate(make_schedule(config, steps_per_epoch)))
    if layer_rates is not None:
        parts.append(
            optax.stateless(lambda updates, _: jax.tree.map(jnp.multiply, updates, layer_rates))
        )
    return optax.chain(*parts)


def _weight_matrices(params: Any) -> Any:
    """Mask of the leaves weight decay applies to: the "w" of every layer."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) == "w", params
    )
