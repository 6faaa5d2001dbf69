"""Reading is streamed: stride, selection and concatenation, and bounded memory on a
trajectory much larger than the memory align may use."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from vaetraj import ReadOptions, Trajectory, load_trajectory


def test_stride_select_and_concatenate(tmp_path, polymer_2d):
    np.save(tmp_path / "a.npy", polymer_2d[:101])
    np.savez(tmp_path / "b.npz", arr=polymer_2d[101:])
    loaded = load_trajectory(
        [tmp_path / "a.npy", tmp_path / "b.npz"], stride=3, select="index 2 to 7"
    )
    expected = np.concatenate([polymer_2d[:101][::3], polymer_2d[101:][::3]])[:, 2:8]
    np.testing.assert_array_equal(loaded.xyz, expected)
    assert loaded.atom_indices.tolist() == list(range(2, 8))
    # small chunks give the same frames as one big read, stride phase kept across blocks
    trajectory = Trajectory([tmp_path / "a.npy"], ReadOptions(stride=7))
    pieces = np.concatenate([c.xyz for c in trajectory.iter_chunks(5)])
    np.testing.assert_array_equal(pieces, polymer_2d[:101][::7])
    assert trajectory.frames == len(polymer_2d[:101][::7])


def test_mdtraj_formats_read_like_mdtraj(polymer_files):
    import mdtraj as md

    expected = md.load(str(polymer_files / "polymer.xtc"), top=str(polymer_files / "polymer.pdb"))
    loaded = load_trajectory(
        polymer_files / "polymer.xtc", top=polymer_files / "polymer.pdb", select="index 0 to 4"
    )
    np.testing.assert_array_equal(loaded.xyz, expected.xyz[:, :5])
    assert loaded.units == "nm" and loaded.topology.n_atoms == 5


_MEASURE = """
import json, resource, sys
from vaetraj import align_file
report = align_file([sys.argv[1]], sys.argv[2])
print(json.dumps({"frames": report.frames, "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def _peak(path, output):
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path), str(output)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_align_memory_stays_bounded(tmp_path):
    """A 330 MB trajectory aligns within a fixed memory budget over a small one."""
    rng = np.random.default_rng(0)
    atoms, frames = 64, 450_000
    base = rng.normal(size=(atoms, 3)).astype(np.float32)
    big = tmp_path / "big.npy"
    mapped = np.lib.format.open_memmap(big, mode="w+", dtype=np.float32, shape=(frames, atoms, 3))
    for start in range(0, frames, 50_000):
        block = base + 0.1 * rng.normal(size=(min(50_000, frames - start), atoms, 3)).astype(
            np.float32
        )
        mapped[start : start + len(block)] = block
    mapped.flush()
    del mapped
    small = tmp_path / "small.npy"
    np.save(small, np.load(big, mmap_mode="r")[:5000])

    baseline = _peak(small, tmp_path / "small.h5")
    measured = _peak(big, tmp_path / "big.h5")
    assert measured["frames"] == frames
    file_mb = big.stat().st_size / 2**20
    extra_mb = (measured["peak_kb"] - baseline["peak_kb"]) / 1024
    limit_mb = 100
    assert file_mb > 3 * limit_mb
    assert extra_mb < limit_mb, f"align used {extra_mb:.0f} MB more on a {file_mb:.0f} MB file"
