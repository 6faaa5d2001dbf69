"""Plain feature tables: the categorical likelihood, train_features, and the CLI path
(`train --features`, encode, decode, sample) with its bad inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_error, run

from vaetraj import ModelConfig, TrainConfig, load_model, train_features
from vaetraj.errors import BadInputError, UsageError
from vaetraj.io.features import read_features, write_features
from vaetraj.model import compute_log_likelihood, compute_negative_log_likelihood, decode_frame

CLASSES = 8


def _one_hot(frames: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    labels = np.random.default_rng(seed).integers(0, CLASSES, frames)
    return np.eye(CLASSES, dtype=np.float32)[labels], labels


def test_categorical_likelihood_is_the_log_softmax_of_the_class():
    config = ModelConfig(features=CLASSES, latent_dim=1, likelihood="categorical")
    logits = np.random.default_rng(0).normal(size=CLASSES) * 3
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    x = np.eye(CLASSES, dtype=np.float32)[5]
    expected = logits[5] - np.log(np.exp(logits).sum())
    got = compute_log_likelihood(
        jnp.asarray(x), jnp.asarray(probabilities, jnp.float32), 1.0, config
    )
    nll = compute_negative_log_likelihood(
        jnp.asarray(x), jnp.asarray(probabilities, jnp.float32), 1.0, config
    )
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    np.testing.assert_allclose(float(nll), -expected, rtol=1e-5)


def test_categorical_decoder_gives_probabilities():
    from vaetraj.model import init_vae

    config = ModelConfig(features=CLASSES, latent_dim=2, hidden=8, likelihood="categorical")
    params = init_vae(config, key=jax.random.key(0))
    mean, _ = decode_frame(params, jnp.array([0.3, -1.0]), config)
    assert float(mean.min()) >= 0
    np.testing.assert_allclose(float(mean.sum()), 1.0, rtol=1e-6)


@pytest.mark.slow
def test_train_features_reconstructs_classes_and_decodes_tables():
    table, labels = _one_hot(600)
    model, report = train_features(
        table,
        ModelConfig(latent_dim=1, hidden=32, layers=3, likelihood="categorical"),
        TrainConfig(epochs=40, beta=0.05, lr=2e-2, batch_size=32),
    )
    representation = model.representation
    assert representation.kind == "table" and not representation.takes_frames
    assert model.features == CLASSES
    assert model.data_stats is None  # no structure, no structure statistics
    mean, std = model.encode(table)
    assert mean.shape == (600, 1) and std.shape == (600, 1)
    probabilities = model.decode(mean)
    assert probabilities.shape == (600, CLASSES)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # 8 classes on one latent axis: far above the 1/8 of guessing
    assert (probabilities.argmax(axis=1) == labels).mean() > 0.6
    assert report.dims == 1 and report.atoms == CLASSES


def test_read_features_formats_and_errors(tmp_path):
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    for name in ("t.npy", "t.npz", "t.csv"):
        write_features(tmp_path / name, table)
        np.testing.assert_array_equal(read_features(tmp_path / name), table)
    np.save(tmp_path / "one.npy", np.arange(5.0))
    assert read_features(tmp_path / "one.npy").shape == (5, 1)
    bad = {
        "cube.npy": (lambda p: np.save(p, np.zeros((2, 3, 3))), "expected a table"),
        "nan.npy": (lambda p: np.save(p, np.array([[1.0, np.nan]])), "row 0, column 1"),
        "ragged.csv": (lambda p: p.write_text("1,2\n3\n"), "different numbers of columns"),
        "words.csv": (lambda p: p.write_text("a,b\n1,x\n"), "not a table of numbers"),
    }
    for name, (make, fragment) in bad.items():
        make(tmp_path / name)
        with pytest.raises(BadInputError, match=fragment):
            read_features(tmp_path / name)
    np.save(tmp_path / "cut.npy", np.zeros((100, 4)))
    data = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) - 40])
    with pytest.raises(BadInputError, match="cut.npy"):
        read_features(tmp_path / "cut.npy")
    with pytest.raises(UsageError, match="must be .npy, .npz or .csv"):
        read_features(tmp_path / "t.txt")


@pytest.fixture(scope="module")
def class_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("features")
    table, labels = _one_hot(300, seed=1)
    np.save(folder / "classes.npy", table)
    result = run(
        "train", folder / "classes.npy", "--features", "--likelihood", "categorical",
        "--latent-dim", "1", "--hidden", "16", "--layers", "3", "--epochs", "3", "--min-explained", "0",
        "-o", folder / "classes.h5",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return folder


@pytest.mark.slow
def test_cli_encode_sample_decode_feature_tables(class_model, tmp_path):
    folder = class_model
    model = load_model(folder / "classes.h5")
    table = np.load(folder / "classes.npy")
    result = run(
        "encode", folder / "classes.npy", "-m", folder / "classes.h5", "-o", tmp_path / "z.csv"
    )
    assert result.exit_code == 0, result.stderr
    written = np.loadtxt(tmp_path / "z.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(written[:, 0], model.encode(table)[0][:, 0], rtol=1e-5, atol=1e-6)
    result = run("sample", "-m", folder / "classes.h5", "-n", "7", "-o", tmp_path / "s.npy")
    assert result.exit_code == 0, result.stderr
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (7, CLASSES)
    np.testing.assert_allclose(samples.sum(axis=1), 1.0, rtol=1e-5)
    result = run("decode", "--z", "0.25", "-m", folder / "classes.h5", "-o", tmp_path / "d.csv")
    assert result.exit_code == 0, result.stderr
    decoded = np.loadtxt(tmp_path / "d.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(decoded, model.decode(np.array([[0.25]]))[0], rtol=1e-5)


def test_cli_feature_bad_inputs(class_model, tmp_path):
    folder = class_model
    np.savetxt(tmp_path / "reals.csv", np.random.default_rng(0).normal(size=(50, 8)), delimiter=",")
    result = run(
        "train", tmp_path / "reals.csv", "--features", "--likelihood", "categorical",
        "--latent-dim", "1", "-o", tmp_path / "m.h5",
    )  # fmt: skip
    assert_error(result, 65, "reals.csv", "one-hot rows")
    assert not (tmp_path / "m.h5").exists()
    np.save(tmp_path / "five.npy", np.eye(5))
    assert_error(run("encode", tmp_path / "five.npy", "-m", folder / "classes.h5", "-o",
                     tmp_path / "z.h5"), 65, "five.npy", "5 feature(s)", "trained on 8")  # fmt: skip
    assert not (tmp_path / "z.h5").exists()
    assert_error(run("sample", "-m", folder / "classes.h5", "-o", tmp_path / "s.pdb"), 2, ".pdb")
    assert_error(run("optimize", "-m", folder / "classes.h5"), 2, "feature table")
    assert_error(run("train", tmp_path / "missing.npy", "--features", "-o", tmp_path / "m.h5"),
                 66, "missing.npy")  # fmt: skip


def test_api_encode_takes_a_table_or_its_path(class_model):
    from vaetraj import encode

    model = load_model(class_model / "classes.h5")
    table = np.load(class_model / "classes.npy")
    from_array = encode(model, table, recon=True)
    from_path = encode(model, class_model / "classes.npy")
    np.testing.assert_array_equal(from_array.mean, from_path.mean)
    assert from_array.rg is None and from_array.recon_rmsd.shape == (len(table),)
    with pytest.raises(BadInputError, match="8 features"):
        encode(model, table[:, :5])
