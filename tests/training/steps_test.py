"""Jitted train and eval steps: learning, donation, per-step randomness, bfloat16, the guard."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from attn.models import TransformerConfig
from attn.training.steps import (
    NonFiniteLossError,
    check_finite_loss,
    create_train_state,
    make_eval_step,
    make_train_step,
)
from attn.training.tasks import LossOptions, Seq2SeqTask

B, S, T, V = 4, 7, 5, 19


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    inputs = rng.integers(5, V, (B, S)).astype(np.int32)
    targets = rng.integers(5, V, (B, T)).astype(np.int32)
    inputs[0, 5:] = 0  # padding
    targets[1, 3:] = 0
    return {"inputs": inputs, "targets": targets, "valid": np.ones(B, bool)}


def make_state(dtype=None, dropout=0.0):
    config = TransformerConfig.named(
        "tiny", vocab_size=V, model_dim=16, mlp_dim=32, dtype=dtype, dropout_rate=dropout
    )
    task = Seq2SeqTask("Transformer", LossOptions(label_smoothing=0.1))
    state = create_train_state(task, config, optax.adam(1e-2), init_key=jax.random.key(0))
    return task, state


@pytest.fixture(scope="module")
def trainer():
    """A model with dropout, its state and its jitted train step (compiled once)."""
    task, state = make_state(dropout=0.1)
    return task, state, make_train_step(task, state)


def copy(tree):
    return jax.tree.map(jnp.copy, tree)


def test_train_step_learns_and_donates(batch, trainer):
    task, state, step = trainer
    key = jax.random.key(1)
    losses = []
    arrays = copy(state.arrays)
    for s in range(30):
        old = jax.tree.leaves(arrays)[0]
        arrays, metrics = step(arrays, batch, key, jnp.int32(s))
        assert old.is_deleted()  # the buffers were donated
        total, count = metrics["loss"]
        losses.append(float(total / count))
    assert count == (batch["targets"] != 0).sum()
    assert losses[-1] < 0.5 * losses[0]
    eval_metrics = make_eval_step(task, state)(arrays, batch, key)
    assert float(eval_metrics["accuracy"][0] / eval_metrics["accuracy"][1]) > 0.5


def test_per_step_randomness_depends_on_key_and_step_only(batch, trainer):
    _, state, step = trainer
    results = [
        float(step(copy(state.arrays), batch, jax.random.key(k), jnp.int32(s))[1]["loss"][0])
        for k, s in ((1, 3), (1, 3), (1, 4), (2, 3))
    ]
    assert results[0] == results[1]  # same key and step: same dropout masks, bit for bit
    assert results[0] != results[2]  # another step draws other masks
    assert results[0] != results[3]  # and so does another key


def test_bfloat16_compute_keeps_float32_parameters(batch):
    task, state = make_state(dtype="bfloat16")
    step = make_train_step(task, state)
    arrays, metrics = step(state.arrays, batch, jax.random.key(1), jnp.int32(0))
    dtypes = {
        leaf.dtype for leaf in jax.tree.leaves(arrays) if jnp.issubdtype(leaf.dtype, jnp.floating)
    }
    assert dtypes == {jnp.dtype(jnp.float32)}
    assert metrics["loss"][0].dtype == jnp.float32
    assert np.isfinite(float(metrics["loss"][0]))


def test_non_finite_guard():
    check_finite_loss(1.5, 3, last_checkpoint=None, workdir="/w")
    with pytest.raises(NonFiniteLossError, match=r"nan at step 7.*checkpoint \(step 5\) is kept"):
        check_finite_loss(float("nan"), 7, last_checkpoint=5, workdir="/w")
    with pytest.raises(NonFiniteLossError, match="inf at step 2.*no good checkpoint"):
        check_finite_loss(float("inf"), 2, last_checkpoint=None, workdir="/w")
    with pytest.raises(NonFiniteLossError, match=r"parameters are not finite after step 4"):
        check_finite_loss(1.5, 4, last_checkpoint=3, workdir="/w", parameters_finite=False)
