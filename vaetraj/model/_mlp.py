"""A plain MLP as a list of {"w", "b"} layers; weights are (inputs, outputs)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_ACTIVATIONS = {
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
    "elu": jax.nn.elu,
}


def init_mlp(sizes: list[int], activation: str, *, key: jax.Array) -> list[dict[str, jax.Array]]:
    """He-normal weights for ReLU-like activations, Glorot-normal for tanh, zero biases.

    The textbook draws every weight from N(0, 0.1^2); scaling by fan-in keeps the
    activations' variance constant through the layers, so wide layers train from step
    one instead of first undoing a badly scaled start.
    """
    layers = []
    for fan_in, fan_out, layer_key in zip(
        sizes[:-1], sizes[1:], jax.random.split(key, len(sizes) - 1), strict=True
    ):
        if activation == "tanh":
            std = math.sqrt(2.0 / (fan_in + fan_out))
        else:
            std = math.sqrt(2.0 / fan_in)
        layers.append(
            {
                "w": std * jax.random.normal(layer_key, (fan_in, fan_out), jnp.float32),
                "b": jnp.zeros((fan_out,), jnp.float32),
            }
        )
    return layers


def apply_mlp(layers: list[dict[str, jax.Array]], x: jax.Array, activation: str) -> jax.Array:
    """x (inputs,) -> (outputs,); the activation between layers, none after the last."""
    act = _ACTIVATIONS[activation]
    for layer in layers[:-1]:
        x = act(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]
