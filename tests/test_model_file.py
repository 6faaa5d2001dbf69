"""The model file: a bit-for-bit round trip, and every way a file can fail to be one."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import jax
import numpy as np
import pytest

from vaetraj.errors import EXIT_BAD_INPUT, BadInputError, InputMissingError
from vaetraj.model import ModelConfig
from vaetraj.pipeline.model import load_model
from vaetraj.pipeline.train import train
from vaetraj.training import TrainConfig


@pytest.fixture(scope="module")
def trained(polymer_2d):
    from vaetraj import AlignConfig, align

    xyz = align(polymer_2d, AlignConfig()).xyz
    model, report = train(
        xyz,
        ModelConfig(latent_dim=2, hidden=32, layers=3, posterior="full"),
        TrainConfig(epochs=3, min_explained=0),  # a file to read back, not a good model
    )
    return model, report, xyz


def test_round_trip_is_bit_for_bit(trained, tmp_path):
    model, report, xyz = trained
    path = tmp_path / "model.h5"
    model.save(path)
    loaded = load_model(path)
    assert loaded.config == model.config
    for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(loaded.params), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    for name in ("normalization_mean", "normalization_std", "atom_indices"):
        np.testing.assert_array_equal(getattr(model.record, name), getattr(loaded.record, name))
    for name in ("weights", "means", "scale_trils"):
        np.testing.assert_array_equal(model.record.density[name], loaded.record.density[name])
    for name, values in model.history.items():
        np.testing.assert_array_equal(values, loaded.history[name])
    assert loaded.summary == model.summary and loaded.alignment == model.alignment
    assert loaded.record.train_config == model.record.train_config
    assert loaded.record.provenance["jax_version"] == jax.__version__
    np.testing.assert_array_equal(model.encode(xyz)[0], loaded.encode(xyz)[0])
    assert loaded.topology is None  # an array has none
    # the summary the file keeps is the report's
    assert loaded.summary["recon_rmsd_train"] == pytest.approx(report.recon_rmsd_train)


def test_model_api_shapes_and_sampling(trained):
    model, _, xyz = trained
    mean, std = model.encode(xyz[:10])
    assert mean.shape == std.shape == (10, 2) and (std > 0).all()
    assert model.decode(mean).shape == (10, 12, 2)
    samples = model.sample(7, key=jax.random.key(0))
    assert samples.shape == (7, 12, 2) and np.isfinite(samples).all()
    assert model.sample(3, key=jax.random.key(0), prior="standard").shape == (3, 12, 2)
    with pytest.raises(BadInputError, match="latent dimension 2"):
        model.decode(np.zeros((4, 3)))
    with pytest.raises(BadInputError, match="do not match"):
        model.encode(xyz[:, :5])


def _stats(change):
    """An action that edits the model's data_stats JSON with `change(dict)`."""

    def action(handle):
        import json

        stats = json.loads(handle.attrs["data_stats"])
        change(stats)
        handle.attrs["data_stats"] = json.dumps(stats)

    return action


def _damage(path, action):
    with h5py.File(path, "a") as handle:
        action(handle)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        (lambda h: h.attrs.__setitem__("format_version", 99), "format version 99"),
        (lambda h: h.attrs.__delitem__("model_config"), "missing attribute 'model_config'"),
        (lambda h: h.__delitem__("params/decoder/0/w"), "params/decoder/0/w missing"),
        (lambda h: h.attrs.__setitem__("format", "vaetraj-aligned"), "not a vaetraj model"),
        (lambda h: h.attrs.__setitem__("model_config", "{]"), "'model_config' is not valid JSON"),
        (lambda h: h["params/encoder/0/w"].__setitem__((0, 0), np.nan), "encoder/0/w holds nan"),
        (lambda h: h["normalization/std"].__setitem__(0, 0.0), "std must be positive"),
        (_stats(lambda d: d["bond_mean"].__setitem__(0, float("nan"))), "bond_mean holds a non"),
        (_stats(lambda d: d["angle_lo"].pop()), "bad data_stats \\(angle_lo must hold"),
        (_stats(lambda d: d.__setitem__("bonds", [[0, 99]])), "bonds name atoms outside"),
        (_stats(lambda d: d.__setitem__("surprise", 1)), "bad data_stats"),
        (  # the config's own check, naming the file's field and not the CLI's flag
            lambda h: h.attrs.__setitem__(
                "model_config",
                h.attrs["model_config"].replace('"latent_dim": 2', '"latent_dim": -1'),
            ),
            r"bad model_config \(latent_dim must be at least 1, got -1\)",
        ),
    ],
)
def test_damaged_model_files_fail_with_one_line(trained, tmp_path, action, message):
    path = tmp_path / "model.h5"
    trained[0].save(path)
    _damage(path, action)
    with pytest.raises(BadInputError, match=message) as info:
        load_model(path)
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_not_hdf5_and_missing(tmp_path):
    path = tmp_path / "model.h5"
    path.write_text("hello")
    with pytest.raises(BadInputError, match="not an HDF5 file"):
        load_model(path)
    with pytest.raises(InputMissingError):
        load_model(tmp_path / "absent.h5")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda stats: stats["potential"]["angles"]["values"][0].__setitem__(0, float("nan")),
            "non-finite",
        ),
        (lambda stats: stats["potential"].pop("bond_flat"), "bond_flat"),
        (lambda stats: stats["potential"]["angles"].__setitem__("lo", [0.0]), "angle_table"),
        (lambda stats: stats.__setitem__("energy_high", [1.0]), "energy_high"),
    ],
)
def test_a_damaged_statistical_potential_is_refused_when_read(tmp_path, model_2d, damage, message):
    """The potential and the judge's ranges are checked when the model is read (exit 65
    naming them), not met as a traceback in the middle of a refinement."""
    import json

    from vaetraj.io.model_file import read_model_file, write_model_file

    record = read_model_file(model_2d)
    stats = json.loads(json.dumps(record.data_stats))
    damage(stats)
    record = dataclasses.replace(record, data_stats=stats)
    write_model_file(tmp_path / "damaged.h5", record, overwrite=False)
    with pytest.raises(BadInputError, match=message) as caught:
        load_model(tmp_path / "damaged.h5")
    assert caught.value.exit_code == EXIT_BAD_INPUT


