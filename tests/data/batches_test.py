"""shift_right and BERT-style mask_tokens."""

import jax
import numpy as np
import pytest

from attn.data import BOS_ID, MASK_ID, shift_right
from attn.data import mask_tokens as mask


def test_shift_right_prepends_bos_and_drops_the_last_target():
    targets = np.array([[7, 8, 2, 0], [9, 2, 0, 0]], np.int32)
    out = np.asarray(shift_right(targets, BOS_ID))
    np.testing.assert_array_equal(out, [[1, 7, 8, 2], [1, 9, 2, 0]])
    assert out.dtype == np.int32
    jitted = jax.jit(shift_right, static_argnums=1)(targets, 1)
    np.testing.assert_array_equal(jitted, out)


def test_mask_tokens_follows_the_80_10_10_rule_and_spares_special_ids():
    rng = np.random.default_rng(0)
    inputs = rng.integers(5, 50, size=(64, 257)).astype(np.int32)
    inputs[:, 0] = BOS_ID
    inputs[:, -40:] = 0
    masked_jit = jax.jit(mask, static_argnames="vocab_size")
    out = {
        k: np.asarray(v) for k, v in masked_jit(inputs, jax.random.key(3), vocab_size=50).items()
    }
    picked = out["weights"] == 1
    np.testing.assert_array_equal(out["targets"], inputs)
    assert not picked[:, 0].any() and not picked[:, -40:].any()
    np.testing.assert_array_equal(out["inputs"][~picked], inputs[~picked])
    rate = picked.sum() / (64 * 216)
    assert 0.13 < rate < 0.17
    masked = (out["inputs"] == MASK_ID) & picked
    kept = (out["inputs"] == inputs) & picked
    assert 0.76 < masked.sum() / picked.sum() < 0.84
    # The "random token" 10 % sometimes draws the original token again.
    assert 0.09 < kept.sum() / picked.sum() < 0.14
    assert out["inputs"][picked & ~masked & ~kept].min() >= 5
    assert out["inputs"].max() < 50
    again = masked_jit(inputs, jax.random.key(3), vocab_size=50)
    np.testing.assert_array_equal(again["inputs"], out["inputs"])


def test_bad_batch_arguments_raise():
    with pytest.raises(ValueError, match=r"targets must be \[B, T\]"):
        shift_right(np.zeros(3, np.int32))
    with pytest.raises(TypeError, match="integer"):
        shift_right(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="rate"):
        mask(np.zeros((2, 3), np.int32), jax.random.key(0), vocab_size=9, rate=0.0)
    with pytest.raises(ValueError, match="vocab_size"):
        mask(np.zeros((2, 3), np.int32), jax.random.key(0), vocab_size=5)
    with pytest.raises(ValueError, match=r"inputs must be \[B, T\]"):
        mask(np.zeros(3, np.int32), jax.random.key(0), vocab_size=9)
