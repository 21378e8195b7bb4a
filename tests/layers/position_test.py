"""Positional encodings as modules: sinusoidal and learned absolute positions and the T5 relative
bias: values, offsets, the max_length checks, gradients, dtypes and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.layers import position as pos
from tests.kernels.positions_test import _hf_bucket, _paper_sinusoid

# ----------------------------------------------------------------------------------------------
# Sinusoidal.


def test_sinusoidal_positions_module():
    module = pos.SinusoidalPositions(16, 6)
    np.testing.assert_allclose(module(4, offset=2), _paper_sinusoid(range(2, 6), 6), atol=1e-6)
    ids = jnp.array([[0, 3, 5], [2, 2, 1]])
    got = module(ids)
    assert got.shape == (2, 3, 6)
    np.testing.assert_allclose(got[1], _paper_sinusoid([2, 2, 1], 6), atol=1e-6)
    with pytest.raises(ValueError, match=r"offset \+ T = 14 \+ 4 = 18 exceed max_length=16"):
        module(4, offset=14)
    assert pos.SinusoidalPositions(None, 4)(3, offset=10_000).shape == (3, 4)


# ----------------------------------------------------------------------------------------------
# Learned.


def test_learned_positions_rows_and_offset():
    module = pos.LearnedPositions(12, 5, rngs=nnx.Rngs(0))
    table = np.asarray(module.embedding[...])
    assert table.shape == (12, 5)
    got = module(4, offset=3)
    assert got.shape == (4, 5) and got.dtype == jnp.float32
    np.testing.assert_array_equal(got, table[3:7])
    np.testing.assert_array_equal(module(12), table)
    ids = jnp.array([[0, 11, 4], [7, 7, 1]])
    np.testing.assert_array_equal(module(ids), table[np.asarray(ids)])


def test_learned_positions_init_std_and_dtypes():
    module = pos.LearnedPositions(64, 32, rngs=nnx.Rngs(1))
    std = float(np.std(module.embedding[...]))
    assert 0.017 < std < 0.023, std
    assert (
        float(np.std(pos.LearnedPositions(64, 32, init_std=0.5, rngs=nnx.Rngs(1)).embedding[...]))
        > 0.4
    )
    low = pos.LearnedPositions(8, 4, rngs=nnx.Rngs(0), param_dtype=jnp.bfloat16, dtype=jnp.bfloat16)
    assert low.embedding[...].dtype == jnp.bfloat16 and low(3).dtype == jnp.bfloat16


def test_learned_positions_too_long_raises():
    module = pos.LearnedPositions(8, 4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"length T=9 is longer than max_length=8"):
        module(9)
    with pytest.raises(ValueError, match=r"offset \+ T = 6 \+ 3 = 9 exceed max_length=8"):
        module(3, offset=6)
    with pytest.raises(ValueError, match=r"\[0, max_length=8\).*from 0 to 8"):
        module(jnp.array([0, 8]))
    module(3, offset=5)  # exactly fills the table


def test_learned_positions_traced_offset():
    module = pos.LearnedPositions(8, 4, rngs=nnx.Rngs(0))
    table = np.asarray(module.embedding[...])

    @jax.jit
    def rows(offset):
        return module(2, offset=offset)

    np.testing.assert_array_equal(rows(jnp.int32(5)), table[5:7])
    # The static part is still checked when the offset is traced.
    with pytest.raises(ValueError, match=r"T=9 is longer than max_length=8"):
        jax.jit(lambda offset: module(9, offset=offset))(jnp.int32(0))
    # An overrun that only shows at run time reads as NaN, not as a repeated last row.
    overrun = np.asarray(rows(jnp.int32(7)))
    np.testing.assert_array_equal(overrun[0], table[7])
    assert np.isnan(overrun[1]).all()


def test_learned_positions_gradient_reaches_used_rows_only():
    module = pos.LearnedPositions(6, 3, rngs=nnx.Rngs(0))
    grads = nnx.grad(lambda m: jnp.sum(m(2, offset=1)))(module)
    g = np.asarray(grads.embedding[...])
    np.testing.assert_array_equal(g[1:3], np.ones((2, 3)))
    np.testing.assert_array_equal(g[[0, 3, 4, 5]], np.zeros((4, 3)))


# ----------------------------------------------------------------------------------------------
# T5 relative position bias.


def test_relative_position_bias_values_depend_on_j_minus_i():
    N, T, S = 4, 5, 7
    layer = pos.RelativePositionBias(
        N, bidirectional=True, num_buckets=8, max_distance=6, rngs=nnx.Rngs(0)
    )
    E = np.asarray(layer.embedding[...])
    assert E.shape == (8, N)
    bias = np.asarray(layer(T, S))
    assert bias.shape == (1, N, T, S) and bias.dtype == np.float32
    i, j = np.indices((T, S))
    buckets = _hf_bucket(j - i, True, 8, 6)
    np.testing.assert_array_equal(bias[0], np.transpose(E[buckets], (2, 0, 1)))
    np.testing.assert_array_equal(bias[..., 1:, 1:], bias[..., :-1, :-1])  # Toeplitz in (i, j)
    assert len(np.unique(bias[0, 0])) > 4  # the table is really indexed, not a constant


def test_relative_position_bias_causal_direction():
    layer = pos.RelativePositionBias(3, bidirectional=False, rngs=nnx.Rngs(0))
    E = np.asarray(layer.embedding[...])
    bias = np.asarray(layer(4, 4))
    # Keys after the query share bucket 0; key j = i - 2 is in bucket 2.
    np.testing.assert_array_equal(bias[0, :, 0, 3], E[0])
    np.testing.assert_array_equal(bias[0, :, 3, 1], E[2])


def test_relative_position_bias_offset_is_a_shift():
    layer = pos.RelativePositionBias(
        2, bidirectional=False, num_buckets=8, max_distance=10, rngs=nnx.Rngs(0)
    )
    full = np.asarray(layer(9, 9))
    np.testing.assert_array_equal(layer(3, 9, offset=6), full[..., 6:9, :])
    decode = jax.jit(lambda offset: layer(1, 9, offset=offset))
    np.testing.assert_array_equal(decode(jnp.int32(4)), full[..., 4:5, :])


def test_relative_position_bias_dtypes():
    layer = pos.RelativePositionBias(
        2, bidirectional=True, rngs=nnx.Rngs(0), param_dtype=jnp.bfloat16, dtype=jnp.bfloat16
    )
    assert layer.embedding[...].dtype == jnp.bfloat16 and layer(2, 3).dtype == jnp.bfloat16


# ----------------------------------------------------------------------------------------------
# Bad input.

_learned = pos.LearnedPositions(8, 4, rngs=nnx.Rngs(0))

BAD_INPUT = [
    (lambda: pos.LearnedPositions(0, 4, rngs=nnx.Rngs(0)), ValueError, r"LearnedPositions: "
     r"max_length must be >= 1, got 0"),
    (lambda: _learned(jnp.zeros((1, 2, 3), int)), ValueError, r"positions must have shape \[T\] "
     r"or \[B, T\], got shape \(1, 2, 3\)"),
    (lambda: _learned(jnp.zeros(3)), TypeError, r"positions must be an int length T or an "
     r"integer array \[T\] or \[B, T\], got .* float32"),
    (lambda: _learned(2, offset=-1), ValueError, r"offset must be >= 0, got -1"),
    (lambda: pos.RelativePositionBias(0, bidirectional=True, rngs=nnx.Rngs(0)), ValueError,
     r"RelativePositionBias: num_heads must be >= 1, got 0"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "pattern"), BAD_INPUT)
def test_bad_input_errors(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()
