"""A full disk and a read-only file system: one line, exit 74, nothing under the final
name, no temporary file left, and an existing output kept. Runs each command in its own
process (HDF5 cannot recover from a failed write; the CLI leaves with os._exit then) on
a small tmpfs; skipped where the test cannot mount one (not root, no mount(8))."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import vaetraj_argv

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        sys.platform != "linux" or os.geteuid() != 0 or shutil.which("mount") is None,
        reason="needs root and mount(8) for a small tmpfs",
    ),
]


def _vaetraj(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        vaetraj_argv(*args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def small_disk(tmp_path):
    """A 300 kB tmpfs, unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, polymer_2d):
    """A long trajectory (6,000 frames: 576 kB as float32, more than the disk holds)
    and a trained model."""
    folder = tmp_path_factory.mktemp("disk-full")
    np.savez(folder / "long.npz", arr=np.concatenate([polymer_2d] * 15))
    np.savez(folder / "short.npz", arr=polymer_2d)
    done = _vaetraj("train", "short.npz", "-o", "model.h5", "--epochs", "2", "--hidden", "512",
                    "--min-explained", "0", cwd=folder)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return folder


CASES = {
    "align .h5": ["align", "long.npz", "-o", "{disk}/a.h5"],
    "encode .h5": ["encode", "long.npz", "-m", "model.h5", "-o", "{disk}/l.h5", "--recon"],
    "encode .csv": ["encode", "long.npz", "-m", "model.h5", "-o", "{disk}/l.csv", "--recon"],
    "sample .npz": ["sample", "-n", "20000", "-m", "model.h5", "--no-refine", "-o", "{disk}/s.npz"],
    "sample .dcd": ["sample", "-n", "20000", "-m", "model.h5", "--no-refine", "-o", "{disk}/s.dcd"],
    "sample .xtc": ["sample", "-n", "20000", "-m", "model.h5", "--no-refine", "-o", "{disk}/s.xtc"],
    "sample .pdb": ["sample", "-n", "2000", "-m", "model.h5", "--no-refine", "-o", "{disk}/s.pdb"],
    "sample .h5": ["sample", "-n", "20000", "-m", "model.h5", "--no-refine", "-o", "{disk}/s.h5"],
    # the model (hidden 512: 2.2 MB) and, with --checkpoint-every 1, its checkpoint
    "train": ["train", "short.npz", "-o", "{disk}/m.h5", "--epochs", "2", "--hidden", "512"],
    "train checkpoint": [
        "train",
        "short.npz",
        "-o",
        "{disk}/m.h5",
        "--epochs",
        "2",
        "--hidden",
        "512",
        "--checkpoint-every",
        "1",
    ],  # fmt: skip
}


def _one_line_74(done: subprocess.CompletedProcess, name: str) -> None:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 74, (done.returncode, done.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], lines


@pytest.mark.parametrize("case", list(CASES))
def test_a_full_disk_is_one_line_exit_74_and_leaves_nothing(inputs, small_disk, case):
    args = [a.format(disk=small_disk) for a in CASES[case]]
    output = Path(args[args.index("-o") + 1])
    done = _vaetraj(*args, cwd=inputs)
    _one_line_74(done, output.name.split(".")[0])
    assert os.listdir(small_disk) == []  # no output, no temporary, no checkpoint


def test_a_full_disk_keeps_the_existing_output(inputs, small_disk):
    existing = small_disk / "s.npz"
    existing.write_bytes(b"an earlier result")
    args = ["sample", "-n", "20000", "-m", "model.h5", "--no-refine", "-o", existing]
    done = _vaetraj(*args, "--overwrite", cwd=inputs)
    _one_line_74(done, "s.npz")
    assert existing.read_bytes() == b"an earlier result"
    assert os.listdir(small_disk) == ["s.npz"]


def test_a_read_only_file_system_is_exit_74(inputs, small_disk):
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    done = _vaetraj("align", "short.npz", "-o", small_disk / "a.h5", cwd=inputs)
    _one_line_74(done, "a.h5")
    assert "Read-only file system" in done.stderr


@pytest.fixture(scope="module")
def latent_path(inputs):
    """A latent path of 60,000 frames: its kinetics.h5 (about 0.7 MB) outgrows the disk."""
    from test_kinetics import _latent_file, _two_states

    path = inputs / "latent.h5"
    if not path.exists():
        _latent_file(path, _two_states(60_000, 0.02, seed=0)[0], [60_000])
    return path


def test_kinetics_on_a_full_disk_is_one_line(latent_path, small_disk):
    """Issue 31: h5py printed two "Exception ignored" tracebacks around the exit 74."""
    done = _vaetraj("kinetics", latent_path, "--lag", "5", "--clusters", "20", "-o",
                    small_disk / "k.h5", cwd=latent_path.parent)  # fmt: skip
    _one_line_74(done, "k.h5")
    assert os.listdir(small_disk) == []


def test_kinetics_figures_on_a_full_disk_leave_no_file_behind(latent_path, small_disk, tmp_path):
    """The figures fail (the disk is nearly full): kinetics.h5, written elsewhere, is
    not left behind either (a rerun needed --overwrite)."""
    from vaetraj.io._atomic import free_bytes

    (small_disk / "filler").write_bytes(b"x" * (free_bytes(small_disk) - 8 * 1024))
    done = _vaetraj("kinetics", latent_path, "--lag", "5", "--clusters", "20", "-o",
                    tmp_path / "k.h5", "--figures", small_disk / "figs",
                    cwd=latent_path.parent)  # fmt: skip
    _one_line_74(done, "figs")
    assert not (tmp_path / "k.h5").exists()
    assert os.listdir(small_disk) == ["filler"]  # the folder it made is gone too


@pytest.mark.parametrize("figures", ["kinetics", "plot"])
def test_figures_on_a_read_only_file_system_are_exit_74(inputs, latent_path, small_disk, figures):
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    if figures == "kinetics":
        args = ["kinetics", latent_path, "--lag", "5", "--clusters", "20", "--figures",
                small_disk / "figs"]  # fmt: skip
    else:
        args = ["plot", "-m", "model.h5", "-o", small_disk / "figs"]
    done = _vaetraj(*args, cwd=inputs)
    _one_line_74(done, "figs")
    assert "Read-only file system" in done.stderr
