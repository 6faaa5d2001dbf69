"""One epoch of VAE training as one jit-compiled function.

`make_trainer` returns (init, run_epoch, evaluate) over a `TrainState`, in the shape of
optax's GradientTransformation: hyperparameters are closed over, state is a NamedTuple.
An epoch is a `lax.scan` over its batches; the ragged last batch is padded and masked,
so every epoch has the same shapes and compiles once. With a `jax.sharding.Mesh` the
batch axis is sharded over its devices and the parameters are replicated: data
parallelism that XLA turns into a gradient all-reduce.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vaetraj.model import ModelConfig, compute_loss_terms, init_vae
from vaetraj.train._config import TrainConfig


class TrainState(NamedTuple):
    params: dict
    opt_state: optax.OptState
    epoch: jax.Array  # () int32: epochs completed


class EpochMetrics(NamedTuple):
    """Frame-weighted means over an epoch; bad_step is the first step (0-based, within
    the epoch) whose loss or gradient was not finite, or -1. From that step on no update
    is applied, so the returned parameters are the last good ones."""

    loss: jax.Array
    reconstruction: jax.Array
    kl: jax.Array  # (latent,)
    bad_step: jax.Array


class Trainer(NamedTuple):
    init: object
    run_epoch: object
    evaluate: object
    batches_per_epoch: int


def _weighted_terms(params, batch, mask, noise, beta, model_config):
    terms = jax.vmap(compute_loss_terms, in_axes=(None, 0, 0, None))(
        params, batch, noise, model_config
    )
    weights = mask / jnp.sum(mask)
    reconstruction = weights @ terms.reconstruction
    kl = weights @ terms.kl
    return reconstruction + beta * jnp.sum(kl), (reconstruction, kl)


def make_trainer(
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    frames: int,
    mesh: Mesh | None = None,
) -> Trainer:
    """A trainer for a training set of `frames` frames. With `mesh` (one axis named
    "batch"), batches are padded to a multiple of its size and sharded over it."""
    batch_size = min(train_config.batch_size, frames)
    batches = math.ceil(frames / batch_size)
    shards = 1 if mesh is None else mesh.size
    rows = math.ceil(batch_size / shards) * shards
    optimizer = train_config.make_optimizer(batches)
    samples = train_config.samples
    batch_sharding = None if mesh is None else NamedSharding(mesh, PartitionSpec("batch"))

    def init(*, key: jax.Array) -> TrainState:
        params = init_vae(model_config, key=key)
        return TrainState(params, optimizer.init(params), jnp.array(0, jnp.int32))

    def _batch_layout(key):
        order = jax.random.permutation(key, frames)
        flat = jnp.zeros(batches * batch_size, jnp.int32).at[:frames].set(order)
        valid = (jnp.arange(batches * batch_size) < frames).astype(jnp.float32)
        index = flat.reshape(batches, batch_size)
        mask = valid.reshape(batches, batch_size)
        if rows > batch_size:
            index = jnp.pad(index, ((0, 0), (0, rows - batch_size)))
            mask = jnp.pad(mask, ((0, 0), (0, rows - batch_size)))
        return index, mask

    def _apply_update(operands):
        grads, params, opt_state = operands
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    def _skip_update(operands):
        _, params, opt_state = operands
        return params, opt_state

    @jax.jit
    def run_epoch(
        state: TrainState, data: jax.Array, beta: jax.Array, *, key: jax.Array
    ) -> tuple[TrainState, EpochMetrics]:
        """data (frames, features), normalized; key is the run's key, folded with the
        epoch number here so a resumed run draws exactly what an unbroken one would."""
        epoch_key = jax.random.fold_in(key, state.epoch)
        order_key, steps_key = jax.random.split(epoch_key)
        index, mask = _batch_layout(order_key)
        step_keys = jax.random.split(steps_key, batches)

        def step(carry, inputs):
            params, opt_state, bad_step = carry
            batch_index, batch_mask, step_key, i = inputs
            batch = data[batch_index]
            if batch_sharding is not None:
                batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
            noise = jax.random.normal(step_key, (rows, samples, model_config.latent_dim))
            (loss, (reconstruction, kl)), grads = jax.value_and_grad(_weighted_terms, has_aux=True)(
                params, batch, batch_mask, noise, beta, model_config
            )
            # A finite squared norm means every gradient entry is finite (and not huge).
            good = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads, squared=True))
            params, opt_state = jax.lax.cond(
                good & (bad_step < 0), _apply_update, _skip_update, (grads, params, opt_state)
            )
            bad_step = jnp.where(~good & (bad_step < 0), i, bad_step)
            count = jnp.sum(batch_mask)
            return (params, opt_state, bad_step), (loss * count, reconstruction * count, kl * count)

        (params, opt_state, bad_step), (loss, reconstruction, kl) = jax.lax.scan(
            step,
            (state.params, state.opt_state, jnp.array(-1, jnp.int32)),
            (index, mask, step_keys, jnp.arange(batches, dtype=jnp.int32)),
        )
        metrics = EpochMetrics(
            jnp.sum(loss) / frames,
            jnp.sum(reconstruction) / frames,
            jnp.sum(kl, axis=0) / frames,
            bad_step,
        )
        return TrainState(params, opt_state, state.epoch + 1), metrics

    @jax.jit
    def evaluate(params: dict, data: jax.Array, beta: jax.Array, *, key: jax.Array) -> EpochMetrics:
        """The loss terms on data (frames, features) with fixed draws from `key`, in
        chunks so memory stays bounded."""
        noise = jax.random.normal(key, (data.shape[0], samples, model_config.latent_dim))

        def one(inputs):
            return compute_loss_terms(params, *inputs, model_config)

        terms = jax.lax.map(one, (data, noise), batch_size=4096)
        reconstruction = jnp.mean(terms.reconstruction)
        kl = jnp.mean(terms.kl, axis=0)
        return EpochMetrics(
            reconstruction + beta * jnp.sum(kl), reconstruction, kl, jnp.array(-1, jnp.int32)
        )

    return Trainer(init, run_epoch, evaluate, batches)
