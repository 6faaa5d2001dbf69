"""Training: one compile per run, exact resume after an interrupt or kill -9, the
non-finite guard, data parallelism, and a known answer (two states separate)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import vaetraj_argv

from vaetraj.errors import InterruptedRunError, NumericalError
from vaetraj.model import ModelConfig
from vaetraj.pipeline.model import load_model
from vaetraj.pipeline.train import train
from vaetraj.training import TrainConfig, make_trainer

SMALL = ModelConfig(hidden=32, layers=3)


def _two_states(rng, frames=400):
    """A 6-bead 2D chain that hops between an extended and a folded shape."""
    extended = np.stack([np.arange(6.0), np.zeros(6)], 1)
    folded = np.array([[0, 0], [1, 0], [2, 0], [2, 1], [1, 1], [0, 1]], float)
    state = (np.arange(frames) // 50) % 2
    xyz = np.where(state[:, None, None] == 0, extended, folded)
    xyz = xyz + rng.normal(scale=0.05, size=xyz.shape)
    return (xyz - xyz.mean(1, keepdims=True)).astype(np.float32), state


@pytest.mark.slow  # 4.5 s: the default run stays under 2 minutes
def test_epoch_compiles_once_including_the_ragged_batch_and_beta_changes():
    config = ModelConfig(features=12, hidden=16, layers=3)
    trainer = make_trainer(config, TrainConfig(batch_size=32), frames=100)  # 3 full + 4
    state = trainer.init(key=jax.random.key(0))
    data = jax.random.normal(jax.random.key(1), (100, 12))
    for epoch in range(3):
        state, metrics = trainer.run_epoch(
            state, data, jnp.float32(0.1 * epoch), key=jax.random.key(2)
        )
    assert trainer.run_epoch._cache_size() == 1
    assert int(state.epoch) == 3 and int(metrics.bad_step) == -1
    assert trainer.batches_per_epoch == 4


@pytest.mark.slow
def test_two_states_separate_in_latent_space():
    rng = np.random.default_rng(0)
    xyz, state = _two_states(rng)
    model, report = train(xyz, SMALL, TrainConfig(epochs=40, batch_size=32, val_fraction=0.1))
    mean, _ = model.encode(xyz)
    # the states are linearly separable along the latent direction joining their centres
    direction = mean[state == 1].mean(0) - mean[state == 0].mean(0)
    projection = mean @ direction
    assert projection[state == 0].max() < projection[state == 1].min()
    assert report.recon_rmsd_train < 0.2  # the data's own spread is about 1
    assert report.active_units >= 1
    assert len(model.history["loss"]) == 40
    assert model.history["loss"][-1] < model.history["loss"][0]


@pytest.mark.slow
def test_interrupt_writes_checkpoint_and_resume_is_exact(tmp_path):
    rng = np.random.default_rng(0)
    xyz, _ = _two_states(rng, 200)
    config = TrainConfig(epochs=6, batch_size=32, checkpoint_every=0, min_explained=0)
    reference, _ = train(xyz, SMALL, config)
    checkpoint = tmp_path / "run.ckpt.h5"

    def stop_after_three(done, total, phase, detail=""):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(InterruptedRunError, match="after epoch 3"):
        train(xyz, SMALL, config, checkpoint=checkpoint, progress=stop_after_three)
    with h5py.File(checkpoint) as handle:
        assert '"epoch": 3' in handle.attrs["fields"]
    resumed, report = train(xyz, SMALL, config, checkpoint=checkpoint, resume=True)
    assert report.resumed_from_epoch == 3
    for a, b in zip(
        jax.tree.leaves(reference.params), jax.tree.leaves(resumed.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(reference.history["loss"], resumed.history["loss"])


@pytest.mark.slow
def test_a_swallowed_sigterm_still_stops_training_at_the_epoch_end(tmp_path):
    """A KeyboardInterrupt raised inside a __del__ or weakref callback is printed and
    ignored by Python; the stop request the signal handler records must still stop."""
    from vaetraj._interrupt import clear_stop, request_stop

    xyz, _ = _two_states(np.random.default_rng(0), 200)
    checkpoint = tmp_path / "run.ckpt.h5"

    def swallowed_at_two(done, total, phase, detail=""):
        if done == 2:
            request_stop()  # what the handler does before its exception is lost

    try:
        with pytest.raises(InterruptedRunError, match="after epoch 2"):
            train(xyz, SMALL, TrainConfig(epochs=6, checkpoint_every=0),
                  checkpoint=checkpoint, progress=swallowed_at_two)  # fmt: skip
    finally:
        clear_stop()
    assert checkpoint.exists()


@pytest.mark.slow
def test_resume_refuses_other_data(tmp_path):
    from vaetraj.errors import BadInputError

    rng = np.random.default_rng(0)
    xyz, _ = _two_states(rng, 200)
    checkpoint = tmp_path / "run.ckpt.h5"
    config = TrainConfig(epochs=4, checkpoint_every=0)

    def stop(done, total, phase, detail=""):
        raise KeyboardInterrupt

    with pytest.raises(InterruptedRunError):
        train(xyz, SMALL, config, checkpoint=checkpoint, progress=stop)
    other = np.concatenate([xyz, xyz[:, :2]], axis=1)
    with pytest.raises(BadInputError, match="6 atoms in 2D but the data have 8 atoms"):
        train(other, SMALL, config, checkpoint=checkpoint, resume=True)
    with pytest.raises(BadInputError, match="differ"):
        train(xyz[::-1].copy(), SMALL, config, checkpoint=checkpoint, resume=True)


@pytest.mark.slow
def test_non_finite_loss_stops_with_last_good_parameters(tmp_path):
    rng = np.random.default_rng(0)
    xyz, _ = _two_states(rng, 200)
    checkpoint = tmp_path / "nan.ckpt.h5"
    config = TrainConfig(epochs=5, lr=1e30, schedule="constant", optimizer="sgd")
    with pytest.raises(NumericalError, match=r"epoch \d+, step \d+.*lower lr"):
        train(xyz, SMALL, config, checkpoint=checkpoint)
    with h5py.File(checkpoint) as handle:
        for name in handle["state/params/decoder"]:
            assert np.isfinite(handle[f"state/params/decoder/{name}/w"][()]).all()


@pytest.mark.slow
def test_data_parallel_matches_one_device():
    """Two host devices (a batch sharded over both) give one device's loss curve."""
    script = textwrap.dedent(
        """
        import json, jax, jax.numpy as jnp, numpy as np
        from jax.sharding import Mesh, NamedSharding, PartitionSpec
        from vaetraj.model import ModelConfig
        from vaetraj.training import TrainConfig, make_trainer
        assert len(jax.devices()) == 2
        config = ModelConfig(features=12, hidden=32, layers=3)
        data = jax.random.normal(jax.random.key(1), (96, 12))
        curves = []
        for mesh in (None, Mesh(np.array(jax.devices()), ("batch",))):
            trainer = make_trainer(config, TrainConfig(batch_size=16), frames=96, mesh=mesh)
            state, x = trainer.init(key=jax.random.key(0)), data
            if mesh is not None:
                state, x = jax.device_put((state, x), NamedSharding(mesh, PartitionSpec()))
            losses = []
            for _ in range(4):
                state, m = trainer.run_epoch(state, x, jnp.float32(0.5), key=jax.random.key(2))
                losses.append(float(m.loss))
            curves.append(losses)
        # one all-reduce a step (every gradient array, the sums and the count in one),
        # and a step with no frames on any device (a streamed epoch's padding) is a no-op
        hlo = trainer.run_epoch.lower(
            state, x, jnp.float32(0.5), key=jax.random.key(2)).compile().as_text()
        reduces = hlo.count("all-reduce(") + hlo.count("all-reduce-start(")
        carry, _, keys = trainer.start(state, jax.random.key(3))
        block = jax.device_put(jnp.ones((1, trainer.rows, 12)), NamedSharding(mesh, PartitionSpec(None, "batch")))
        masks = jax.device_put(jnp.zeros((1, trainer.rows)), NamedSharding(mesh, PartitionSpec(None, "batch")))
        end, sums = trainer.run_window(carry, block, masks, keys[:1], np.zeros(1, np.int32),
            jnp.float32(0.5), state.lr_scale, np.zeros(12, np.float32), np.ones(12, np.float32))
        same = all(bool(jnp.array_equal(a, b)) for a, b in zip(jax.tree.leaves(carry), jax.tree.leaves(end)))
        print(json.dumps([curves, reduces, same, float(sums[0])]))
        """
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    import json

    (one, two), reduces, unchanged, empty_loss = json.loads(out.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(one, two, rtol=1e-4)
    assert reduces == 1
    assert unchanged and empty_loss == 0.0
    assert one[-1] < one[0]


def _train_cli(folder: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        vaetraj_argv(
            "train",
            "data.npy",
            "--epochs",
            "40",
            "--hidden",
            "32",
            "--layers",
            "3",
            "--checkpoint-every",
            "1",
            "--method",
            "none",
            *extra,
        ),  # fmt: skip
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr


def _wait_for_epoch(checkpoint: Path, epoch: int, process, timeout=120) -> None:
    import json

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(_finish(process))
        try:
            with h5py.File(checkpoint, "r") as handle:
                if json.loads(handle.attrs["fields"])["epoch"] >= epoch:
                    return
        except (OSError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


@pytest.mark.parametrize("how", ["kill-9", "sigterm"])
@pytest.mark.slow
def test_killed_cli_run_resumes_to_the_uninterrupted_parameters(tmp_path, how):
    rng = np.random.default_rng(0)
    xyz, _ = _two_states(rng, 200)
    for name in ("whole", "broken"):
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "data.npy", xyz)
    code, stderr = _finish(_train_cli(tmp_path / "whole"))
    assert code == 0, stderr

    folder = tmp_path / "broken"
    process = _train_cli(folder)
    _wait_for_epoch(folder / "model.ckpt.h5", 3, process)
    process.send_signal(signal.SIGKILL if how == "kill-9" else signal.SIGTERM)
    code, stderr = _finish(process)
    if how == "sigterm":
        assert code == 75, stderr
        assert "--resume" in stderr
    assert not (folder / "model.h5").exists()
    assert (folder / "model.ckpt.h5").exists()
    code, stderr = _finish(_train_cli(folder, "--resume"))
    assert code == 0, stderr
    assert not (folder / "model.ckpt.h5").exists()  # removed once the model is written
    a, b = load_model(tmp_path / "whole" / "model.h5"), load_model(folder / "model.h5")
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)


def test_weights_draw_the_training_frames_in_proportion(tmp_path, polymer_2d):
    """Weights 0 on every odd frame: only even frames are drawn, for training and for
    validation, as many as the split holds; weights with a lag are refused; a weights
    file of another length is one line, exit 65."""
    import dataclasses

    from conftest import assert_error, run

    from vaetraj.errors import UsageError
    from vaetraj.pipeline.train import _resampled
    from vaetraj.pipeline.training_set import TrainingSet

    frames = len(polymer_2d)
    weights = np.where(np.arange(frames) % 2 == 0, 2.0, 0.0)
    data = TrainingSet(xyz=polymer_2d.astype(np.float32), units="reduced", alignment={},
                       atom_indices=np.arange(12), weights=weights, weights_source="w.npy")  # fmt: skip
    train_index, val_index = np.arange(0, 300), np.arange(300, frames)
    drawn_train, drawn_val = _resampled(data, train_index, val_index, TrainConfig(seed=3))
    assert len(drawn_train) == 300 and len(drawn_val) == frames - 300
    assert np.all(drawn_train % 2 == 0) and np.all(drawn_val % 2 == 0)
    assert set(drawn_val) <= set(val_index) and len(set(drawn_train)) > 100
    with pytest.raises(UsageError, match="lag"):
        _resampled(data, train_index, val_index, dataclasses.replace(TrainConfig(), lag=2))
    np.savez(tmp_path / "polymer.npz", arr=polymer_2d)
    np.save(tmp_path / "w.npy", weights[:-1])
    result = run("train", tmp_path / "polymer.npz", "--weights", tmp_path / "w.npy", "--epochs", "1",
                 "-o", tmp_path / "m.h5")  # fmt: skip
    assert_error(result, 65, "w.npy", f"{frames - 1} weights for {frames} frames")
    assert not (tmp_path / "m.h5").exists()
