"""Gradient descent on latent points through the decoder, many restarts at once.

Each restart minimizes

    goal(objective(decode(z))) + trust_weight * relu(threshold - log p(z))^2

where goal is sign * value / scale (minimize or maximize) or ((value - target) / scale)^2
(reach a value), and log p is the model's latent density: the penalty keeps z where
training frames were encoded, so the decoder is trustworthy there. Adam is elementwise,
so one optax state over the (restarts, latent) array is every restart on its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class LatentGoal(NamedTuple):
    """What the restarts aim at; every field a scalar array, so changing one recompiles
    nothing. sign: +1 minimize, -1 maximize; with has_target the goal is the target."""

    sign: jax.Array
    target: jax.Array
    has_target: jax.Array
    scale: jax.Array
    trust_weight: jax.Array
    threshold: jax.Array


class LatentRun(NamedTuple):
    """path: z at every `record_every` steps, start and end included
    (records, restarts, latent); value and log_density: per step (steps, restarts)."""

    z: jax.Array
    path: jax.Array
    value: jax.Array
    log_density: jax.Array


def make_latent_optimizer(
    decode: Callable[[jax.Array], jax.Array],
    objective: Callable[[jax.Array], jax.Array],
    log_density: Callable[[jax.Array], jax.Array],
    *,
    steps: int,
    learning_rate: float,
    record_every: int = 10,
) -> Callable[[jax.Array, LatentGoal], LatentRun]:
    """A jit-compiled function (z0 (restarts, latent), goal) -> LatentRun.

    decode: z (latent,) -> structure (atoms, dims); objective: structure -> scalar;
    log_density: z -> log p(z). steps must be a multiple of record_every.
    """
    if steps < 1 or record_every < 1 or steps % record_every:
        raise ValueError("steps must be a positive multiple of record_every")
    optimizer = optax.adam(learning_rate)

    def measure(z):
        return objective(decode(z)), log_density(z)

    def loss(z, goal: LatentGoal):
        value, density = measure(z)
        aim = jnp.where(
            goal.has_target,
            ((value - goal.target) / goal.scale) ** 2,
            goal.sign * value / goal.scale,
        )
        penalty = goal.trust_weight * jax.nn.relu(goal.threshold - density) ** 2
        return aim + penalty, (value, density)

    batched = jax.vmap(jax.value_and_grad(loss, has_aux=True), in_axes=(0, None))

    def step(carry, _, goal):
        z, state = carry
        (_, (value, density)), grad = batched(z, goal)
        updates, state = optimizer.update(grad, state, z)
        return (optax.apply_updates(z, updates), state), (value, density)

    @jax.jit
    def run(z0: jax.Array, goal: LatentGoal) -> LatentRun:
        def block(carry, _):
            carry, (value, density) = jax.lax.scan(
                lambda c, x: step(c, x, goal), carry, None, length=record_every
            )
            return carry, (carry[0], value, density)

        (z, _), (path, value, density) = jax.lax.scan(
            block, (z0, optimizer.init(z0)), None, length=steps // record_every
        )
        return LatentRun(
            z=z,
            path=jnp.concatenate([z0[None], path]),
            value=value.reshape(steps, -1),
            log_density=density.reshape(steps, -1),
        )

    return run
