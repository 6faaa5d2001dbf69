"""The CLI end to end, and every bad input: one line, the exit code of DESIGN.md, and
no output file left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import mdtraj as md
import numpy as np
import pytest
from conftest import assert_error, run, shared, vaetraj_argv


def no_outputs(folder: Path) -> bool:
    return not any(p.suffix in (".h5", ".tmp") for p in folder.iterdir())


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture()
def polymer_npz(workdir, polymer_2d):
    np.savez(workdir / "traj.npz", arr=polymer_2d)
    return workdir / "traj.npz"


def test_help_and_version():
    result = run("--help")
    assert result.exit_code == 0
    assert "align" in result.stdout and "simulate" in result.stdout
    commands = (
        "demo",
        "align",
        "train",
        "encode",
        "decode",
        "sample",
        "optimize",
        "evaluate",
        "plot",
    )
    for command in commands:
        assert f" {command} " in result.stdout
        assert "Example" in run(command, "--help").stdout
    assert run("--version").stdout.strip().startswith("vaetraj ")


def test_help_does_not_import_jax():
    """`vaetraj --help` stays quick because JAX is imported only by commands that run."""
    code = (
        "import sys; from vaetraj.cli.app import app; import vaetraj; print('jax' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_align_builtin_polymer_in_empty_folder(workdir):
    result = run("align", "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert (
        record["ok"] and record["frames"] == 2048 and record["atoms"] == 12 and record["dims"] == 2
    )
    assert record["method"] == "principal"
    with h5py.File(workdir / "aligned.h5") as handle:
        assert handle.attrs["format"] == "vaetraj-aligned"
        assert handle.attrs["format_version"] == 1
        assert handle.attrs["method"] == "principal"
        xyz = handle["xyz"][()]
        assert xyz.shape == (2048, 12, 2) and xyz.dtype == np.float32
        sources = json.loads(handle.attrs["sources"])
        assert len(sources[0]["sha256"]) == 64
        assert handle["atom_indices"][()].tolist() == list(range(12))
        assert "B1" in handle.attrs["topology"]
        ambiguous = handle["ambiguous"][()]
    # centred and on principal axes: mean zero, x variance largest, no xy covariance
    assert np.abs(xyz.mean(axis=1)).max() < 1e-4
    assert np.all(np.mean(xyz[..., 0] ** 2, 1) >= np.mean(xyz[..., 1] ** 2, 1) - 1e-5)
    assert np.abs(np.mean(xyz[..., 0] * xyz[..., 1], 1)).max() < 1e-4
    assert record["ambiguous_frames"] == int(ambiguous.sum())  # the report is the file's

    again = run("align")
    assert_error(again, 73, "aligned.h5", "--overwrite")
    assert run("align", "--overwrite").exit_code == 0


def test_simulate_then_align_with_kabsch(workdir):
    result = run("simulate", "polymer", "--frames", "64", "--dim", "3", "--seed", "3", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["dim"] == 3
    assert np.load(workdir / "polymer.npz")["arr"].shape == (64, 12, 3)
    result = run(
        "align", "polymer.npz", "--method", "kabsch", "--reference", "mean", "-o", "k.h5", "--json"
    )
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["mean_iterations"] >= 2 and record["rmsd_mean"] > 0
    with h5py.File(workdir / "k.h5") as handle:
        assert handle["reference"].shape == (12, 3)
        np.testing.assert_allclose(handle["xyz"][()].mean(0), handle["reference"][()], atol=1e-4)


def test_settings_file_sets_options(workdir, polymer_npz):
    (workdir / "vaetraj.toml").write_text('[align]\nmethod = "none"\noutput = "from-settings.h5"\n')
    result = run("align", "traj.npz", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["method"] == "none"
    assert (workdir / "from-settings.h5").exists()
    (workdir / "vaetraj.toml").write_text("[align]\nmethdo = 'none'\n")
    assert_error(run("align", "traj.npz"), 2, "vaetraj.toml", "methdo")


def test_a_settings_file_that_is_wrong_names_the_file_and_key(workdir, polymer_npz):
    """Issue 31: a folder, a binary file or a link loop named vaetraj.toml; a value of
    the wrong type (lag = true ran at lag 1); a value out of range names the file and the
    key, not the flag the user never typed; a TOML array is a comma-separated list."""
    settings = workdir / "vaetraj.toml"
    settings.mkdir()
    assert_error(run("align", "traj.npz"), 2, "vaetraj.toml", "folder")
    settings.rmdir()
    settings.write_bytes(bytes(range(128, 256)))
    assert_error(run("align", "traj.npz"), 2, "vaetraj.toml", "not UTF-8")
    settings.unlink()
    settings.symlink_to("vaetraj.toml")
    assert_error(run("align", "traj.npz"), 66, "vaetraj.toml", "symbolic link")
    settings.unlink()
    for text, fragments in [
        ("[kinetics]\nlag = true\n", ["[kinetics] lag must be a whole number", "true"]),
        ("[kinetics]\nclusters = 2.5\n", ["[kinetics] clusters must be a whole number"]),
        ('[align]\nmethod = "nope"\n', ["[align] method must be one of", "kabsch"]),
        ("[align]\noverwrite = 1\n", ["[align] overwrite must be true or false"]),
        ("[align]\nstride = [1, 2]\n", ["[align] stride takes one value, not an array"]),
        ("[align]\nstride = 0\n", ["[align] stride must be at least 1"]),
    ]:
        settings.write_text(text)
        assert_error(run("align", "traj.npz", "-o", "a.h5"), 2, "vaetraj.toml", *fragments)
        assert not (workdir / "a.h5").exists()
    # a value the command itself refuses: the file and key first, when it came from there
    settings.write_text("[kinetics]\nlag = 0\n")
    assert_error(run("kinetics", "none.h5"), 2, "vaetraj.toml: [kinetics] lag:", "--lag")
    result = run("kinetics", "none.h5", "--lag", "0")
    assert_error(result, 2, "--lag must be at least 1")
    assert "vaetraj.toml" not in result.stderr
    settings.write_text('[kinetics]\nlags = "1,x"\n')
    assert_error(run("kinetics", "none.h5", "--lag", "3"), 2, "vaetraj.toml: [kinetics] lags:")
    settings.write_text("[kinetics]\nlags = [1, 2, 5]\n")
    from typer.main import get_command

    from vaetraj.cli._runtime import load_settings
    from vaetraj.cli.app import app

    assert load_settings(get_command(app), settings) == {"kinetics": {"lags": "1,2,5"}}


def test_shared_alanine_dipeptide(workdir):
    dcd, pdb = shared("alanine-dipeptide", "ala2.dcd"), shared("alanine-dipeptide", "ala2.pdb")
    result = run(
        "align",
        dcd,
        "--top",
        pdb,
        "--method",
        "kabsch",
        "--select",
        "not element H",
        "--stride",
        "4",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["frames"] == 2000 and record["atoms"] == 10 and record["weights"] == "mass"
    assert record["units"] == "nm" and 0.0 < record["rmsd_mean"] < 0.2


def test_shared_polymer_principal(workdir):
    paths = shared("polymer", "paths.npz")
    result = run("align", paths, "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    # frames close in time: the sign convention keeps the axes steady
    assert record["frames"] == 2048 and record["sign_flips"] <= 5


# ---- bad input -----------------------------------------------------------------


def test_missing_file(workdir):
    assert_error(run("align", "nothere.npz"), 66, "nothere.npz", "no such file")
    assert no_outputs(workdir)


def test_empty_file(workdir):
    (workdir / "empty.dcd").write_bytes(b"")
    assert_error(run("align", "empty.dcd"), 65, "empty.dcd", "empty")
    assert no_outputs(workdir)


def test_unknown_extension(workdir):
    (workdir / "traj.foo").write_text("1 2 3")
    assert_error(run("align", "traj.foo"), 65, "traj.foo", "unknown trajectory extension")


def test_object_array_npz_is_refused(workdir):
    np.savez(workdir / "obj.npz", arr=np.array([{"a": 1}], dtype=object))
    assert_error(run("align", "obj.npz"), 65, "obj.npz", "Python objects")
    assert no_outputs(workdir)


@pytest.mark.parametrize("shape", [(10, 12), (10, 12, 4), (2, 10, 12, 2)])
def test_wrong_dimensions(workdir, shape):
    np.save(workdir / "bad.npy", np.zeros(shape))
    assert_error(
        run("align", "bad.npy"), 65, "bad.npy", "shape" if len(shape) != 3 else "coordinates"
    )


def test_several_arrays_need_key(workdir, polymer_2d):
    np.savez(workdir / "two.npz", a=polymer_2d, b=polymer_2d[:10])
    assert_error(run("align", "two.npz"), 2, "two.npz", "--key")
    result = run("align", "two.npz", "--key", "b", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["frames"] == 10


def test_non_finite_coordinates_name_frame_and_atom(workdir, polymer_2d):
    data = polymer_2d.copy()
    data[37, 5, 1] = np.nan
    np.save(workdir / "nan.npy", data)
    assert_error(run("align", "nan.npy"), 65, "nan.npy", "frame 37", "atom 5")
    data[37, 5, 1] = np.inf
    np.savez(workdir / "inf.npz", arr=data)
    assert_error(run("align", "inf.npz", "--stride", "1"), 65, "frame 37", "atom 5")
    assert no_outputs(workdir)


def test_selection_matching_nothing(workdir, polymer_files):
    result = run(
        "align",
        polymer_files / "polymer.dcd",
        "--top",
        polymer_files / "polymer.pdb",
        "--select",
        "name CA",
    )
    assert_error(result, 65, "selection 'name CA' matches no atoms")
    assert no_outputs(workdir)


def test_topology_atom_count_mismatch(workdir, polymer_files):
    small = md.load(str(polymer_files / "polymer.pdb")).atom_slice(range(10))
    small.save_pdb(str(workdir / "small.pdb"))
    result = run("align", polymer_files / "polymer.dcd", "--top", "small.pdb")
    assert_error(result, 65, "12 atoms", "topology has 10")


def _cut(source: Path, target: Path, drop: int) -> None:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) - drop])


@pytest.mark.parametrize("suffix", ["dcd", "xtc"])
def test_truncated_trajectory_refused_unless_allow_partial(workdir, polymer_files, suffix):
    _cut(polymer_files / f"polymer.{suffix}", workdir / f"cut.{suffix}", 37)
    top = polymer_files / "polymer.pdb"
    assert_error(
        run("align", f"cut.{suffix}", "--top", top),
        65,
        f"cut.{suffix}",
        "ends inside frame 299",
        "--allow-partial",
    )
    assert no_outputs(workdir)
    result = run("align", f"cut.{suffix}", "--top", top, "--allow-partial", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["frames"] == 299
    with h5py.File(workdir / "aligned.h5") as handle:
        full = md.load(str(polymer_files / f"polymer.{suffix}"), top=str(top))
        assert handle["xyz"].shape[0] == 299 and full.n_frames == 300


def test_truncated_npy_refused(workdir, polymer_2d):
    np.save(workdir / "full.npy", polymer_2d)
    _cut(workdir / "full.npy", workdir / "cut.npy", 20)
    assert_error(run("align", "cut.npy"), 65, "cut.npy", "ends inside frame")
    result = run("align", "cut.npy", "--allow-partial", "--json")
    assert json.loads(result.stdout)["frames"] == polymer_2d.shape[0] - 1


def test_stale_dcd_header_read_with_warning(workdir, polymer_files):
    """A DCD whose header counts more frames than it holds whole (a crashed run)."""
    source = polymer_files / "polymer.dcd"
    top = polymer_files / "polymer.pdb"
    md.load(str(source), top=str(top))[:200].save_dcd(str(workdir / "short.dcd"))
    per_frame = (source.stat().st_size - (workdir / "short.dcd").stat().st_size) // 100
    _cut(source, workdir / "stale.dcd", 100 * per_frame)  # 100 whole frames gone, count kept
    result = run("align", "stale.dcd", "--top", top, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["frames"] == 200
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "300" in warning[0] and "200" in warning[0]


def test_output_folder_not_writable(workdir, polymer_npz):
    if os.geteuid() == 0:  # root writes anywhere; /sys refuses new files even to root
        target = Path("/sys/vaetraj-test-output.h5")
    else:
        locked = workdir / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        target = locked / "aligned.h5"
    assert_error(run("align", "traj.npz", "-o", target), 73, str(target), "cannot create")
    assert not target.exists()


def test_output_folder_missing(workdir, polymer_npz):
    assert_error(run("align", "traj.npz", "-o", "no/such/dir/a.h5"), 73, "does not exist")


def test_bad_option_values_are_usage_errors(workdir, polymer_npz):
    assert run("align", "traj.npz", "--method", "bogus").exit_code == 2
    assert_error(run("align", "traj.npz", "--reference", "0"), 2, "--reference only applies")
    assert_error(run("simulate", "polymer", "--dim", "4"), 2, "--dim")
    assert_error(
        run("align", "traj.npz", "--method", "kabsch", "--reference", "5000"), 2, "outside"
    )


def test_debug_shows_traceback(workdir):
    result = run("align", "nothere.npz", "--debug")
    assert result.exit_code == 66
    assert "Traceback" in result.stderr


def test_interrupt_leaves_no_output(workdir, polymer_2d, monkeypatch):
    """Ctrl-C or SIGTERM mid-run: exit 75 and nothing under the final name."""
    from vaetraj.io import aligned

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    np.save(workdir / "traj.npy", polymer_2d)
    monkeypatch.setattr(aligned.AlignedWriter, "append", interrupted)
    assert_error(run("align", "traj.npy"), 75, "interrupted")
    assert no_outputs(workdir)


def test_killed_run_never_leaves_final_file(workdir, polymer_2d):
    """kill -9 in the middle of writing leaves no aligned.h5 (at most a hidden temp)."""
    big = np.tile(polymer_2d, (500, 1, 1))
    np.save(workdir / "big.npy", big)
    process = subprocess.Popen(
        vaetraj_argv("align", "big.npy"),
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import time

    deadline = time.time() + 60
    while time.time() < deadline and not any(p.name.endswith(".tmp") for p in workdir.iterdir()):
        time.sleep(0.02)
    process.kill()
    process.wait()
    assert not (workdir / "aligned.h5").exists()


def test_read_aligned_checks_format_and_version(workdir, polymer_npz):
    from vaetraj import read_aligned
    from vaetraj.errors import BadInputError

    assert run("align", "traj.npz", "--method", "kabsch").exit_code == 0
    data = read_aligned(workdir / "aligned.h5")
    assert data.method == "kabsch" and data.xyz.shape == (400, 12, 2)
    assert data.reference.shape == (12, 2) and data.rmsd.shape == (400,)
    with h5py.File(workdir / "other.h5", "w") as handle:
        handle["xyz"] = np.zeros((2, 3, 3))
    with pytest.raises(BadInputError, match="not a vaetraj aligned file"):
        read_aligned(workdir / "other.h5")
    with h5py.File(workdir / "aligned.h5", "a") as handle:
        handle.attrs["format_version"] = 99
    with pytest.raises(BadInputError, match="version 99"):
        read_aligned(workdir / "aligned.h5")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "x.npy", "--epochs", "two"], "'--epochs'"),
        (["align", "x.npy", "--stride", "0"], "'--stride'"),
        (["align", "--bogus"], "--bogus"),
        (["trian"], "'trian'"),
    ],
)
def test_a_bad_command_line_is_one_line_from_the_program(workdir, args, fragment):
    """The installed program (not the in-process runner): click's usage text and
    error box become one line, exit 2."""
    done = subprocess.run(vaetraj_argv(*args), capture_output=True, text=True, cwd=workdir)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: vaetraj") and fragment in lines[0]
    assert done.stdout == ""
    # with --json, the failure record a script reads (issue 31: none came)
    done = subprocess.run(vaetraj_argv(*args, "--json"), capture_output=True, text=True,
                          cwd=workdir)  # fmt: skip
    record = json.loads(done.stdout)
    assert record["ok"] is False and record["exit_code"] == 2 and fragment in record["error"]


def test_a_selection_that_does_not_parse_is_one_short_line(workdir, polymer_files):
    result = run("align", polymer_files / "polymer.dcd", "--top", polymer_files / "polymer.pdb",
                 "--select", "name CA and (")  # fmt: skip
    assert_error(result, 2, "--select 'name CA and ('", "column 14")
    assert len(result.stderr) < 200  # not pyparsing's grammar


def test_mdtraj_hdf5_trajectories_are_read(workdir, polymer_files, polymer_3d):
    """mdtraj's own .h5 format (PyTables, a declared dependency) reads like any input;
    its topology comes from the file."""
    trajectory = md.load(str(polymer_files / "polymer.dcd"), top=str(polymer_files / "polymer.pdb"))
    trajectory.save_hdf5(str(workdir / "traj.h5"))
    result = run("align", "traj.h5", "-o", "aligned.h5", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["frames"] == len(polymer_3d)
    dcd = run("align", polymer_files / "polymer.dcd", "--top", polymer_files / "polymer.pdb",
              "-o", "from_dcd.h5")  # fmt: skip
    assert dcd.exit_code == 0, dcd.stderr
    with h5py.File("aligned.h5") as a, h5py.File("from_dcd.h5") as b:
        np.testing.assert_allclose(a["xyz"][()], b["xyz"][()], atol=1e-5)


def test_an_unreadable_input_is_one_line_exit_66(workdir, polymer_2d, monkeypatch):
    """(Tests run as root, which reads anything: the refusal is simulated.)"""
    import builtins

    np.save("secret.npy", polymer_2d)
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if str(file).endswith("secret.npy"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    assert_error(run("align", "secret.npy"), 66, "secret.npy", "permission denied")
    assert no_outputs(workdir)


# the configs each command's options set
COMMAND_CONFIGS = {
    "align": ("AlignConfig", "ReadOptions"),
    "train": ("ModelConfig", "TrainConfig", "AlignConfig", "ReadOptions", "FeaturizeConfig"),
    "encode": ("ReadOptions",),
    "evaluate": ("EvaluateConfig", "ReadOptions"),
    "optimize": ("OptimizeConfig",),
    "kinetics": ("KineticsConfig",),
    "sample": ("SampleConfig",),
    "decode": ("SampleConfig",),
}


@pytest.mark.parametrize("command", sorted(COMMAND_CONFIGS))
def test_every_option_is_its_config_field(command):
    """Issue 32: no command restates a config default or choice. Each option that sets
    a config field has the field's flag, default (a tuple's comma-separated; --featurize
    off unless given) and choices, and every field declared as an option is on the
    command."""
    import dataclasses
    import enum
    import typing

    from typer.main import get_command

    import vaetraj.configs as configs
    from vaetraj.cli.app import app

    group = get_command(app)
    params = {p.name: p for p in group.commands[command].params}
    checked = []
    for config in (getattr(configs, name) for name in COMMAND_CONFIGS[command]):
        for field in configs.cli_fields(config):
            if field.name not in params:
                assert (command, field.name) in {
                    ("train", "allow_partial"), ("evaluate", "allow_partial"),
                    ("evaluate", "frame_time"), ("encode", "allow_partial"),
                    *(("decode", name) for name in ("n", "prior", "temperature", "seed")),
                }, (command, field.name)  # fmt: skip
                continue
            param = params[field.name]
            assert configs.flag_of(field).split("/")[0].split(" ")[0] in param.opts
            default = param.default.value if isinstance(param.default, enum.Enum) else param.default
            expected = field.default
            if isinstance(expected, tuple):
                expected = ",".join(map(str, expected))
            if (command, field.name) == ("train", "kind"):
                expected = None  # --featurize: off unless given
            if expected is dataclasses.MISSING:
                assert param.required, field.name
            else:
                assert default == expected, (field.name, default, expected)
            if field.metadata["choices"]:  # the option's Enum (typer >= 0.20 keeps it)
                described = getattr(param, "type_descriptor", None)
                if described is None:  # older typer: click's Choice
                    assert tuple(param.type.choices) == field.metadata["choices"]
                else:
                    annotation = described.annotation
                    kind = next((a for a in typing.get_args(annotation)
                                 if a is not type(None)), annotation)  # fmt: skip
                    assert tuple(m.value for m in kind) == field.metadata["choices"]
            checked.append(field.name)
    assert len(checked) >= {"train": 40, "optimize": 12, "decode": 2}.get(command, 3), checked


def test_simulate_polymer_takes_its_options_from_polymer_config():
    from typer.main import get_command

    from vaetraj.cli.app import app
    from vaetraj.configs import PolymerConfig, cli_fields

    command = get_command(app).commands["simulate"].commands["polymer"]
    params = {p.name: p for p in command.params}
    for field in cli_fields(PolymerConfig):
        assert params[field.name].default == field.default, field.name
    assert {f.name for f in cli_fields(PolymerConfig)} == {
        "beads", "dim", "frames", "stride", "temperature"
    }  # fmt: skip


def test_a_library_error_names_fields_and_the_cli_their_flags():
    """A library message names what a Python caller passed (`lag`, `learning_rate`);
    the command line names the options, and never rewrites a path or file name."""
    from vaetraj.configs import renamed_flags
    from vaetraj.errors import ConfigError, UsageError

    error = UsageError("lag too long for lag.h5 in /data/lag/; raise learning_rate.",
                       fields=("lag", "learning_rate"), path="/tmp/lag/x.h5")  # fmt: skip
    assert (
        str(error) == "/tmp/lag/x.h5: lag too long for lag.h5 in /data/lag/; raise learning_rate."
    )
    assert error.as_flag(renamed_flags()) == (
        "/tmp/lag/x.h5: --lag too long for lag.h5 in /data/lag/; raise --lr."
    )
    rule = ConfigError("states", "must not exceed clusters (20)", 30, also=("clusters",))
    assert rule.as_flag() == "--states must not exceed --clusters (20), got 30"
