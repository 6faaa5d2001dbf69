"""The divergence guard (spikes and non-finite steps caught in the compiled epoch,
rolled back at half the rate, exact resume through a recovery) and the refusal of a
model that explains nothing."""

from __future__ import annotations

import json

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from typer.testing import CliRunner

from vaetraj.cli.app import app
from vaetraj.errors import InterruptedRunError, NumericalError, TrainingFailedError
from vaetraj.io.trajectory import VaetrajWarning
from vaetraj.model import ModelConfig
from vaetraj.pipeline.model import load_model
from vaetraj.pipeline.runtime import session as session_module
from vaetraj.pipeline.train import train, train_features
from vaetraj.training import NON_FINITE, SPIKE, TrainConfig, make_trainer

KERNEL = ModelConfig(features=12, latent_dim=2, hidden=16, layers=3)
STEADY = TrainConfig(batch_size=10, lr=1e-3, schedule="constant", warmup_epochs=0)
SMALL = ModelConfig(latent_dim=2, hidden=32, layers=3)


def _settled(data):
    """A trainer and its state after three ordinary epochs (the running level is set)."""
    trainer = make_trainer(KERNEL, STEADY, frames=data.shape[0])
    state = trainer.init(key=jax.random.key(0))
    for _ in range(3):
        state, metrics = trainer.run_epoch(state, data, jnp.float32(0.01), key=jax.random.key(1))
        assert int(metrics.bad_step) == -1
    return trainer, state


def test_a_loss_that_stays_far_above_its_floor_is_a_spike_at_its_first_step():
    data = jax.random.normal(jax.random.key(2), (100, 12))
    trainer, state = _settled(data)
    state_after, metrics = trainer.run_epoch(
        state, 30.0 * data, jnp.float32(0.01), key=jax.random.key(1)
    )
    assert int(metrics.bad_kind) == SPIKE and int(metrics.bad_step) == 0
    # the level and floor are those of ordinary steps, untouched by the spike
    assert float(state_after.loss_floor) == float(state.loss_floor)
    assert float(state_after.loss_level) == float(state.loss_level)


@pytest.mark.slow
def test_a_spike_whose_high_steps_began_in_the_previous_epoch_is_still_caught():
    """Two batches per epoch: the first far-out epoch has two high steps (no spike yet),
    the next one's first step makes three in a row, dated to that epoch's step 0."""
    data = jax.random.normal(jax.random.key(2), (20, 12))
    trainer = make_trainer(KERNEL, STEADY, frames=20)
    state = trainer.init(key=jax.random.key(0))
    for _ in range(10):
        state, metrics = trainer.run_epoch(state, data, jnp.float32(0.01), key=jax.random.key(1))
    state, metrics = trainer.run_epoch(state, 30.0 * data, jnp.float32(0.01), key=jax.random.key(1))
    assert int(metrics.bad_step) == -1 and int(metrics.high_steps) == 2
    _, metrics = trainer.run_epoch(state, 30.0 * data, jnp.float32(0.01), key=jax.random.key(1))
    assert int(metrics.bad_kind) == SPIKE and int(metrics.bad_step) == 0


@pytest.mark.slow
def test_the_guard_watches_the_squared_error_whatever_the_likelihoods_offset():
    """Two Gaussian likelihoods that differ only in their fixed std: same parameters,
    same decoded means, losses far apart (the std's log and its 1/std^2). The level the
    guard judges spikes by is the squared error, the same for both: a log-likelihood's
    offset (negative for a small or learned std) cannot make a ratio trip."""
    data = jax.random.normal(jax.random.key(2), (100, 12))
    frozen = TrainConfig(batch_size=10, lr=1e-30, schedule="constant", warmup_epochs=0,
                         input_noise=0.0)  # fmt: skip
    levels, losses = [], []
    for std in (1.0, 0.01):
        config = ModelConfig(features=12, latent_dim=2, hidden=16, layers=3,
                             likelihood="gaussian", decoder_std=std)  # fmt: skip
        trainer = make_trainer(config, frozen, frames=100)
        state, metrics = trainer.run_epoch(
            trainer.init(key=jax.random.key(0)), data, jnp.float32(0.01), key=jax.random.key(1)
        )
        levels.append(float(state.loss_level))
        losses.append(float(metrics.loss))
    assert losses[1] > 100 * losses[0]
    assert levels[0] == pytest.approx(levels[1], rel=1e-5)
    assert 0 < levels[0] < 100  # about the feature count (12) for an untrained decoder


