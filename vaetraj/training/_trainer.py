"""One epoch of VAE training as one jit-compiled function.

`make_trainer` returns (init, run_epoch, evaluate) over a `TrainState`, in the shape of
optax's GradientTransformation: hyperparameters are closed over, state is a NamedTuple.
An epoch is a `lax.scan` over its batches; the ragged last batch is padded and masked,
so every epoch has the same shapes and compiles once. With a `jax.sharding.Mesh` the
batch axis is sharded over its devices and the parameters are replicated: data
parallelism in which each device sums its rows' gradients and one all-reduce a step
adds up all of them (`_summed_gradients`).

The epoch also watches for divergence: a step whose loss or gradient is not finite, or
a reconstruction error that stays far above the lowest level the run has reached for
SPIKE_STEPS steps in a row, stops the updates and is reported in `EpochMetrics`, so
that the caller can roll back to a good state and lower `TrainState.lr_scale`.
Measuring against the lowest level (not the recent one) catches an error that climbs
over many steps as well as a sudden jump. The squared error of the decoder's mean is
watched, not the loss: it is positive and 0 at best for every likelihood (a Gaussian
with a small or learned std has a log-likelihood with an arbitrary offset, which no
ratio can judge), and a KL warm-up does not raise it on purpose.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from vaetraj._device import to_device
from vaetraj.configs import TrainConfig
from vaetraj.model import ModelConfig, compute_loss_terms, init_vae, normalize
from vaetraj.training._optimizer import make_optimizer

# A squared error above floor + SPIKE_FACTOR * (floor + spread) is far out of line: about
# 4x the lowest running level, as when a trained network dies back to the mean structure. SPIKE_STEPS such steps in a row are a spike (one batch of
# unusual frames is not). LEVEL_DECAY: per step, of the running level and spread.
SPIKE_FACTOR = 3.0
SPIKE_STEPS = 3
LEVEL_DECAY = 0.95
NON_FINITE, SPIKE = 1, 2  # EpochMetrics.bad_kind


class TrainState(NamedTuple):
    """params and opt_state; epoch () int32, epochs completed; lr_scale () float32, the
    factor on every update (the divergence guard lowers it); loss_level, loss_spread ()
    float32, running mean and mean absolute deviation of the per-frame squared error of
    the batches (nan before the first step); loss_floor () float32, the lowest
    loss_level so far; over () int32, steps in a row far above the floor."""

    params: dict
    opt_state: optax.OptState
    epoch: jax.Array
    lr_scale: jax.Array
    loss_level: jax.Array
    loss_spread: jax.Array
    loss_floor: jax.Array
    over: jax.Array


class EpochMetrics(NamedTuple):
    """Frame-weighted means over an epoch. bad_step is the step (0-based, within the
    epoch) at which the loss or gradient was not finite (bad_kind NON_FINITE) or a loss
    spike began (SPIKE), else -1; from then on no update is applied. high_steps counts
    the steps far above the floor (an epoch with none is clean)."""

    loss: jax.Array
    reconstruction: jax.Array
    kl: jax.Array  # (latent,)
    bad_step: jax.Array
    bad_kind: jax.Array
    high_steps: jax.Array


class Frames(NamedTuple):
    """A training or validation set as the trainer reads it: `rows` of a frame table
    (rows, features), the rows in the set (`members`; None: every row) and the per-feature
    `shift` and `scale` that normalize them (None: as they are). Batches are gathered and
    normalized inside the compiled epoch, so the data are held once, raw, whatever the
    split (no normalized copy of the training frames beside the data).

    `targets`: for a time-lagged model, the row each member's reconstruction is scored
    against (the frame `lag` later; see `lagged_pairs`); None: the member itself."""

    rows: jax.Array
    members: jax.Array | None = None
    shift: jax.Array | np.ndarray | None = None
    scale: jax.Array | np.ndarray | None = None
    targets: jax.Array | None = None

    @property
    def size(self) -> int:
        return len(self.rows) if self.members is None else len(self.members)

    def take(self, positions: jax.Array) -> jax.Array:
        """The normalized frames at `positions` (0 to size - 1) of the set."""
        return self._normalized(
            self.rows[positions if self.members is None else self.members[positions]]
        )

    def take_targets(self, positions: jax.Array) -> jax.Array:
        """What the reconstructions of the frames at `positions` are scored against:
        the normalized frames `lag` later, or the frames themselves."""
        if self.targets is None:
            return self.take(positions)
        return self._normalized(self.rows[self.targets[positions]])

    def _normalized(self, rows: jax.Array) -> jax.Array:
        if self.shift is not None and self.scale is not None:
            shape = (1,) * (rows.ndim - 1) + (-1,)
            rows = normalize(rows, jnp.reshape(self.shift, shape), jnp.reshape(self.scale, shape))
        return rows


def place_rows(table: np.ndarray, sharding: NamedSharding | None = None) -> jax.Array:
    """A table (rows, features) as a float32 device array. On the CPU, JAX takes a
    float32 C-contiguous table that starts on a 64-byte boundary
    (`vaetraj._memory.empty_aligned`, as `read_aligned` gives) without a copy: the
    device array shares the host's memory, which must not change while it is in use.
    Elsewhere it is copied."""
    return to_device(table, np.float32, sharding)


def as_frames(data: Frames | jax.Array) -> Frames:
    """`data` as a `Frames`: an array is a whole set, already normalized."""
    return data if isinstance(data, Frames) else Frames(data)


class Trainer(NamedTuple):
    """What `make_trainer` returns: init(key=) -> TrainState; run_epoch(state, data,
    beta, key=) -> (TrainState, EpochMetrics); evaluate(params, data, beta, key=) ->
    EpochMetrics; and the batches in an epoch. `data` is a normalized array
    (frames, features) or a `Frames`."""

    init: Callable[..., TrainState]
    run_epoch: Callable[..., tuple[TrainState, EpochMetrics]]
    evaluate: Callable[..., EpochMetrics]
    batches_per_epoch: int
    # the same epoch fed from the host a window of batches at a time (streaming):
    # start(state, key) -> (carry, order_key, step_keys); run_window(carry, block,
    # masks, step_keys, steps, beta, lr_scale, shift, scale) -> (carry, sums);
    # finish(state, carry, sums) -> (TrainState, EpochMetrics). See `run_streamed_epoch`.
    start: Callable[..., tuple]
    run_window: Callable[..., tuple]
    finish: Callable[..., tuple[TrainState, EpochMetrics]]
    rows: int  # a batch's rows: the batch size padded to a multiple of the devices
    latent: int  # the latent units (the length of EpochMetrics.kl)


def compute_layer_rates(model_config: ModelConfig, train_config: TrainConfig) -> dict:
    """Factors on each parameter's rate, a pytree like the parameters. "fan-in": the
    first encoder layer's weights get min(1, hidden / features). With Adam a step moves
    every weight by about the rate, so it moves a unit's input by the rate times the sum
    of |inputs|: hundreds of features would move the first layer's units many times
    further than a hidden layer's, and kill them."""
    params = jax.eval_shape(lambda: init_vae(model_config, key=jax.random.key(0)))
    rates = jax.tree.map(lambda _: 1.0, params)
    if train_config.lr_scaling == "fan-in":
        assert model_config.features is not None
        rates["encoder"][0]["w"] = min(1.0, model_config.hidden / model_config.features)
    return rates


