"""The time between frames (issue 16): read from DCD and XTC headers (mdtraj gives
neither), or given with --frame-time, multiplied by the stride, and carried from
`align` and `encode` into the aligned, model and latent files, where `kinetics` reads
it for timescales in ps."""

from __future__ import annotations

import json
import math
import struct

import h5py
import mdtraj as md
import numpy as np
import pytest
from conftest import assert_error, run

from vaetraj.errors import UsageError, VaetrajWarning
from vaetraj.io._integrity import scan_dcd, scan_xtc
from vaetraj.io.topology import polymer_topology
from vaetraj.io.trajectory import ReadOptions, Trajectory

AKMA_PS = 0.04888821


def dcd_with_time(path, xyz, *, interval: int, step_ps: float):
    """A DCD whose header says what OpenMM's DCDReporter writes: a frame every
    `interval` steps of `step_ps` (in AKMA units). mdtraj itself writes 1 and 1.0."""
    md.Trajectory(xyz, polymer_topology(xyz.shape[1])).save_dcd(str(path))
    with open(path, "r+b") as handle:
        handle.seek(16)
        handle.write(struct.pack("<i", interval))
        handle.seek(44)
        handle.write(struct.pack("<f", step_ps / AKMA_PS))
    return path


@pytest.fixture(scope="module")
def frames(polymer_3d):
    return polymer_3d[:60].astype(np.float32)


def test_dcd_and_xtc_headers_give_the_time_between_frames(tmp_path, frames):
    timed = dcd_with_time(tmp_path / "timed.dcd", frames, interval=250, step_ps=0.004)
    assert scan_dcd(timed).frame_time_ps == pytest.approx(1.0, rel=1e-6)
    read = md.load(str(timed), top=polymer_topology(12)).xyz
    np.testing.assert_allclose(read, frames, rtol=1e-5, atol=1e-5)
    plain = tmp_path / "plain.dcd"
    md.Trajectory(frames, polymer_topology(12)).save_dcd(str(plain))
    assert scan_dcd(plain).frame_time_ps is None  # mdtraj's placeholder: no time
    xtc = md.Trajectory(frames, polymer_topology(12), time=100 + 0.25 * np.arange(60))
    xtc.save_xtc(str(tmp_path / "a.xtc"))
    assert scan_xtc(tmp_path / "a.xtc").frame_time_ps == pytest.approx(0.25)
    # a file cut inside its last frame (kept with --allow-partial) still tells it
    whole = (tmp_path / "a.xtc").read_bytes()
    (tmp_path / "cut.xtc").write_bytes(whole[:-40])
    cut = scan_xtc(tmp_path / "cut.xtc")
    assert (cut.partial, cut.whole, cut.frame_time_ps) == (True, 59, pytest.approx(0.25))


def test_the_frame_time_follows_the_stride_and_the_option(tmp_path, frames):
    one = dcd_with_time(tmp_path / "one.dcd", frames, interval=250, step_ps=0.002)
    top = tmp_path / "top.pdb"
    md.Trajectory(frames[:1], polymer_topology(12)).save_pdb(str(top))
    assert Trajectory([one], ReadOptions(top=top, stride=3)).frame_time_ps == pytest.approx(1.5)
    given = ReadOptions(top=top, stride=3, frame_time=0.2)
    with pytest.warns(VaetrajWarning, match="--frame-time 0.2 ps overrides the 0.5 ps"):
        assert Trajectory([one], given).frame_time_ps == pytest.approx(0.6)
    other = dcd_with_time(tmp_path / "two.dcd", frames, interval=500, step_ps=0.002)
    assert Trajectory([one, other], ReadOptions(top=top)).frame_time_ps is None
    assert Trajectory([one, one], ReadOptions(top=top)).frame_time_ps == pytest.approx(0.5)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(UsageError, match="frame_time must be a positive number"):
            ReadOptions(frame_time=bad)


