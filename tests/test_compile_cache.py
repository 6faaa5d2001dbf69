"""The program's persistent compilation cache (issue 34): where it is, how it is turned
off and bounded, and that a damaged cache, a full one or two commands writing it at once
change nothing a command gives, and never fail it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import vaetraj_argv

from vaetraj._cache import cache_folder, compile_cache_settings
from vaetraj.errors import UsageError


def test_settings_follow_the_environment(tmp_path):
    settings = compile_cache_settings({"VAETRAJ_CACHE_DIR": str(tmp_path)})
    assert settings is not None
    assert settings["jax_compilation_cache_dir"] == str(tmp_path / "jax")
    assert (tmp_path / "jax").is_dir()
    assert settings["jax_compilation_cache_max_size"] == 384_000_000  # a quarter: programs/
    assert settings["jax_persistent_cache_min_compile_time_secs"] == 0
    bounded = compile_cache_settings(
        {"VAETRAJ_CACHE_DIR": str(tmp_path), "VAETRAJ_CACHE_SIZE": "2GB"}
    )
    assert bounded is not None and bounded["jax_compilation_cache_max_size"] == 1_500_000_000
    # the XDG folder when no vaetraj folder is given
    xdg = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert cache_folder(xdg) == tmp_path / "xdg" / "vaetraj" / "jax"


def _no_home(cls):
    raise RuntimeError("Could not determine home directory.")


def test_off_when_asked_or_unwritable_or_the_user_has_a_jax_cache(tmp_path, monkeypatch):
    assert (
        compile_cache_settings({"VAETRAJ_CACHE_DIR": str(tmp_path), "VAETRAJ_NO_CACHE": "1"})
        is None
    )
    assert not (tmp_path / "jax").exists()
    own = {"VAETRAJ_CACHE_DIR": str(tmp_path), "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "mine")}
    assert compile_cache_settings(own) is None
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    assert compile_cache_settings({"VAETRAJ_CACHE_DIR": str(blocked)}) is None
    monkeypatch.setattr(Path, "home", classmethod(_no_home))  # no HOME, no passwd entry
    assert compile_cache_settings({}) is None


def test_bad_size_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="VAETRAJ_CACHE_SIZE"):
        compile_cache_settings({"VAETRAJ_CACHE_DIR": str(tmp_path), "VAETRAJ_CACHE_SIZE": "lots"})


def _encode(model: Path, data: Path, out: Path, cache: Path, **extra: str):
    environment = {**os.environ, "VAETRAJ_CACHE_DIR": str(cache), **extra}
    environment.pop("JAX_COMPILATION_CACHE_DIR", None)
    argv = vaetraj_argv("encode", data, "-m", model, "-o", out, "--overwrite")
    return subprocess.Popen(
        argv, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finished(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return err


def _means(path: Path) -> np.ndarray:
    import h5py

    with h5py.File(path) as handle:
        return np.asarray(handle["mean"])


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "jax").glob("*-cache"))


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, model_2d, polymer_2d):
    folder = tmp_path_factory.mktemp("compile-cache")
    data = folder / "frames.npy"
    np.save(data, polymer_2d[:64])
    cache = folder / "cache"
    # two commands at once into an empty cache: both finish, with the same result
    pair = [_encode(model_2d, data, folder / f"first{i}.h5", cache) for i in (0, 1)]
    for process in pair:
        _finished(process)
    return folder, data, cache, model_2d


@pytest.mark.slow
def test_a_second_command_reads_what_the_first_compiled(encoded):
    folder, data, cache, model = encoded
    entries = _entries(cache)
    assert entries, "no compiled program was kept"
    np.testing.assert_array_equal(_means(folder / "first0.h5"), _means(folder / "first1.h5"))
    before = {path: path.stat().st_mtime_ns for path in entries}
    _finished(_encode(model, data, folder / "again.h5", cache))
    np.testing.assert_array_equal(_means(folder / "first0.h5"), _means(folder / "again.h5"))
    # nothing was compiled again: no new program, none rewritten
    assert {path: path.stat().st_mtime_ns for path in _entries(cache)} == before


@pytest.mark.slow
def test_a_damaged_cache_is_a_miss(encoded, tmp_path):
    folder, data, cache, model = encoded
    damaged = tmp_path / "damaged"
    (damaged / "jax").mkdir(parents=True)
    for path in _entries(cache):
        (damaged / "jax" / path.name).write_bytes(b"\x00garbage" + path.read_bytes()[:20])
    err = _finished(_encode(model, data, tmp_path / "out.h5", damaged))
    assert "cache" not in err.lower() and "warning" not in err.lower(), err
    np.testing.assert_array_equal(_means(folder / "first0.h5"), _means(tmp_path / "out.h5"))


@pytest.mark.slow
def test_off_leaves_no_folder_and_a_bounded_cache_stays_in_bounds(encoded, tmp_path):
    folder, data, _, model = encoded
    off = tmp_path / "off"
    _finished(_encode(model, data, tmp_path / "off.h5", off, VAETRAJ_NO_CACHE="1"))
    assert not (off / "jax").exists()
    small = tmp_path / "small"
    total = sum(path.stat().st_size for path in _entries(encoded[2]))
    bound = total // 2  # some programs must be dropped to keep within it
    for name in ("one", "two"):
        _finished(
            _encode(model, data, tmp_path / f"{name}.h5", small, VAETRAJ_CACHE_SIZE=str(bound))
        )
    assert sum(path.stat().st_size for path in _entries(small)) <= bound
    np.testing.assert_array_equal(_means(folder / "first0.h5"), _means(tmp_path / "two.h5"))


def test_a_bad_size_fails_the_command_in_one_line(tmp_path):
    """Refused before anything is read or written (exit 2, one line)."""
    process = _encode(
        tmp_path / "model.h5", tmp_path / "frames.npy", tmp_path / "x.h5", tmp_path / "c",
        VAETRAJ_CACHE_SIZE="lots",
    )  # fmt: skip
    out, err = process.communicate(timeout=300)
    assert process.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "VAETRAJ_CACHE_SIZE" in lines[0]
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "c").exists()


@pytest.mark.slow
def test_kept_programs_decode_as_traced_ones(encoded, tmp_path):
    """`decode` (with its refinement) from programs loaded off disk gives what the
    traced programs give, bit for bit."""
    _, _, _, model = encoded
    from vaetraj.pipeline.model import load_model

    point = ",".join(["0.3"] * load_model(model).latent_dim)
    outputs = []
    for name, extra in (("off", {"VAETRAJ_NO_CACHE": "1"}), ("first", {}), ("again", {})):
        environment = {**os.environ, "VAETRAJ_CACHE_DIR": str(tmp_path / "cache"), **extra}
        environment.pop("JAX_COMPILATION_CACHE_DIR", None)
        out = tmp_path / f"{name}.npz"
        argv = vaetraj_argv("decode", "--z", point, "--z", "-0.2," + point.split(",", 1)[-1]
                            if "," in point else "-0.2", "-m", model, "-o", out)  # fmt: skip
        done = subprocess.run(argv, env=environment, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        outputs.append(np.load(out)["arr"])
    assert list((tmp_path / "cache" / "programs").glob("refine-*.program"))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_array_equal(outputs[0], outputs[2])