def _update_level(level, spread, loss):
    first = jnp.isnan(level)
    new_level = jnp.where(first, loss, LEVEL_DECAY * level + (1 - LEVEL_DECAY) * loss)
    deviation = jnp.abs(loss - jnp.where(first, loss, level))
    new_spread = jnp.where(first, 0.0, LEVEL_DECAY * spread + (1 - LEVEL_DECAY) * deviation)
    return new_level, new_spread


def _weighted_terms(params, batch, seen, weights, noise, beta, model_config):
    """The loss and its terms (reconstruction, KL per unit, squared error) of a batch,
    each frame's weighted by `weights`: the mask over its count (the means), or the mask
    itself (the sums that a sharded step adds up across devices)."""

    def terms_of(x, x_seen, eps):
        return compute_loss_terms(params, x, eps, model_config, seen=x_seen)

    terms = jax.vmap(terms_of)(batch, seen, noise)
    reconstruction = weights @ terms.reconstruction
    kl = weights @ terms.kl
    return reconstruction + beta * jnp.sum(kl), (reconstruction, kl, weights @ terms.squared_error)


@dataclass(frozen=True)
class _Plan:
    """What an epoch's shapes and updates are fixed by (closed over, not traced)."""

    model_config: ModelConfig
    optimizer: optax.GradientTransformation
    frames: int
    batch_size: int
    batches: int
    rows: int  # batch_size padded to a multiple of the devices
    samples: int
    input_noise: jax.Array | None  # (features,) the corruption's std; None: no noise
    batch_sharding: NamedSharding | None


