"""Every file format vaetraj writes, damaged field by field, through every command that
reads it: one line on stderr and exit 65, or (for a field the format makes optional,
dropped) a normal run. Never a traceback, never exit 0 on damaged data.

The fields are found by walking the real files (not taken from the readers' schemas),
so a field a writer adds is damaged here without anyone listing it.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from vaetraj.cli.app import app

runner = CliRunner()

# fields a format may lack: dropping one is no damage (the command still runs)
OPTIONAL = {
    "model": {"train_config", "data_stats", "topology", "alignment/masses"},
    "aligned": {"config", "read_options", "created", "ambiguous", "masses", "topology"},
    "latent": {"stride", "created", "vaetraj_version", "std", "rg", "recon_rmsd", "trajectory"},
    "checkpoint": set(),
}
# a model may lack a metric's history; a checkpoint may not (the resumed history would
# come out ragged)
OPTIONAL_GROUPS = {"model": ("history/",)}
NAN_ALLOWED = ("history/",)  # a training history records a diverged epoch as it was
FREE_TEXT = {"units", "method", "reference", "weights", "created", "vaetraj_version"}


@dataclass(frozen=True)
class Damage:
    field: str
    kind: str  # drop, type, json, json-type, shape, nan
    apply: Callable[[h5py.File], None]
    harmless: bool  # True: the command must still run (exit 0)


def _is_json(value) -> type | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = json.loads(value)
    except ValueError:
        return None
    return type(parsed) if isinstance(parsed, (dict, list)) else None


def _optional(fmt: str, name: str) -> bool:
    groups = OPTIONAL_GROUPS.get(fmt, ())
    return name in OPTIONAL[fmt] or name.startswith(groups)


def _attr_damages(fmt: str, name: str, value) -> list[Damage]:
    damages = [Damage(name, "drop", lambda h: h.attrs.__delitem__(name), _optional(fmt, name))]
    if isinstance(value, str):
        damages.append(Damage(name, "type", lambda h: h.attrs.__setitem__(name, 7), False))
        kind = _is_json(value)
        if kind is not None:
            other = "[1, 2]" if kind is dict else '{"a": 1}'
            damages.append(Damage(name, "json", lambda h: h.attrs.__setitem__(name, "{]"), False))
            damages.append(
                Damage(name, "json-type", lambda h: h.attrs.__setitem__(name, other), False)
            )
        else:
            assert name in FREE_TEXT, f"{fmt}: attribute {name} is neither JSON nor known text"
    else:
        damages.append(Damage(name, "type", lambda h: h.attrs.__setitem__(name, "abc"), False))
    return damages


def _replace(name: str, make: Callable[[np.ndarray], np.ndarray]) -> Callable[[h5py.File], None]:
    def apply(handle: h5py.File) -> None:
        values = handle[name][()]
        del handle[name]
        handle[name] = make(np.asarray(values))

    return apply


def _with_nan(values: np.ndarray) -> np.ndarray:
    values = values.copy()
    values.flat[values.size // 2] = np.nan
    return values


def _dataset_damages(fmt: str, name: str, dataset: h5py.Dataset) -> list[Damage]:
    longer = (
        (lambda a: np.concatenate([a, a[:1]])) if dataset.ndim else (lambda a: np.stack([a, a]))
    )
    damages = [
        Damage(name, "drop", lambda h: h.__delitem__(name), _optional(fmt, name)),
        Damage(name, "type", _replace(name, lambda a: np.full(a.shape or (1,), "x", "S1")), False),
        Damage(name, "shape", _replace(name, longer), False),
    ]
    if dataset.dtype.kind == "f" and dataset.size:
        damages.append(Damage(name, "nan", _replace(name, _with_nan), name.startswith(NAN_ALLOWED)))
    return damages


def damages_of(fmt: str, path: Path) -> list[Damage]:
    found: list[Damage] = []
    with h5py.File(path) as handle:
        for name, value in handle.attrs.items():
            if name not in ("format", "format_version"):  # refused as "not ours": test_cli
                found += _attr_damages(fmt, name, value)
        datasets: list[str] = []
        handle.visititems(lambda n, o: datasets.append(n) if isinstance(o, h5py.Dataset) else None)
        for name in datasets:
            found += _dataset_damages(fmt, name, handle[name])
    return found


# -- the files, written by the commands themselves -------------------------------------
TINY = ("--epochs", "2", "--hidden", "16", "--layers", "2", "--min-explained", "0")


def _ok(*args) -> None:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (args, result.stderr)


@pytest.fixture(scope="module")
def files(tmp_path_factory, polymer_files):
    """aligned.h5 (kabsch, with topology and reference), model.h5, latent files, a
    checkpoint and samples, from the 3D polymer with a PDB topology."""
    folder = tmp_path_factory.mktemp("damage")
    top, dcd = polymer_files / "polymer.pdb", polymer_files / "polymer.dcd"
    _ok("align", dcd, "--top", top, "--method", "kabsch", "-o", folder / "aligned.h5")
    _ok("train", folder / "aligned.h5", "-o", folder / "model.h5", "--latent-dim", "2", *TINY)
    for suffix in ("h5", "npz", "csv"):
        _ok(
            "encode",
            dcd,
            "--top",
            top,
            "-m",
            folder / "model.h5",
            "-o",
            folder / f"latent.{suffix}",
        )
    _ok("sample", "-n", "8", "-m", folder / "model.h5", "-o", folder / "samples.npz")

    from vaetraj.errors import InterruptedRunError
    from vaetraj.model import ModelConfig
    from vaetraj.pipeline.train import train_file
    from vaetraj.training import TrainConfig

    def stop(*_):
        raise KeyboardInterrupt

    with pytest.raises(InterruptedRunError):
        train_file(
            [folder / "aligned.h5"], folder / "resumed.h5",
            ModelConfig(latent_dim=2, hidden=16, layers=2),
            TrainConfig(epochs=2, min_explained=0.0),
            checkpoint=folder / "run.ckpt.h5", progress=stop,
        )  # fmt: skip
    assert (folder / "run.ckpt.h5").exists()
    return folder


def _commands(fmt: str, files: Path, damaged: Path, out: Path) -> dict[str, list]:
    """The commands that read a file of `fmt`, with `damaged` in its place."""
    model, aligned, samples = files / "model.h5", files / "aligned.h5", files / "samples.npz"
    fast = ["--restarts", "2", "--steps", "10"]
    # fmt: off
    commands = {
        "model": {
            "encode": ["encode", aligned, "-m", damaged, "-o", out / "l.h5"],
            "decode": ["decode", "--z", "0,0", "-m", damaged, "-o", out / "d.npz"],
            "sample": ["sample", "-n", "4", "-m", damaged, "-o", out / "s.npz"],
            "optimize": ["optimize", "-m", damaged, "--data", aligned, *fast, "-o", out / "o.npz"],
            "evaluate": ["evaluate", aligned, "-m", damaged, "--samples", "8", "-k", "2"],
            "plot": ["plot", "-m", damaged, "--latent", files / "latent.h5",
                     "--only", "loss,latent", "-o", out / "figures"],
        },
        "aligned": {
            "train": ["train", damaged, "-o", out / "m.h5", *TINY],
            "align": ["align", damaged, "-o", out / "a.h5"],
            "align --top": ["align", samples, "--top", damaged, "-o", out / "b.h5"],
            "encode": ["encode", damaged, "-m", model, "-o", out / "l.h5"],
            "evaluate": ["evaluate", damaged, "-m", model, "--samples", "8", "-k", "2"],
            "optimize": ["optimize", "-m", model, "--data", damaged, *fast, "-o", out / "o.npz"],
            "plot": ["plot", "-m", model, "--data", damaged, "--samples", samples,
                     "--only", "marginals", "-o", out / "figures"],
        },
        "latent": {
            "decode": ["decode", damaged, "-m", model, "-o", out / "d.npz"],
            "plot": ["plot", "-m", model, "--latent", damaged, "--only", "latent",
                     "-o", out / "figures"],
        },
        "checkpoint": {
            "train --resume": ["train", aligned, "-o", out / "m.h5", "--resume",
                               "--checkpoint", damaged, "--latent-dim", "2", *TINY],
        },
    }
    # fmt: on
    return commands[fmt]


SOURCES = {"model": "model.h5", "aligned": "aligned.h5", "latent": "latent.h5",
           "checkpoint": "run.ckpt.h5"}  # fmt: skip


def _outcome(args: list) -> tuple[int, list[str]]:
    """Exit code and the stderr lines that are not notes or warnings."""
    result = runner.invoke(app, [str(a) for a in args])
    lines = [
        line
        for line in result.stderr.splitlines()
        if line.strip() and not line.startswith(("note:", "warning:"))
    ]
    return result.exit_code, lines


# (command, field, damage) whose outcome differs from the rule: --top reads only the
# topology of an aligned file, so it needs the topology and never reads the frames
EXCEPTIONS = {
    ("align --top", "topology", "drop"): 65,
    ("align --top", "xyz", "nan"): 0,
}


def _check_damages(fmt: str, files: Path, tmp_path: Path, *, harmless: bool) -> None:
    """Each damage (the harmless ones, or the others) through each reading command."""
    source = files / SOURCES[fmt]
    damages = [d for d in damages_of(fmt, source) if d.harmless == harmless]
    wrong, tried = [], 0
    for damage in damages:
        damaged = tmp_path / f"damaged{source.suffix}"
        shutil.copy(source, damaged)
        with h5py.File(damaged, "a") as handle:
            damage.apply(handle)
        before = damaged.read_bytes()
        for command, args in _commands(fmt, files, damaged, tmp_path / "out").items():
            shutil.rmtree(tmp_path / "out", ignore_errors=True)
            (tmp_path / "out").mkdir()
            code, lines = _outcome(args)
            tried += 1
            expected = EXCEPTIONS.get((command, damage.field, damage.kind), 0 if harmless else 65)
            left = sorted(p.name for p in (tmp_path / "out").iterdir())
            refused = len(lines) == 1 and str(damaged) in lines[0] and not left
            if code != expected or (code != 0 and not refused):
                wrong.append((damage.field, damage.kind, command, code, lines[-1:], left))
            # an input is never touched (a checkpoint is removed once its run has ended)
            assert damaged.read_bytes() == before if damaged.exists() else code == 0
            if not damaged.exists():
                break
    assert tried >= len(damages)
    print(
        f"{fmt}: {len(damages)} damages x {tried // max(1, len(damages))} commands, "
        f"{tried} runs, {len(wrong)} wrong"
    )  # fmt: skip  (shown with pytest -s)
    assert not wrong, f"{len(wrong)} of {tried} wrong:\n" + "\n".join(map(str, wrong))


@pytest.mark.parametrize("fmt", list(SOURCES))
@pytest.mark.slow
def test_every_damaged_field_is_one_line_and_exit_65(files, tmp_path, fmt):
    _check_damages(fmt, files, tmp_path, harmless=False)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", list(SOURCES))
def test_dropping_an_optional_field_leaves_every_command_working(files, tmp_path, fmt):
    _check_damages(fmt, files, tmp_path, harmless=True)


def _npz_damages(path: Path) -> list[tuple[str, Callable[[dict], None], bool]]:
    """(name, change to the archive's arrays, harmless) for a latent .npz."""
    with np.load(path) as archive:
        names = list(archive.files)
    damages = []
    for name in names:
        damages.append((f"drop {name}", lambda a, n=name: a.pop(n), _latent_optional(name)))
        damages.append((f"type {name}", lambda a, n=name: a.__setitem__(n, np.array(["x"])), False))
        if name != "attrs":
            damages.append((f"shape {name}", lambda a, n=name: a.__setitem__(n, a[n][:-1]), False))
            damages.append(
                (f"nan {name}", lambda a, n=name: a.__setitem__(n, _with_nan(a[n])), False)
            )
    damages.append(("json attrs", lambda a: a.__setitem__("attrs", np.asarray("{]")), False))
    damages.append(("json-type attrs", lambda a: a.__setitem__("attrs", np.asarray("[1]")), False))
    return damages


def _latent_optional(name: str) -> bool:
    return name in OPTIONAL["latent"]


def _csv_damages(path: Path) -> list[tuple[str, Callable[[list], None], bool]]:
    """(name, change to the table's rows (header first), harmless) for a latent .csv."""

    def set_cell(row: int, column: int, value: str):
        return lambda rows: rows[row].__setitem__(column, value)

    def drop_column(column: int):
        return lambda rows: [r.pop(column) for r in rows]

    header = path.read_text().splitlines()[0].split(",")
    damages = [
        ("nan cell", set_cell(3, 0, "nan"), False),
        ("inf cell", set_cell(3, 1, "inf"), False),
        ("text cell", set_cell(3, 0, "x"), False),
        ("short row", lambda rows: rows[3].pop(), False),
        ("negative std", set_cell(3, header.index("std_0"), "-1"), False),
    ]
    for column, name in enumerate(header):
        harmless = not name.startswith(("mean_", "std_"))
        damages.append((f"drop {name}", drop_column(column), harmless))
    return damages


@pytest.mark.parametrize("suffix", ["npz", "csv"])
@pytest.mark.slow
def test_damaged_latent_npz_and_csv_are_one_line_and_exit_65(files, tmp_path, suffix):
    source = files / f"latent.{suffix}"
    damaged = tmp_path / f"damaged.{suffix}"
    wrong, tried = [], 0
    if suffix == "npz":
        cases = _npz_damages(source)
    else:
        cases = _csv_damages(source)
    for name, change, harmless in cases:
        if suffix == "npz":
            with np.load(source) as archive:
                arrays = {key: archive[key] for key in archive.files}
            change(arrays)
            np.savez(damaged, **arrays)
        else:
            rows = [line.split(",") for line in source.read_text().splitlines()]
            change(rows)
            damaged.write_text("\n".join(",".join(row) for row in rows) + "\n")
        commands = _commands("latent", files, damaged, tmp_path / "out")
        for command, args in commands.items():
            if harmless and command != "decode":
                continue  # one command shows a harmless change harmless; it is cheap
            shutil.rmtree(tmp_path / "out", ignore_errors=True)
            (tmp_path / "out").mkdir()
            code, lines = _outcome(args)
            tried += 1
            left = sorted(p.name for p in (tmp_path / "out").iterdir())
            refused = len(lines) == 1 and str(damaged) in lines[0] and not left
            # without its attrs a .npz is a plain archive of arrays: decode takes "mean"
            expected = 0 if harmless or (name, command) == ("drop attrs", "decode") else 65
            if code != expected or (code != 0 and not refused):
                wrong.append((name, command, code, lines[-1:], left))
    assert tried >= 10
    print(f"latent .{suffix}: {len(cases)} damages, {tried} runs, {len(wrong)} wrong")
    assert not wrong, f"{len(wrong)} of {tried} wrong:\n" + "\n".join(map(str, wrong))


@pytest.mark.parametrize(("values", "first", "index"), [(np.float32("nan"), 0, "[]"),
                                                       (np.array([[1.0, np.inf]]), 7, "[7, 1]")])  # fmt: skip
def test_a_non_finite_value_is_named_by_its_index_in_the_dataset(values, first, index):
    from vaetraj.errors import BadInputError
    from vaetraj.io._schema import Data, check_values

    with pytest.raises(BadInputError, match=rf"/x holds .* at index {re.escape(index)}"):
        check_values(
            np.asarray(values), Data("x", "float", ()), Path("f.h5"), "a file", first=first
        )
