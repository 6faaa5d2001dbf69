"""Shared fixtures and numerics guards for the test suite."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture(scope="session", autouse=True)
def _compilation_cache(tmp_path_factory):
    """XLA's compiled programs kept for the session (JAX's persistent compilation
    cache, in a fresh folder): many tests train or encode the same shapes, and each
    `train` builds new functions, which jit's in-memory cache cannot match (about 65
    compilations, 5 s, per small training run)."""
    folder = tmp_path_factory.mktemp("xla-cache")
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    yield folder
    jax.config.update("jax_compilation_cache_dir", None)


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if os.environ.get("VAETRAJ_SHARED_DATA"):
    SHARED_DATA = Path(os.environ["VAETRAJ_SHARED_DATA"])


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """The built-in polymer is cached once per test session, never in the user's home."""
    cache = tmp_path_factory.mktemp("vaetraj-cache")
    old = os.environ.get("VAETRAJ_CACHE_DIR")
    os.environ["VAETRAJ_CACHE_DIR"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("VAETRAJ_CACHE_DIR", None)
    else:
        os.environ["VAETRAJ_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def polymer_2d() -> np.ndarray:
    """A short built-in polymer trajectory (frames, 12, 2), made by our own simulator."""
    from vaetraj import PolymerConfig, simulate_polymer

    return simulate_polymer(PolymerConfig(frames=400, stride=100, equilibration=5000), seed=1)


@pytest.fixture(scope="session")
def polymer_3d() -> np.ndarray:
    from vaetraj import PolymerConfig, simulate_polymer

    return simulate_polymer(
        PolymerConfig(dim=3, frames=300, stride=100, equilibration=5000), seed=2
    )


@pytest.fixture(scope="session")
def polymer_files(tmp_path_factory, polymer_3d):
    """A 3D polymer as PDB topology + DCD + XTC (coordinates read as nm by mdtraj)."""
    import mdtraj as md

    from vaetraj.io.topology import polymer_topology

    folder = tmp_path_factory.mktemp("polymer-files")
    trajectory = md.Trajectory(polymer_3d.astype(np.float32), polymer_topology(polymer_3d.shape[1]))
    trajectory[0].save_pdb(str(folder / "polymer.pdb"))
    trajectory.save_dcd(str(folder / "polymer.dcd"))
    trajectory.save_xtc(str(folder / "polymer.xtc"))
    return folder


def vaetraj_argv(*args) -> list[str]:
    """The installed program's command line (`python -m vaetraj ARGS`), for tests that
    need a process of their own: signals, kills, os._exit, click's own error handling."""
    import sys

    return [sys.executable, "-m", "vaetraj", *map(str, args)]


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return path


def random_rotation(rng: np.random.Generator, dims: int) -> np.ndarray:
    """A uniformly random proper rotation (det +1)."""
    q, r = np.linalg.qr(rng.normal(size=(dims, dims)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


@pytest.fixture(scope="session")
def model_2d(tmp_path_factory, polymer_2d) -> Path:
    """A quickly trained model file of the 2D polymer (principal alignment)."""
    from vaetraj import ModelConfig, TrainConfig, train_file

    folder = tmp_path_factory.mktemp("model-2d")
    np.savez(folder / "polymer.npz", arr=polymer_2d)
    train_file(
        [folder / "polymer.npz"],
        folder / "model.h5",
        ModelConfig(features=None, latent_dim=2, hidden=64),
        TrainConfig(epochs=80, batch_size=64, checkpoint_every=0),
    )
    return folder / "model.h5"


@pytest.fixture(scope="session")
def model_3d(tmp_path_factory, polymer_files) -> Path:
    """A quickly trained model of the 3D polymer files (PDB + DCD, kabsch alignment)."""
    from vaetraj import AlignConfig, ModelConfig, ReadOptions, TrainConfig, train_file

    folder = tmp_path_factory.mktemp("model-3d")
    train_file(
        [polymer_files / "polymer.dcd"],
        folder / "model.h5",
        ModelConfig(features=None, latent_dim=2, hidden=64),
        TrainConfig(epochs=150, batch_size=64, checkpoint_every=0),
        align_config=AlignConfig(method="kabsch"),
        read_options=ReadOptions(top=polymer_files / "polymer.pdb"),
    )
    return folder / "model.h5"


def run(*args: object):
    """`vaetraj ARGS...` in this process (typer's CliRunner); returns its Result."""
    from typer.testing import CliRunner

    from vaetraj.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_error(result, code: int, *fragments: str) -> None:
    """The command failed with exit `code` and one line on stderr, `error: ...`, that
    holds every fragment (no traceback)."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