class _Carry(NamedTuple):
    """The scan's state from step to step of an epoch."""

    params: dict
    opt_state: optax.OptState
    level: jax.Array
    spread: jax.Array
    floor: jax.Array
    over: jax.Array
    bad_step: jax.Array
    bad_kind: jax.Array


def _init(plan: _Plan, *, key: jax.Array) -> TrainState:
    params = init_vae(plan.model_config, key=key)
    return TrainState(
        params,
        plan.optimizer.init(params),
        epoch=jnp.array(0, jnp.int32),
        lr_scale=jnp.array(1.0, jnp.float32),
        loss_level=jnp.array(jnp.nan, jnp.float32),
        loss_spread=jnp.array(0.0, jnp.float32),
        loss_floor=jnp.array(jnp.nan, jnp.float32),
        over=jnp.array(0, jnp.int32),
    )


def _batch_layout(plan: _Plan, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Frame indices and mask (batches, rows) of a shuffled epoch; padding is masked."""
    frames, batches, batch_size = plan.frames, plan.batches, plan.batch_size
    order = jax.random.permutation(key, frames)
    flat = jnp.zeros(batches * batch_size, jnp.int32).at[:frames].set(order)
    valid = (jnp.arange(batches * batch_size) < frames).astype(jnp.float32)
    index = flat.reshape(batches, batch_size)
    mask = valid.reshape(batches, batch_size)
    if plan.rows > batch_size:
        index = jnp.pad(index, ((0, 0), (0, plan.rows - batch_size)))
        mask = jnp.pad(mask, ((0, 0), (0, plan.rows - batch_size)))
    return index, mask


def _draws(plan: _Plan, batch: jax.Array, key) -> tuple[jax.Array, jax.Array]:
    """What the encoder sees (the batch corrupted by input noise, or the batch) and the
    reparameterization noise (rows, samples, latent) of one step."""
    noise_key, input_key = jax.random.split(key)
    noise = jax.random.normal(noise_key, (plan.rows, plan.samples, plan.model_config.size[1]))
    seen = batch
    if plan.input_noise is not None:
        corruption = jax.random.normal(input_key, batch.shape)
        seen = batch + jnp.reshape(plan.input_noise, (1, -1)) * corruption
    return seen, noise


def _gradients(
    plan: _Plan, params: dict, batch: jax.Array, target: jax.Array, mask: jax.Array, key, beta
):
    """The loss, its terms and its gradient on one batch (the encoder sees the batch
    corrupted by input noise; the loss scores the clean `target`: the batch itself, or
    its frames `lag` later)."""
    seen, noise = _draws(plan, batch, key)
    return jax.value_and_grad(_weighted_terms, has_aux=True)(
        params, target, seen, mask / jnp.sum(mask), noise, beta, plan.model_config
    )


def _summed_gradients(
    plan: _Plan, params: dict, batch: jax.Array, target: jax.Array, mask: jax.Array, key, beta
):
    """What `_gradients` gives, over a mesh: each device takes the gradient of the sums
    over its rows of the batch, and one all-reduce adds up every gradient array, the
    sums and the frame count together (XLA would make one per array, and on the CPU
    each is a gloo round trip). Also returns the batch's frame count."""
    seen, noise = _draws(plan, batch, key)
    mesh = plan.batch_sharding.mesh  # type: ignore[union-attr]
    rows, replicated = PartitionSpec("batch"), PartitionSpec()

    def local(params, target, seen, mask, noise, beta):
        (loss, (reconstruction, kl, error)), grads = jax.value_and_grad(
            _weighted_terms, has_aux=True
        )(params, target, seen, mask, noise, beta, plan.model_config)
        flat, unravel = ravel_pytree(grads)
        head = jnp.stack([loss, reconstruction, error, jnp.sum(mask)])
        total = jax.lax.psum(jnp.concatenate([head, kl, flat]), "batch")  # the one all-reduce
        count = total[3]
        mean = total / jnp.maximum(count, 1.0)
        latent = kl.shape[0]
        return (
            (mean[0], (mean[1], mean[4 : 4 + latent], mean[2])),
            unravel(mean[4 + latent :]),
            count,
        )

    return jax.shard_map(
        local, mesh=mesh, check_vma=False,
        in_specs=(replicated, rows, rows, rows, rows, replicated), out_specs=replicated,
    )(params, target, seen, mask, noise, beta)  # fmt: skip


def _guarded_update(
    plan: _Plan, carry: _Carry, loss, error, grads, lr_scale, i
) -> tuple[_Carry, jax.Array]:
    """Apply the update unless the step is non-finite or ends a spike (then record the
    step and stop updating); track the running level of the squared error."""
    # A finite squared norm means every gradient entry is finite (and not huge).
    finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads, squared=True))
    high = error > carry.floor + SPIKE_FACTOR * (carry.floor + carry.spread)  # never while nan
    over = jnp.where(high, carry.over + 1, 0)
    healthy = carry.bad_step < 0
    spike = healthy & finite & (over >= SPIKE_STEPS)
    broken = healthy & ~finite

    def apply(operands):
        grads, params, opt_state, lr_scale = operands
        updates, opt_state = plan.optimizer.update(grads, opt_state, params)
        updates = jax.tree.map(lambda u: lr_scale * u, updates)
        return optax.apply_updates(params, updates), opt_state

    def skip(operands):
        return operands[1], operands[2]

    params, opt_state = jax.lax.cond(
        healthy & finite & ~spike, apply, skip, (grads, carry.params, carry.opt_state, lr_scale)
    )
    typical = healthy & finite & ~high
    level, spread = jax.tree.map(
        lambda new, old: jnp.where(typical, new, old),
        _update_level(carry.level, carry.spread, error),
        (carry.level, carry.spread),
    )
    floor = jnp.where(jnp.isnan(carry.floor), level, jnp.minimum(carry.floor, level))
    # a spike is dated to its first high step, or to step 0 when its run of high
    # steps began in the previous epoch
    began = jnp.maximum(i - SPIKE_STEPS + 1, 0)
    bad_step = jnp.where(broken, i, jnp.where(spike, began, carry.bad_step))
    bad_kind = jnp.where(broken, NON_FINITE, jnp.where(spike, SPIKE, carry.bad_kind))
    return _Carry(params, opt_state, level, spread, floor, over, bad_step, bad_kind), high


