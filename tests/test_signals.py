"""SIGTERM and SIGINT at any moment of a run: one line, exit 75, never a crash, a
checkpoint to resume from once an epoch has finished, and no output under its name."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import vaetraj_argv

from vaetraj import _interrupt
from vaetraj.cli._runtime import _terminate


def test_a_signal_inside_a_deferred_section_waits_for_the_loop_and_a_second_forces():
    _interrupt.clear_stop()
    try:
        with _interrupt.deferred():
            _terminate(signal.SIGTERM, None)  # recorded, not raised
            assert _interrupt.stop_requested()
            with pytest.raises(KeyboardInterrupt):  # a second signal interrupts at once
                _terminate(signal.SIGTERM, None)
        _interrupt.clear_stop()
        with pytest.raises(KeyboardInterrupt):  # outside: at once
            _terminate(signal.SIGINT, None)
    finally:
        _interrupt.clear_stop()


def test_a_swallowed_interrupt_still_stops_an_output(tmp_path):
    """A stop request that no exception carried (Python swallowed it in a callback)
    removes the output instead of renaming it; a checkpoint written on the way out
    (during_stop) is kept."""
    from vaetraj.io._atomic import atomic_output

    _interrupt.clear_stop()
    _interrupt.request_stop()
    try:
        with pytest.raises(KeyboardInterrupt), atomic_output(tmp_path / "out.txt") as tmp:
            tmp.write_text("result")
        with atomic_output(tmp_path / "run.ckpt", during_stop=True) as tmp:
            tmp.write_text("state")
    finally:
        _interrupt.clear_stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_at_any_moment_of_training_is_exit_75_and_one_line(tmp_path, polymer_2d, sig):
    """Delays from the start-up through compilation (the first epoch) into training:
    before the first epoch ends there is nothing to keep; after it, a checkpoint.
    (A signal during compilation once made the process segfault after its message.)"""
    np.save(tmp_path / "data.npy", np.tile(polymer_2d, (5, 1, 1)))
    outcomes = []
    checkpoint = Path(tmp_path / "model.ckpt.h5")
    # the last: once the first checkpoint is on disk (a slow machine's start-up and
    # compilation outlast every fixed delay: seen at 7 s)
    for delay in (0.5, 1.5, 2.5, 3.5, 5.0, 7.0, None):
        for leftover in tmp_path.glob("model*"):
            leftover.unlink()
        process = subprocess.Popen(
            vaetraj_argv("train", "data.npy", "--epochs", "400", "--hidden", "64",
                         "--checkpoint-every", "1"),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        if delay is None:
            waited = time.monotonic()
            while not checkpoint.exists() and time.monotonic() - waited < 90:
                time.sleep(0.1)
        else:
            time.sleep(delay)
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=120)
        lines = [line for line in stderr.splitlines() if line.strip()]
        outcomes.append((delay, process.returncode, lines))
        assert process.returncode == 75, outcomes
        assert len(lines) == 1 and lines[0].startswith("error: "), outcomes
        assert not (tmp_path / "model.h5").exists()
        assert ("checkpoint written" in lines[0]) == checkpoint.exists(), outcomes
    assert any("checkpoint written" in lines[0] for _, _, lines in outcomes), outcomes


def test_a_second_run_on_the_same_model_is_refused_naming_the_first(tmp_path, monkeypatch):
    """Two `train -o model.h5` at once shared model.ckpt.h5, and the first to finish
    deleted it under the second. Now the second is refused at the start (73)."""
    import os

    from conftest import assert_error, run

    from vaetraj.io._atomic import run_lock

    monkeypatch.chdir(tmp_path)
    np.save("data.npy", np.zeros((20, 4, 2)))
    with run_lock(tmp_path / "model.h5"):
        assert_error(
            run("train", "data.npy", "--epochs", "1"), 73, "model.h5", f"pid {os.getpid()}"
        )
    with run_lock(tmp_path / "model.ckpt.h5"):  # the checkpoint is locked as well
        assert_error(run("train", "data.npy", "--epochs", "1"), 73, "model.ckpt.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npy"]  # locks removed


def test_stale_temporaries_of_killed_runs_are_removed_with_a_warning(tmp_path, polymer_2d):
    import os

    from conftest import run

    np.save(tmp_path / "data.npy", polymer_2d)
    dead = tmp_path / ".aligned.h5.999999999.abcd.tmp"  # no such PID
    fresh_dead = tmp_path / ".aligned.h5.999999998.abcd.tmp"  # written a moment ago
    live = tmp_path / f".aligned.h5.{os.getpid()}.abcd.tmp"  # a live run's
    other = tmp_path / ".aligned.h5.notours.tmp"
    for path in (dead, fresh_dead, live, other):
        path.write_bytes(b"x" * 100)
    old = time.time() - 120
    for path in (dead, live, other):
        os.utime(path, (old, old))
    result = run("align", tmp_path / "data.npy", "-o", tmp_path / "aligned.h5")
    assert result.exit_code == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and dead.name in warned[0]
    assert not dead.exists() and fresh_dead.exists() and live.exists() and other.exists()
