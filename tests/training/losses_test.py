"""Masked cross-entropy with label smoothing and z-loss against NumPy formulas."""

import jax.numpy as jnp
import numpy as np
import pytest

from attn.training.losses import cross_entropy_per_token, masked_cross_entropy


def numpy_loss(logits, labels, smoothing, z_loss):
    logits = logits.astype(np.float64)
    V = logits.shape[-1]
    log_z = np.log(np.sum(np.exp(logits), axis=-1))
    log_p = logits - log_z[..., None]
    q = np.full(logits.shape, smoothing / V)
    np.put_along_axis(q, labels[..., None], 1 - smoothing + smoothing / V, axis=-1)
    return -np.sum(q * log_p, axis=-1) + z_loss * log_z**2


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(3, 5, 7)).astype(np.float32)
    labels = rng.integers(0, 7, size=(3, 5))
    return logits, labels


@pytest.mark.parametrize("smoothing, z_loss", [(0.0, 0.0), (0.1, 0.0), (0.2, 1e-2)])
def test_per_token_matches_numpy(batch, smoothing, z_loss):
    logits, labels = batch
    got = cross_entropy_per_token(logits, labels, label_smoothing=smoothing, z_loss=z_loss)
    np.testing.assert_allclose(got, numpy_loss(logits, labels, smoothing, z_loss), rtol=1e-5)


def test_mask_ignores_padding(batch):
    logits, labels = batch
    mask = np.ones((3, 5), bool)
    mask[1, 2:] = False
    loss, count = masked_cross_entropy(logits, labels, mask, label_smoothing=0.1)
    per_token = numpy_loss(logits, labels, 0.1, 0.0)
    assert count == mask.sum()
    np.testing.assert_allclose(loss, per_token[mask].mean(), rtol=1e-5)
    # Changing the logits at masked positions changes nothing.
    changed = logits.copy()
    changed[1, 2:] += 100.0
    np.testing.assert_allclose(
        masked_cross_entropy(changed, labels, mask, label_smoothing=0.1)[0], loss
    )


def test_bfloat16_logits_computed_in_float32(batch):
    logits, labels = batch
    got = cross_entropy_per_token(jnp.asarray(logits, jnp.bfloat16), labels)
    assert got.dtype == jnp.float32
    rounded = np.asarray(jnp.asarray(logits, jnp.bfloat16).astype(jnp.float32))
    np.testing.assert_allclose(got, numpy_loss(rounded, labels, 0.0, 0.0), rtol=1e-5)


def test_z_loss_pushes_log_partition_to_zero(batch):
    logits, labels = batch
    shifted = logits + 5.0  # same softmax, larger log Z
    plain = masked_cross_entropy(shifted, labels)[0]
    with_z = masked_cross_entropy(shifted, labels, z_loss=1e-2)[0]
    np.testing.assert_allclose(plain, masked_cross_entropy(logits, labels)[0], rtol=1e-5)
    assert with_z > plain


def test_bad_input():
    with pytest.raises(ValueError, match="labels"):
        cross_entropy_per_token(np.zeros((2, 3, 4)), np.zeros((2, 4), int))
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy_per_token(np.zeros((2, 4)), np.zeros(2, int), label_smoothing=1.0)
    with pytest.raises(TypeError, match="integers"):
        cross_entropy_per_token(np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="mask"):
        masked_cross_entropy(np.zeros((2, 3, 4)), np.zeros((2, 3), int), np.ones((2, 4)))
