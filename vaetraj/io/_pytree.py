"""Pytrees of arrays in HDF5 groups, one dataset per leaf named by its path
("encoder/0/w"); restored onto a template pytree of the same structure. No pickle."""

from __future__ import annotations

from typing import Any

import h5py
import jax
import numpy as np


def _leaf_name(path) -> str:
    parts = []
    for key in path:
        if isinstance(key, jax.tree_util.DictKey):
            parts.append(str(key.key))
        elif isinstance(key, jax.tree_util.SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, jax.tree_util.GetAttrKey):
            parts.append(key.name)
        else:  # FlattenedIndexKey
            parts.append(str(key.key))
    return "/".join(parts) or "value"


def flatten_named(tree) -> dict[str, np.ndarray]:
    """{"encoder/0/w": array, ...} in the tree's leaf order."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    named = {}
    for path, leaf in leaves:
        name = _leaf_name(path)
        if name in named:
            raise ValueError(f"two pytree leaves share the name '{name}'")
        named[name] = np.asarray(leaf)
    return named


def write_pytree(group: h5py.Group, tree) -> None:
    for name, leaf in flatten_named(tree).items():
        group.create_dataset(name, data=leaf)


def read_pytree(group: h5py.Group, template: Any) -> tuple[Any, list[str]]:
    """The template's structure filled with the group's datasets. Returns the tree and
    the names that are missing or of the wrong shape or dtype (an empty list: all well)."""
    paths, treedef = jax.tree_util.tree_flatten_with_path(template)
    leaves, problems = [], []
    for path, like in paths:
        name = _leaf_name(path)
        like = np.asarray(like)
        if name not in group or not isinstance(group[name], h5py.Dataset):
            problems.append(f"{group.name.rstrip('/')}/{name} missing")
            leaves.append(like)
            continue
        value = group[name][()]
        if value.shape != like.shape or value.dtype != like.dtype:
            problems.append(
                f"{group.name.rstrip('/')}/{name} is {value.dtype}{list(value.shape)}, "
                f"expected {like.dtype}{list(like.shape)}"
            )
            leaves.append(like)
            continue
        leaves.append(value)
    return jax.tree_util.tree_unflatten(treedef, leaves), problems