DATA = Path(__file__).parent / "data"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "inputs"),
    [("cartesian", "frames-cartesian.npy"), ("features", "table-features.npy")],
)
def test_a_model_file_written_by_an_earlier_vaetraj_still_works(tmp_path, kind, inputs):
    """Model files of format version 1, written by vaetraj on 2026-12-07 (tests/data:
    a 12-bead 2D polymer with principal-axes alignment, and a 6-column feature table;
    hidden 16, 5 epochs): they load, and `encode` and `decode --no-refine` give what
    they gave then (issue 32: a new model-file owner must keep them loading, with the
    same numbers). Within 1e-6, not bit for bit: another CPU may round matmuls apart."""
    from conftest import run

    expected = np.load(DATA / "expected-v1.npz")
    model = DATA / f"model-{kind}-v1.h5"
    with h5py.File(model) as handle:
        assert int(handle.attrs["format_version"]) == 1
    latent = tmp_path / "latent.h5"
    result = run("encode", DATA / inputs, "-m", model, "-o", latent)
    assert result.exit_code == 0, result.stderr
    with h5py.File(latent) as handle:
        np.testing.assert_allclose(handle["mean"][()], expected[f"{kind}_mean"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(handle["std"][()], expected[f"{kind}_std"], rtol=0, atol=1e-6)
    np.save(tmp_path / "z.npy", expected["z"])
    suffix = ".npz" if kind == "cartesian" else ".csv"
    decoded = tmp_path / f"decoded{suffix}"
    result = run("decode", tmp_path / "z.npy", "-m", model, "--no-refine", "-o", decoded)
    assert result.exit_code == 0, result.stderr
    if kind == "cartesian":
        with np.load(decoded) as archive:
            values = archive["arr"]
    else:
        values = np.loadtxt(decoded, delimiter=",", skiprows=1)
    np.testing.assert_allclose(values, expected[f"{kind}_decoded"], rtol=0, atol=1e-6)


def test_a_version_1_file_is_migrated_to_the_current_record():
    """read -> migrate -> current: a file of format version 1 (tests/data, written by
    vaetraj on 2026-12-07) loads as today's record: its summary becomes the versioned
    record of named fields, its training config an object."""
    from vaetraj.configs import TrainConfig
    from vaetraj.io.model_file import SUMMARY_FIELDS, SUMMARY_VERSION, read_model_file

    with h5py.File(DATA / "model-cartesian-v1.h5") as handle:
        old = json.loads(handle.attrs["summary"])
    record = read_model_file(DATA / "model-cartesian-v1.h5")
    assert record.summary["version"] == SUMMARY_VERSION
    assert set(record.summary) - {"version"} <= set(SUMMARY_FIELDS) < set(old) | {"version"}
    assert all(record.summary[name] == old[name] for name in record.summary if name != "version")
    assert isinstance(record.train_config, TrainConfig) and record.train_config.epochs == 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.summary = {}  # type: ignore[misc]


def test_the_summary_is_a_record_of_named_fields_not_the_report(model_2d):
    """A written model keeps SUMMARY_FIELDS of the training report and its version, not
    whatever the report holds: each field is one the report has, and a report without
    one (a field renamed) is refused rather than written without it."""
    from vaetraj.io.model_file import SUMMARY_FIELDS, training_summary
    from vaetraj.pipeline.train_report import TrainReport

    summary = load_model(model_2d).summary
    assert set(summary) == {"version", *SUMMARY_FIELDS}
    report_fields = {field.name for field in dataclasses.fields(TrainReport)}
    assert set(SUMMARY_FIELDS) <= report_fields
    with h5py.File(model_2d) as handle:
        assert int(handle.attrs["format_version"]) == 2
    renamed = {k: v for k, v in summary.items() if k != "kept_epoch"}
    with pytest.raises(KeyError, match="kept_epoch"):
        training_summary(renamed)
