"""Traced programs kept on disk (`vaetraj._programs`, issue 34): a later process loads
the program instead of tracing it, with the same results; a damaged file, a new setting
or new shapes trace again; the folder stays within its bound; off, nothing is kept."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaetraj import _cache, _programs


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setitem(_cache._PROGRAMS, "folder", tmp_path / "programs")
    monkeypatch.setitem(_cache._PROGRAMS, "limit", 10_000_000)
    monkeypatch.setattr(_programs, "_loaded", {})
    return tmp_path / "programs"


def _counted(scale: float):
    """A program and a count of how often Python traced it."""
    traced = {"count": 0}

    def program(x, pair, *, key):
        traced["count"] += 1
        noise = jax.random.normal(key, x.shape)
        return {"sum": jnp.sum(x * scale + noise), "pair": (pair[0] @ pair[1], x.T)}

    return program, traced


def _arguments():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3)).astype(np.float32)
    pair = (jnp.ones((3, 4)), np.eye(4, dtype=np.float32))
    return x, pair, jax.random.key(7)


def _assert_same(a, b):
    for left, right in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))


def test_a_later_process_loads_instead_of_tracing(folder, monkeypatch):
    function, traced = _counted(2.0)
    x, pair, key = _arguments()
    plain = jax.jit(function)(x, pair, key=key)
    wrapped = _programs.kept("probe", function, static=2.0)
    first = wrapped(x, pair, key=key)
    assert traced["count"] == 2  # the plain call, then the export
    assert len(list(folder.glob("probe-*.program"))) == 1
    _assert_same(plain, first)
    monkeypatch.setattr(_programs, "_loaded", {})  # as a new process: only the disk
    again = _programs.kept("probe", function, static=2.0)
    _assert_same(plain, again(x, pair, key=key))
    assert traced["count"] == 2


def test_a_damaged_file_new_settings_or_shapes_trace_again(folder, monkeypatch):
    function, traced = _counted(3.0)
    x, pair, key = _arguments()
    wrapped = _programs.kept("probe", function, static=3.0)
    expected = wrapped(x, pair, key=key)
    assert traced["count"] == 1
    (path,) = folder.glob("probe-*.program")
    path.write_bytes(b"not a program")
    monkeypatch.setattr(_programs, "_loaded", {})
    _assert_same(expected, wrapped(x, pair, key=key))
    assert traced["count"] == 2
    monkeypatch.setattr(_programs, "_loaded", {})
    _assert_same(expected, wrapped(x, pair, key=key))  # rewritten whole: loads
    assert traced["count"] == 2
    _programs.kept("probe", function, static=4.0)(x, pair, key=key)
    _programs.kept("probe", function, static=3.0)(np.ones((6, 3), np.float32), pair, key=key)
    assert traced["count"] == 4 and len(list(folder.glob("probe-*.program"))) == 3


def test_off_and_python_numbers_are_plain_calls(tmp_path, monkeypatch):
    monkeypatch.setitem(_cache._PROGRAMS, "folder", None)
    function, traced = _counted(1.0)
    x, pair, key = _arguments()
    _programs.kept("probe", function)(x, pair, key=key)
    assert not (tmp_path / "programs").exists()
    monkeypatch.setitem(_cache._PROGRAMS, "folder", tmp_path / "programs")

    @jax.jit
    def scaled(x, factor):
        return x * factor

    result = _programs.kept("scaled", scaled)(x, 2.5)  # a weakly typed number: jit's
    np.testing.assert_array_equal(np.asarray(result), x * 2.5)
    assert not (tmp_path / "programs").exists()
    # a program that cannot be exported (a host callback) is tried once, then jit's
    traced = {"count": 0}

    def printing(x):
        traced["count"] += 1
        jax.debug.callback(lambda value: None, x)
        return x + 1

    wrapped = _programs.kept("printing", printing)
    for _ in range(3):
        np.testing.assert_array_equal(np.asarray(wrapped(x)), x + 1)
    assert traced["count"] == 4  # the one failed export's trace, then 3 plain calls
    assert not list((tmp_path / "programs").glob("printing-*"))


def test_the_folder_stays_within_its_bound(folder, monkeypatch):
    x, pair, key = _arguments()
    _programs.kept("probe", _counted(1.0)[0], static=1.0)(x, pair, key=key)
    (one,) = folder.glob("*.program")
    size = one.stat().st_size
    monkeypatch.setitem(_cache._PROGRAMS, "limit", int(2.5 * size))
    for scale in (2.0, 3.0, 4.0, 5.0):
        _programs.kept("probe", _counted(scale)[0], static=scale)(x, pair, key=key)
    kept = list(folder.glob("*.program"))
    assert len(kept) == 2
    assert sum(path.stat().st_size for path in kept) <= 2.5 * size