def test_the_frame_time_travels_from_align_and_encode_to_kinetics(
    tmp_path, frames, polymer_2d, model_2d
):
    timed = dcd_with_time(tmp_path / "timed.dcd", frames, interval=250, step_ps=0.002)
    top = tmp_path / "top.pdb"
    md.Trajectory(frames[:1], polymer_topology(12)).save_pdb(str(top))
    result = run("align", timed, "--top", top, "--stride", 2, "-o", tmp_path / "3d.h5", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["frame_time_ps"] == pytest.approx(1.0)
    with h5py.File(tmp_path / "3d.h5") as handle:
        assert handle.attrs["frame_time_ps"] == pytest.approx(1.0)
    # an array records no time: --frame-time gives it, and the aligned file keeps it
    plain = tmp_path / "polymer.npy"
    np.save(plain, polymer_2d)
    aligned = tmp_path / "aligned.h5"
    assert run("align", plain, "--frame-time", 0.25, "-o", aligned).exit_code == 0
    latent = tmp_path / "latent.h5"
    result = run("encode", aligned, "-m", model_2d, "--stride", 2, "-o", latent, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["frame_time_ps"] == pytest.approx(0.5)
    result = run("kinetics", latent, "--lag", 2, "--clusters", 4, "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["frame_time_ps"] == pytest.approx(0.5)
    np.testing.assert_allclose(record["implied_timescales_ps"],
                               0.5 * np.asarray(record["implied_timescales"]))  # fmt: skip
    # --frame-time on kinetics wins over the file's, and says so (issue 31: silently)
    result = run("kinetics", latent, "--lag", 2, "--clusters", 4, "--frame-time", 3, "--json")
    assert "--frame-time 3 ps overrides the 0.5 ps" in result.stderr
    record = json.loads(result.stdout)
    np.testing.assert_allclose(record["implied_timescales_ps"],
                               3 * np.asarray(record["implied_timescales"]))  # fmt: skip
    # an .npz latent path keeps it too
    result = run("encode", plain, "-m", model_2d, "--frame-time", 0.5, "--stride", 3,
                 "-o", tmp_path / "latent.npz", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["frame_time_ps"] == pytest.approx(1.5)
    with np.load(tmp_path / "latent.npz") as stored:
        assert json.loads(str(stored["attrs"]))["frame_time_ps"] == pytest.approx(1.5)


def test_bad_frame_times_are_one_line(tmp_path, frames):
    plain = tmp_path / "plain.npy"
    np.save(plain, frames)
    for bad in ("0", "-2", "nan", "inf"):
        result = run("align", plain, "-o", tmp_path / "a.h5", "--frame-time", bad)
        assert_error(result, 2, "--frame-time must be a positive number")
        assert not (tmp_path / "a.h5").exists()
    assert run("align", plain, "-o", tmp_path / "a.h5").exit_code == 0
    with h5py.File(tmp_path / "a.h5", "r+") as handle:
        handle.attrs["frame_time_ps"] = -1.0
    result = run("align", tmp_path / "a.h5", "-o", tmp_path / "b.h5")
    assert_error(result, 65, "frame_time_ps", "a.h5", "expected a positive number")


@pytest.mark.slow
def test_the_model_records_the_lag_and_the_frame_time(tmp_path, frames):
    from vaetraj import load_model

    timed = dcd_with_time(tmp_path / "timed.dcd", frames, interval=250, step_ps=0.002)
    top = tmp_path / "top.pdb"
    md.Trajectory(frames[:1], polymer_topology(12)).save_pdb(str(top))
    model = tmp_path / "m.h5"
    result = run("train", timed, "--top", top, "--lag", 1, "--epochs", 2, "--batch-size", 16,
                 "--min-explained", 0, "-o", model, "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["lag"], record["frame_time_ps"]) == (1, pytest.approx(0.5))
    assert "frames 1 (0.5 ps) apart" in result.stderr
    stored = load_model(model).record
    assert stored.summary["lag"] == 1 and stored.summary["frame_time_ps"] == pytest.approx(0.5)
    assert stored.provenance["frame_time_ps"] == pytest.approx(0.5)
