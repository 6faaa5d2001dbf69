"""Output and input paths that cannot be used (issue 31): a file where a folder of
figures should be, symbolic-link loops as inputs, outputs and folders; and kinetics'
figures and file written together or not at all."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_error, run
from test_kinetics import _latent_file, _two_states

from vaetraj.pipeline import kinetics as kinetics_module
from vaetraj.pipeline.kinetics import KineticsConfig, kinetics_file


@pytest.fixture()
def latent(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    points, _ = _two_states(1500, 0.02, seed=2)
    return _latent_file(tmp_path / "latent.h5", points, [1500])


def _loop(path):
    path.symlink_to(path.name)
    return path


def test_figures_folder_that_is_a_file_or_a_loop(latent, tmp_path):
    (tmp_path / "afile").write_text("keep")
    args = ("kinetics", latent, "--lag", "5", "--clusters", "20", "-o", "k.h5")
    assert_error(run(*args, "--figures", "afile"), 73, "afile", "not a folder")
    assert_error(run(*args, "--figures", _loop(tmp_path / "figs")), 73, "figs", "symbolic link")
    assert (tmp_path / "afile").read_text() == "keep"
    assert not (tmp_path / "k.h5").exists()


def test_outputs_and_inputs_that_are_link_loops(latent, tmp_path, model_2d):
    loop = _loop(tmp_path / "loop.h5")
    assert_error(run("kinetics", latent, "--lag", "5", "-o", loop), 73, "loop.h5", "symbolic link")
    assert_error(run("kinetics", loop, "--lag", "5"), 66, "loop.h5", "symbolic link")
    assert_error(run("align", loop, "-o", "a.h5"), 66, "loop.h5", "symbolic link")
    assert_error(run("encode", latent, "-m", loop, "-o", "l.h5"), 66, "loop.h5", "symbolic link")
    assert_error(run("sample", "-m", model_2d, "-n", "3", "--no-refine", "-o", loop), 73,
                 "loop.h5", "symbolic link")  # fmt: skip
    assert_error(run("plot", "-m", model_2d, "-o", _loop(tmp_path / "figs")), 73, "figs")
    (tmp_path / "afile").write_text("keep")
    assert_error(run("plot", "-m", model_2d, "-o", "afile"), 73, "afile", "not a folder")
    assert_error(run("demo", "afile"), 73, "afile", "not a folder")
    assert (tmp_path / "afile").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "figs", "latent.h5", "loop.h5"]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, OSError])
def test_kinetics_leaves_nothing_when_its_file_fails_after_the_figures(latent, tmp_path,
                                                                       monkeypatch, stop):  # fmt: skip
    """An interrupt (or a failure) while kinetics.h5 is written, after the figures were
    drawn, removes the figures too: 'no output was written' is then true."""

    def failing(*args, **kwargs):
        raise stop()

    monkeypatch.setattr(kinetics_module, "write_kinetics", failing)
    with pytest.raises(stop):
        kinetics_file(latent, tmp_path / "k.h5", KineticsConfig(lag=5, clusters=20),
                      figures=tmp_path / "figs")  # fmt: skip
    assert not (tmp_path / "k.h5").exists()
    assert not (tmp_path / "figs").exists()  # the folder it made, too


def test_kinetics_writes_both_when_nothing_fails(latent, tmp_path):
    report = kinetics_file(latent, tmp_path / "k.h5", KineticsConfig(lag=5, clusters=20),
                           figures=tmp_path / "figs")  # fmt: skip
    assert (tmp_path / "k.h5").exists() and report.output == str(tmp_path / "k.h5")
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == sorted(
        p.rsplit("/", 1)[-1] for p in report.figures
    )
    assert len(report.figures) >= 2
    assert np.isfinite(report.vamp2)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.1, 0.3, 1.0, 2.0, 3.0, 4.0])
def test_an_interrupt_at_any_moment_of_kinetics_is_75_and_leaves_nothing(latent, tmp_path, delay):
    """Issue 31: SIGINT at some moments exited 75 saying "no output was written" beside
    a complete kinetics.h5 and figures; at others the process died by the signal (130).
    The command line loading, the analysis and the writing all end the same way now
    (a signal after the last write may let the run finish: then both outputs exist)."""
    import signal
    import subprocess
    import time

    from conftest import vaetraj_argv

    process = subprocess.Popen(
        vaetraj_argv("kinetics", latent, "--lag", 5, "--clusters", 20, "-o", tmp_path / "k.h5",
                     "--figures", tmp_path / "figs"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    if process.returncode == 0:  # it had finished
        assert (tmp_path / "k.h5").exists() and len(list((tmp_path / "figs").iterdir())) >= 2
        return
    assert process.returncode == 75 and lines == ["error: interrupted; no output was written"]
    assert not (tmp_path / "k.h5").exists() and not (tmp_path / "figs").exists()