def _step(plan: _Plan, beta, lr_scale, carry: _Carry, batch, target, batch_mask, step_key, i):
    """One guarded step on a normalized batch (rows, features) scored against `target`
    (the same shape); returns the carry and the step's frame-weighted sums (loss,
    reconstruction, kl) and whether it was high."""
    if plan.batch_sharding is not None:
        return _sharded_step(plan, beta, lr_scale, carry, batch, target, batch_mask, step_key, i)
    (loss, (reconstruction, kl, error)), grads = _gradients(
        plan, carry.params, batch, target, batch_mask, step_key, beta
    )
    carry, high = _guarded_update(plan, carry, loss, error, grads, lr_scale, i)
    count = jnp.sum(batch_mask)
    return carry, (loss * count, reconstruction * count, kl * count, high)


def _sharded_step(
    plan: _Plan, beta, lr_scale, carry: _Carry, batch, target, batch_mask, step_key, i
):
    """`_step` over a mesh, with one all-reduce. A batch with no frames on any device
    (padding after a process's last batch of a streamed epoch) changes nothing."""
    batch, target, batch_mask = (
        jax.lax.with_sharding_constraint(x, plan.batch_sharding)
        for x in (batch, target, batch_mask)
    )
    (loss, (reconstruction, kl, error)), grads, count = _summed_gradients(
        plan, carry.params, batch, target, batch_mask, step_key, beta
    )
    updated, high = _guarded_update(plan, carry, loss, error, grads, lr_scale, i)
    live = count > 0
    carry = jax.tree.map(lambda new, old: jnp.where(live, new, old), updated, carry)
    return carry, (loss * count, reconstruction * count, kl * count, high & live)


