"""`vaetraj train` through the CLI: a run on an aligned file, and each bad input with
its one-line error and exit code, leaving no model behind."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_error, run

from vaetraj.model import DEFAULT_LATENT_DIM
from vaetraj.pipeline.model import load_model

# a network too small and too briefly trained to learn: the runs test files and errors,
# so the check that a model works is off
TINY = ("--hidden", "32", "--layers", "3", "--min-explained", "0")


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_align_then_train_defaults_to_aligned_h5(workdir, polymer_2d):
    np.save("polymer.npy", polymer_2d)
    assert run("align", "polymer.npy").exit_code == 0
    result = run("train", "--epochs", "3", *TINY, "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["ok"] and record["output"] == "model.h5" and record["epochs_run"] == 3
    assert record["train_frames"] + record["val_frames"] == len(polymer_2d)
    assert len(record["kl_per_dim"]) == DEFAULT_LATENT_DIM and record["recon_rmsd_train"] > 0
    # the validation share's own yardstick (issue 31): PCA of the training frames on them
    assert 0 < record["pca_explained_variance_val"] < 1
    model = load_model("model.h5")
    assert model.alignment["method"] == "principal" and model.atoms == 12
    assert model.record.density is not None and len(model.history["loss"]) == 3
    assert model.topology is None  # a bare array has none
    assert not (workdir / "model.ckpt.h5").exists()
    # an existing model is not overwritten
    assert_error(run("train", "--epochs", "1", *TINY), 73, "model.h5")


@pytest.mark.slow
def test_train_raw_input_with_kabsch(workdir, polymer_files):
    result = run(
        "train", polymer_files / "polymer.dcd", "--top", polymer_files / "polymer.pdb",
        "--method", "kabsch", "--epochs", "2", *TINY, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    model = load_model("model.h5")
    assert model.alignment["method"] == "kabsch" and model.record.reference is not None
    assert model.units == "nm"
    assert model.topology.n_atoms == model.atoms
    assert len(model.record.provenance["sources"]) == 1


def test_no_aligned_file(workdir):
    assert_error(run("train"), 66, "aligned.h5", "vaetraj align")


@pytest.mark.parametrize(
    ("frames", "args", "code", "fragment"),
    [
        (20, (), 65, "fewer than one batch of 32"),
        (1, ("--method", "none"), 65, "training needs at least 2"),
        (100, ("--latent-dim", "0"), 2, "--latent-dim must be at least 1"),
        (100, ("--latent-dim", "24"), 2, "below the 24 input features"),
        (100, ("--beta", "-1"), 2, "--beta must be zero or more"),
        (100, ("--val-fraction", "1.5"), 2, "--val-fraction"),
    ],
)
def test_bad_training_inputs(workdir, polymer_2d, frames, args, code, fragment):
    np.save("data.npy", polymer_2d[:frames])
    assert_error(run("train", "data.npy", "--epochs", "1", *TINY, *args), code, fragment)
    assert not (workdir / "model.h5").exists()


def test_non_finite_data(workdir, polymer_2d):
    data = polymer_2d.copy()
    data[5, 3, 1] = np.nan
    np.save("data.npy", data)
    assert_error(run("train", "data.npy", *TINY), 65, "non-finite", "frame 5")


@pytest.mark.slow
def test_resume_checks(workdir, polymer_2d):
    np.save("data.npy", polymer_2d[:100])
    assert_error(run("train", "data.npy", "--resume", *TINY), 66, "model.ckpt.h5")
    # a checkpoint of a 6-atom run, then --resume on 12-atom data
    from vaetraj.errors import InterruptedRunError
    from vaetraj.model import ModelConfig
    from vaetraj.pipeline.train import train
    from vaetraj.training import TrainConfig

    def stop(*_):
        raise KeyboardInterrupt

    with pytest.raises(InterruptedRunError):
        train(
            polymer_2d[:100, :6], ModelConfig(hidden=32, layers=3), TrainConfig(epochs=2),
            checkpoint="model.ckpt.h5", progress=stop,
        )  # fmt: skip
    assert_error(run("train", "data.npy", *TINY), 2, "--resume")
    assert_error(
        run("train", "data.npy", "--resume", "--method", "none", *TINY),
        65,
        "6 atoms in 2D but the data have 12 atoms",
    )
