"""Host values onto the device without compiling: `jnp.asarray` of a NumPy array runs a
small compiled program for each shape and dtype it meets (a command that loads a model
met dozens), where `jax.device_put` copies (on the CPU, often shares) the buffer. 64-bit
values become 32-bit, as JAX keeps them."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def to_device(value: Any, dtype: Any = None, sharding: Any = None) -> jax.Array:
    """One array (or nested lists or a number) as a device array of `dtype` (None: its
    own), on the default device or laid out by `sharding`."""
    return jax.device_put(np.asarray(value, dtype), sharding)


def tree_to_device(tree: Any) -> Any:
    """A pytree of arrays (a network's parameters) as device arrays."""
    return jax.device_put(jax.tree.map(np.asarray, tree))
