"""Synthetic trajectories with a known structure, quick to make, in the shapes that
broke training with the old defaults: hundreds of atoms and a hundred frames, one slow
path through them (issue 11's cases 1-3)."""

from __future__ import annotations

import numpy as np

BOND = 0.38  # nm, C-alpha to C-alpha


def random_chain(rng: np.random.Generator, atoms: int, bond: float = BOND) -> np.ndarray:
    """A freely jointed chain (atoms, 3) with bonds of length `bond`."""
    steps = rng.normal(size=(atoms - 1, 3))
    steps *= bond / np.linalg.norm(steps, axis=1, keepdims=True)
    return np.concatenate([np.zeros((1, 3)), np.cumsum(steps, axis=0)])


def rouse_path(
    atoms: int = 214, frames: int = 98, *, modes: int = 4, memory: float = 40.0, seed: int = 0
) -> np.ndarray:
    """A chain fluctuating in its slowest Rouse modes (amplitude 1/p for mode p, each an
    Ornstein-Uhlenbeck process remembering `memory` frames), plus 0.02 nm of noise: a
    short stretch of a large chain's dynamics (frames, atoms, 3)."""
    rng = np.random.default_rng(seed)
    chain = random_chain(rng, atoms)
    index = np.arange(atoms)
    keep = np.exp(-1.0 / memory)
    coefficients = np.zeros((frames, modes))
    coefficients[0] = rng.normal(size=modes)
    for t in range(1, frames):
        coefficients[t] = keep * coefficients[t - 1] + np.sqrt(1 - keep**2) * rng.normal(size=modes)
    xyz = np.repeat(chain[None], frames, axis=0)
    scale = BOND * np.sqrt(atoms)
    for p in range(1, modes + 1):
        shape = np.cos(p * np.pi * (index + 0.5) / atoms)[:, None] * rng.normal(size=3)
        xyz += (scale / p) * coefficients[:, p - 1, None, None] * shape[None]
    return (xyz + rng.normal(scale=0.02, size=xyz.shape)).astype(np.float32)


def two_state_path(
    atoms: int = 214, frames: int = 98, *, noise: float = 0.05, seed: int = 0
) -> np.ndarray:
    """Frames interpolated from one chain conformation to another, plus noise: a
    transition whose only slow coordinate is the frame index (frames, atoms, 3)."""
    rng = np.random.default_rng(seed)
    start, end = random_chain(rng, atoms), random_chain(rng, atoms)
    s = np.linspace(0.0, 1.0, frames)[:, None, None]
    xyz = (1 - s) * start + s * end + rng.normal(scale=noise, size=(frames, atoms, 3))
    return xyz.astype(np.float32)


def hinge_path(
    atoms: int = 214, frames: int = 98, *, angle_deg: float = 60.0, seed: int = 0
) -> np.ndarray:
    """A two-domain protein opening: the second half of a compact chain turns about a
    hinge at its middle by up to `angle_deg`, with 0.05 nm thermal noise, as in a
    closed-to-open transition (frames, atoms, 3)."""
    rng = np.random.default_rng(seed)
    chain = random_chain(rng, atoms)
    chain = chain - chain.mean(axis=0)
    hinge = chain[atoms // 2]
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    xyz = np.empty((frames, atoms, 3))
    for t, angle in enumerate(np.radians(np.linspace(0.0, angle_deg, frames))):
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        rotation = np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k
        xyz[t, : atoms // 2] = chain[: atoms // 2]
        xyz[t, atoms // 2 :] = (chain[atoms // 2 :] - hinge) @ rotation.T + hinge
    return (xyz + rng.normal(scale=0.05, size=xyz.shape)).astype(np.float32)
