"""Training a Seq2SeqRNN through the training code of `experiments/train.py`: scheduled sampling
reads the step of the train step, and hard attention with estimator="reinforce" adds the
REINFORCE surrogate with a moving-average baseline that the train state and its checkpoints
hold, so a resumed run ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import dataclasses
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from attn.models import Seq2SeqRNNConfig
from attn.models import seq2seq_rnn as seq2seq_rnn_module
from attn.models.seq2seq_inputs import inverse_sigmoid_decay
from attn.training.config import default_config
from attn.training.loop import train_and_evaluate
from attn.training.steps import create_train_state, make_train_step
from attn.training.tasks import ReinforceBaseline, Seq2SeqTask

SMALL = dict(vocab_size=20, embed_dim=8, hidden_dim=8, decoder_hidden_dim=8)


def _batch() -> dict[str, jax.Array]:
    rng = np.random.default_rng(0)
    return {
        "inputs": jnp.asarray(rng.integers(3, 20, (4, 6)), jnp.int32),
        "targets": jnp.asarray(rng.integers(3, 20, (4, 5)), jnp.int32),
        "valid": jnp.ones(4, bool),
    }


def _copy(arrays):
    return jax.tree.map(jnp.copy, arrays)  # the train step donates its arrays


def test_scheduled_sampling_trains_with_the_inverse_sigmoid_ratio_of_the_step(monkeypatch):
    k = 10.0  # p(0) = 0.91, p(60) = 0.024
    used = []

    def recorded_decay(step, k):
        p = inverse_sigmoid_decay(step, k)
        jax.debug.callback(lambda s, q: used.append((int(s), float(q))), step, p)
        return p

    monkeypatch.setattr(seq2seq_rnn_module, "inverse_sigmoid_decay", recorded_decay)
    task = Seq2SeqTask("Seq2SeqRNN")
    config = Seq2SeqRNNConfig.named("luong", scheduled_sampling_k=k, **SMALL)
    state = create_train_state(task, config, optax.sgd(0.1), init_key=jax.random.key(0))
    train_step = make_train_step(task, state)
    key, batch = jax.random.key(1), _batch()
    losses = {}
    for step in (0, 60):
        _, metrics = train_step(_copy(state.arrays), batch, key, jnp.asarray(step, jnp.int32))
        losses[step] = float(metrics["loss"][0])
    jax.effects_barrier()
    assert [s for s, _ in used] == [0, 60]  # the step of each train step reached the model
    assert [p for _, p in used] == pytest.approx([k / (k + np.exp(s / k)) for s in (0, 60)])
    # The model reads its own predictions with probability 1 - p(60): the loss of that step is
    # the loss of a fixed teacher-forcing ratio p(60), with the same parameters and draws.
    fixed = dataclasses.replace(config, scheduled_sampling_k=None, teacher_forcing_ratio=used[1][1])
    fixed_state = create_train_state(task, fixed, optax.sgd(0.1), init_key=jax.random.key(0))
    _, metrics = make_train_step(task, fixed_state)(
        fixed_state.arrays, batch, key, jnp.asarray(60, jnp.int32)
    )
    assert float(metrics["loss"][0]) == losses[60] != losses[0]


def test_reinforce_adds_the_surrogate_and_updates_the_baseline_in_the_train_state():
    task = Seq2SeqTask("Seq2SeqRNN")
    config = Seq2SeqRNNConfig.named("bahdanau", estimator="reinforce", **SMALL)
    state = create_train_state(task, config, optax.adam(1e-2), init_key=jax.random.key(0))
    assert isinstance(state.merge()[2], ReinforceBaseline)
    # The loss that is differentiated is the cross-entropy plus a nonzero surrogate.
    batch, step = _batch(), jnp.asarray(0, jnp.int32)
    total, metrics = task.train_loss(
        state.merge()[0], batch, jax.random.key(1), step=step, baseline=jnp.zeros(())
    )
    cross_entropy = metrics["loss"][0] / metrics["loss"][1]
    surrogate = metrics["reinforce_loss"][0]
    assert abs(float(surrogate)) > 1e-3
    assert float(total) == pytest.approx(float(cross_entropy + surrogate), rel=1e-6)
    train_step = make_train_step(task, state)
    baseline = 0.0
    for step in range(3):
        state.arrays, metrics = train_step(
            state.arrays, _batch(), jax.random.key(1), jnp.asarray(step, jnp.int32)
        )
        total, count = metrics["reward"]
        baseline = 0.9 * baseline + 0.1 * float(total / count)  # b' = β b + (1 − β) mean R
        assert float(metrics["reinforce_baseline"][0]) == pytest.approx(baseline, rel=1e-5)
        assert float(state.merge()[2].value[...]) == pytest.approx(baseline, rel=1e-5)
        assert np.isfinite(float(metrics["reinforce_loss"][0]))
    assert baseline < 0  # the reward is the negative cross-entropy
    # Soft attention has no baseline and no surrogate.
    soft = Seq2SeqRNNConfig.named("bahdanau", **SMALL)
    soft_state = create_train_state(task, soft, optax.sgd(0.1), init_key=jax.random.key(0))
    assert len(soft_state.merge()) == 2


def _reinforce_config(num_train_steps: int, data_dir: str):
    config = default_config()
    config.dataset.name = "reverse"
    config.dataset.config = "tiny"
    config.dataset.data_dir = data_dir
    config.model.family = "Seq2SeqRNN"
    config.model.variant = "bahdanau"
    config.model.overrides.estimator = "reinforce"
    config.model.overrides.hidden_dim = 8
    config.model.overrides.embed_dim = 8
    config.batch_size = 8
    config.num_train_steps = num_train_steps
    config.optimizer.schedule = "constant"  # the same rates whatever the run length
    config.optimizer.learning_rate = 1e-2
    config.log_every_steps = config.checkpoint_every_steps = 3
    config.eval_every_steps = 100
    config.eval.decode = False
    config.eval.num_batches = 1
    config.eval.num_attention_maps = 0
    return config


def _checkpoint(workdir, step: int) -> dict:
    """The train-state arrays saved at `step`, as the nested dict stored on disk."""
    return ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")


def test_a_resumed_reinforce_run_restores_the_baseline_and_ends_bit_identical(tmp_path, capsys):
    data_dir = str(tmp_path / "data")
    uninterrupted, resumed = tmp_path / "uninterrupted", tmp_path / "resumed"
    config = _reinforce_config(6, data_dir)
    train_and_evaluate(config, str(uninterrupted))
    # The same run stopped after step 3: its workdir without the checkpoint of step 6.
    shutil.copytree(uninterrupted, resumed)
    shutil.rmtree(resumed / "checkpoints" / "6")
    halfway = _checkpoint(resumed, 3)
    assert float(halfway["2"]) < 0  # (model, optimizer, baseline): the baseline was saved
    capsys.readouterr()
    result = train_and_evaluate(config, str(resumed))
    assert result.step == 6
    assert "resumed from the checkpoint of step 3" in capsys.readouterr().out
    final, expected = _checkpoint(resumed, 6), _checkpoint(uninterrupted, 6)
    assert float(final["2"]) != float(halfway["2"])
    for got, want in zip(jax.tree.leaves(final), jax.tree.leaves(expected), strict=True):
        np.testing.assert_array_equal(got, want)