@pytest.mark.slow
def test_a_learned_std_model_trains_without_false_spikes():
    """The AEVB example's learned-std VAE at its own settings: its loss goes negative as
    the std shrinks, and judging spikes by the loss once stopped it as diverged."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "aevb_toy.py"
    spec = importlib.util.spec_from_file_location("aevb_toy", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    data, _ = example.clusters(4000, 0)
    config = ModelConfig(latent_dim=1, hidden=64, layers=3, likelihood="gaussian-learned")
    _, report = train_features(
        data,
        config,
        TrainConfig(
            epochs=300,
            batch_size=128,
            lr=3e-3,
            weight_decay=0.0,
            input_noise=0.0,
            beta=1.0,
            samples=3,
            kl_warmup=50,
        ),  # fmt: skip
    )
    assert report.recoveries == [] and report.status == "ok"


def test_one_batch_of_unusual_frames_is_not_a_spike():
    data = np.asarray(jax.random.normal(jax.random.key(2), (100, 12)))
    trainer, state = _settled(jnp.asarray(data))
    unusual = data.copy()
    unusual[7] *= 200.0  # one frame in one batch of ten: that batch's loss is ~400x
    _, metrics = trainer.run_epoch(
        state, jnp.asarray(unusual), jnp.float32(0.01), key=jax.random.key(1)
    )
    assert int(metrics.bad_step) == -1


def test_a_non_finite_step_stops_updates_at_once():
    data = jax.random.normal(jax.random.key(2), (100, 12))
    trainer, state = _settled(data)
    poisoned = data.at[:, 0].set(jnp.inf)
    after, metrics = trainer.run_epoch(state, poisoned, jnp.float32(0.01), key=jax.random.key(1))
    assert int(metrics.bad_kind) == NON_FINITE and int(metrics.bad_step) == 0
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(after.params), strict=True):
        np.testing.assert_array_equal(a, b)


def _chain(frames=200, seed=0):
    """A 6-bead 2D chain that hops between an extended and a folded shape."""
    rng = np.random.default_rng(seed)
    extended = np.stack([np.arange(6.0), np.zeros(6)], 1)
    folded = np.array([[0, 0], [1, 0], [2, 0], [2, 1], [1, 1], [0, 1]], float)
    state = (np.arange(frames) // 25) % 2
    xyz = np.where(state[:, None, None] == 0, extended, folded)
    xyz = xyz + rng.normal(scale=0.05, size=xyz.shape)
    return (xyz - xyz.mean(1, keepdims=True)).astype(np.float32)


@pytest.fixture
def spike_at_epoch_three(monkeypatch):
    """While a trainer runs at the full rate, epoch 2 has a step far above the floor (so
    it is not clean) and epoch 3 spikes at step 4: the pipeline's rollback, whatever
    makes a real run spike."""
    real = session_module.make_trainer

    def make(*args, **kwargs):
        trainer = real(*args, **kwargs)

        def run_epoch(state, data, beta, *, key):
            new, metrics = trainer.run_epoch(state, data, beta, key=key)
            if float(state.lr_scale) == 1.0 and int(state.epoch) == 1:
                metrics = metrics._replace(high_steps=jnp.int32(1))
            if float(state.lr_scale) == 1.0 and int(state.epoch) == 2:
                metrics = metrics._replace(bad_step=jnp.int32(3), bad_kind=jnp.int32(SPIKE))
            return new, metrics

        return trainer._replace(run_epoch=run_epoch)

    monkeypatch.setattr(session_module, "make_trainer", make)


@pytest.mark.slow
def test_a_bad_epoch_is_rolled_back_to_the_last_clean_one_at_half_the_rate(
    spike_at_epoch_three,
):
    xyz = _chain()
    config = TrainConfig(epochs=6, batch_size=32, lr=1e-2, warmup_epochs=0)
    model, report = train(xyz, SMALL, config)
    assert report.recoveries == [{"epoch": 3, "step": 4, "kind": "a loss spike", "lr": 5e-3}]
    assert report.final_lr == pytest.approx(5e-3)
    assert any(
        "epoch 3: a loss spike at step 4; rolled back to the end of epoch 1" in note
        for note in report.notes
    )
    # six epochs recorded, the failed attempts not among them: epoch 2 (not clean) was
    # run again at half the rate, with the rest
    np.testing.assert_array_equal(model.history["lr_scale"], [1, 0.5, 0.5, 0.5, 0.5, 0.5])
    assert report.status == "ok" and report.explained_variance_train > 0.5


@pytest.mark.slow
def test_resume_after_a_recovery_is_exact(spike_at_epoch_three, tmp_path):
    xyz = _chain()
    config = TrainConfig(epochs=6, batch_size=32, lr=1e-2, warmup_epochs=0, checkpoint_every=0)
    reference, _ = train(xyz, SMALL, config)
    checkpoint = tmp_path / "run.ckpt.h5"

    def stop_after_two(done, total, phase, detail=""):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(InterruptedRunError, match="after epoch 2"):
        train(xyz, SMALL, config, checkpoint=checkpoint, progress=stop_after_two)
    with h5py.File(checkpoint) as handle:  # the anchor, epoch 1, is kept beside epoch 2
        assert json.loads(handle.attrs["fields"])["anchor"]["epoch"] == 1
        assert "anchor/state/params" in handle
    resumed, report = train(xyz, SMALL, config, checkpoint=checkpoint, resume=True)
    assert [r["epoch"] for r in report.recoveries] == [3]
    for a, b in zip(
        jax.tree.leaves(reference.params), jax.tree.leaves(resumed.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(reference.history["loss"], resumed.history["loss"])


@pytest.mark.slow
def test_a_new_lr_on_resume_replaces_the_lowered_rate(spike_at_epoch_three, tmp_path):
    xyz = _chain()
    config = TrainConfig(epochs=6, batch_size=32, lr=1e-2, warmup_epochs=0, checkpoint_every=0)
    checkpoint = tmp_path / "run.ckpt.h5"

    def stop_after_four(done, total, phase, detail=""):
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(InterruptedRunError):
        train(xyz, SMALL, config, checkpoint=checkpoint, progress=stop_after_four)
    same, report = train(xyz, SMALL, config, checkpoint=checkpoint, resume=False)
    assert report.final_lr == pytest.approx(5e-3)  # an unbroken run keeps the halved rate
    with pytest.raises(InterruptedRunError):
        train(xyz, SMALL, config, checkpoint=checkpoint, progress=stop_after_four)
    lower = TrainConfig(**{**config.__dict__, "lr": 2e-3})
    model, report = train(xyz, SMALL, lower, checkpoint=checkpoint, resume=True)
    assert report.final_lr == pytest.approx(2e-3)
    np.testing.assert_array_equal(model.history["lr_scale"][-2:], [1.0, 1.0])


@pytest.mark.slow
def test_a_run_that_cannot_recover_stops_with_the_last_good_state(tmp_path):
    xyz = _chain()
    checkpoint = tmp_path / "nan.ckpt.h5"
    config = TrainConfig(epochs=5, lr=1e30, schedule="constant", optimizer="sgd", max_recoveries=2)
    with pytest.raises(NumericalError) as caught:
        train(xyz, SMALL, config, checkpoint=checkpoint)
    message = str(caught.value)
    assert "training diverged" in message and "after 2 recoveries" in message
    assert "epoch 1, step" in message and "lower lr" in message and "\n" not in message
    assert "lower --lr" in caught.value.as_flag()
    with h5py.File(checkpoint) as handle:
        fields = json.loads(handle.attrs["fields"])
        assert [r["lr"] for r in fields["recoveries"]] == [5e29, 2.5e29]
        for name in handle["state/params/decoder"]:
            assert np.isfinite(handle[f"state/params/decoder/{name}/w"][()]).all()


@pytest.mark.slow
def test_a_model_that_explains_nothing_is_a_failed_training():
    """The textbook's rate without the fan-in rule kills this 600-feature chain in its
    first steps: the decoder returns the mean structure whatever z is (issue case 1)."""
    rng = np.random.default_rng(0)
    base = np.cumsum(rng.normal(scale=0.4, size=(200, 3)), axis=0)
    bend = np.cumsum(rng.normal(scale=0.4, size=(200, 3)), axis=0)
    s = np.linspace(0, 1, 98)[:, None, None]
    xyz = ((1 - s) * base + s * bend + rng.normal(scale=0.05, size=(98, 200, 3))).astype(np.float32)
    old = TrainConfig(epochs=60, batch_size=16, lr=1e-2, lr_scaling="uniform", keep="last",
                      weight_decay=0.0, input_noise=0.0)  # fmt: skip
    with pytest.raises(TrainingFailedError, match=r"explain -?\d+\.\d% .* PCA with 1 component"):
        train(xyz, ModelConfig(latent_dim=1), old)
    # accepted when asked to, with the numbers that show it is dead
    model, report = train(
        xyz, ModelConfig(latent_dim=1), TrainConfig(**{**old.__dict__, "min_explained": 0.0})
    )
    assert report.status == "ok" and report.explained_variance_train < 0.05
    assert report.decoded_variance < 0.05 and report.pca_explained_variance > 0.9


@pytest.mark.slow
def test_cli_writes_a_dead_model_for_inspection_and_exits_3(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    xyz = rng.normal(size=(120, 6, 2)).astype(np.float32)  # noise: no latent can explain it
    np.save("noise.npy", xyz)
    runner = CliRunner()
    # one epoch at a tiny rate explains nothing; --min-explained 1 demands PCA's share
    args = ["train", "noise.npy", "--method", "none", "--epochs", "1", "--lr", "1e-6",
            "--hidden", "16", "--layers", "2", "--min-explained", "1"]  # fmt: skip
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 3, result.output
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["ok"] is False and record["status"] == "failed"
    assert record["explained_variance_train"] < record["pca_explained_variance"]
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert "model.h5: the model does not work" in error_lines[0]
    assert "written here for inspection" in error_lines[0] and "try " in error_lines[0]
    with pytest.warns(VaetrajWarning, match="failed the check after training"):
        model = load_model("model.h5")
    assert model.record.summary["status"] == "failed"
    # a later command says so, in one line, and still runs
    encoded = runner.invoke(app, ["encode", "noise.npy", "-o", "latent.h5"])
    assert encoded.exit_code == 0
    assert "warning: model.h5: this model failed the check after training" in encoded.stderr
    assert not (tmp_path / "model.ckpt.h5").exists()
    # without --json the summary table comes first, marked as failed
    result = runner.invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 3 and "FAILED" in result.stdout