def open_epoch(state: TrainState) -> _Carry:
    """The carry an epoch starts from."""
    return _Carry(
        state.params, state.opt_state, state.loss_level, state.loss_spread, state.loss_floor,
        state.over, jnp.array(-1, jnp.int32), jnp.array(0, jnp.int32),
    )  # fmt: skip


def close_epoch(
    plan: _Plan, state: TrainState, end: _Carry, sums: tuple
) -> tuple[TrainState, EpochMetrics]:
    """The state after an epoch and its metrics, from the end carry and the sums of
    (loss, reconstruction, kl) over its frames and the count of high steps."""
    loss, reconstruction, kl, high = sums
    frames = plan.frames
    metrics = EpochMetrics(
        loss / frames, reconstruction / frames, kl / frames, end.bad_step, end.bad_kind,
        jnp.asarray(high, jnp.int32),
    )  # fmt: skip
    new_state = TrainState(
        end.params, end.opt_state, state.epoch + 1, state.lr_scale, end.level, end.spread,
        end.floor, end.over,
    )  # fmt: skip
    return new_state, metrics


def epoch_keys(plan: _Plan, state: TrainState, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(the epoch's order key, its steps' keys (batches,)): `key` is the run's key,
    folded with the epoch number so a resumed run draws exactly what an unbroken one
    would."""
    order_key, steps_key = jax.random.split(jax.random.fold_in(key, state.epoch))
    return order_key, jax.random.split(steps_key, plan.batches)


def _run_epoch(
    plan: _Plan, state: TrainState, data: Frames | jax.Array, beta: jax.Array, *, key: jax.Array
) -> tuple[TrainState, EpochMetrics]:
    """One epoch over data, the `plan.frames` training frames, as one scan."""
    data = as_frames(data)
    order_key, step_keys = epoch_keys(plan, state, key)
    index, mask = _batch_layout(plan, order_key)

    def step(carry: _Carry, inputs):
        batch_index, batch_mask, step_key, i = inputs
        batch = data.take(batch_index)
        target = batch if data.targets is None else data.take_targets(batch_index)
        return _step(plan, beta, state.lr_scale, carry, batch, target, batch_mask, step_key, i)

    end, (loss, reconstruction, kl, high) = jax.lax.scan(
        step,
        open_epoch(state),
        (index, mask, step_keys, jnp.arange(plan.batches, dtype=jnp.int32)),
    )
    sums = (jnp.sum(loss), jnp.sum(reconstruction), jnp.sum(kl, axis=0), jnp.sum(high))
    return close_epoch(plan, state, end, sums)


def _start(plan: _Plan, state: TrainState, key: jax.Array) -> tuple:
    return (open_epoch(state), *epoch_keys(plan, state, key))


def _run_window(
    plan: _Plan, carry: _Carry, block, masks, step_keys, steps, beta, lr_scale, shift, scale
) -> tuple[_Carry, tuple]:
    """Steps on a window of batches from the host: block (steps, rows, features) of
    raw frames, normalized here by (shift, scale); masks (steps, rows). A step whose
    mask is empty (padding after the epoch's last batch) changes nothing."""

    def step(carry: _Carry, inputs):
        rows, mask, step_key, i = inputs
        batch = normalize(rows, shift[None], scale[None])

        def real(carry):
            return _step(plan, beta, lr_scale, carry, batch, batch, mask, step_key, i)

        if plan.batch_sharding is not None:  # the step itself skips an empty batch
            return real(carry)

        def skip(carry):
            zero = jnp.zeros((), jnp.float32)
            latent = plan.model_config.size[1]
            return carry, (zero, zero, jnp.zeros(latent, jnp.float32), jnp.array(False))

        return jax.lax.cond(jnp.sum(mask) > 0, real, skip, carry)

    end, (loss, reconstruction, kl, high) = jax.lax.scan(
        step, carry, (block, masks, step_keys, steps)
    )
    return end, (jnp.sum(loss), jnp.sum(reconstruction), jnp.sum(kl, axis=0), jnp.sum(high))


def _evaluate(
    plan: _Plan, params: dict, data: Frames | jax.Array, beta: jax.Array, *, key: jax.Array
) -> EpochMetrics:
    """The loss terms on every frame of data with fixed draws from `key`, in chunks
    so memory stays bounded."""
    data = as_frames(data)
    model_config = plan.model_config
    noise = jax.random.normal(key, (data.size, plan.samples, model_config.size[1]))

    def one(inputs):
        position, eps = inputs
        if data.targets is None:
            return compute_loss_terms(params, data.take(position), eps, model_config)
        return compute_loss_terms(
            params, data.take_targets(position), eps, model_config, seen=data.take(position)
        )

    positions = jnp.arange(data.size, dtype=jnp.int32)
    terms = jax.lax.map(one, (positions, noise), batch_size=4096)
    reconstruction = jnp.mean(terms.reconstruction)
    kl = jnp.mean(terms.kl, axis=0)
    none = jnp.array(-1, jnp.int32)
    return EpochMetrics(
        reconstruction + beta * jnp.sum(kl), reconstruction, kl, none, none, none + 1
    )


def make_trainer(
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    frames: int,
    mesh: Mesh | None = None,
    feature_std: np.ndarray | None = None,
) -> Trainer:
    """A trainer for a training set of `frames` frames.

    Args:
        model_config: the network (its `features` set).
        train_config: batch size, optimizer, samples and input noise.
        frames: the training frames an epoch runs over.
        mesh: a mesh with one axis named "batch": batches are padded to a multiple of
            its size and sharded over it.
        feature_std: (features,) the spread of each feature of the data it is given,
            the unit of `train_config.input_noise` (None: 1, standardized data).

    Returns:
        The trainer's jit-compiled init, run_epoch and evaluate.
    """
    batch_size = min(train_config.batch_size, frames)
    batches = math.ceil(frames / batch_size)
    shards = 1 if mesh is None else mesh.size
    features = model_config.features
    noise_unit = (
        jnp.ones(features, jnp.float32)
        if feature_std is None
        else jnp.asarray(feature_std, jnp.float32)
    )
    plan = _Plan(
        model_config=model_config,
        optimizer=make_optimizer(
            train_config, batches, layer_rates=compute_layer_rates(model_config, train_config)
        ),
        frames=frames,
        batch_size=batch_size,
        batches=batches,
        rows=math.ceil(batch_size / shards) * shards,
        samples=train_config.samples,
        input_noise=train_config.input_noise * noise_unit if train_config.input_noise > 0 else None,
        batch_sharding=None if mesh is None else NamedSharding(mesh, PartitionSpec("batch")),
    )
    return Trainer(
        functools.partial(_init, plan),
        jax.jit(functools.partial(_run_epoch, plan)),
        jax.jit(functools.partial(_evaluate, plan)),
        batches,
        jax.jit(functools.partial(_start, plan)),
        jax.jit(functools.partial(_run_window, plan)),
        jax.jit(functools.partial(close_epoch, plan)),
        plan.rows,
        model_config.size[1],
    )
