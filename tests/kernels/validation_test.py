"""Bad input gets a clear error that names the argument, the expected shape and what was given."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

from attn.kernels import attention, blockwise_attention, dot_product_attention
from attn.kernels.validation import check_token_ids

q = jnp.zeros((2, 5, 4, 3))
k = jnp.zeros((2, 7, 2, 3))
v = jnp.zeros((2, 7, 2, 3))


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "pattern"),
    [
        (
            (q[0, 0], k, v),
            {},
            ValueError,
            r"query must have shape \[B, T, N, H\] or, unbatched, \[T, N, H\].*got shape \(4, 3\)",
        ),
        (
            (q[0], k, v),
            {},
            ValueError,
            r"key must have shape \[S, K, H\] = \[\?, \?, 3\].*got shape \(2, 7, 2, 3\)",
        ),
        (
            (q[0], k[0], v[0]),
            {"mask": jnp.ones((2, 4, 5, 7), bool)},
            ValueError,
            r"mask must broadcast to \[B, N, T, S\] = \[1, 4, 5, 7\]",
        ),
        (
            (q[0], k[0], v[0]),
            {"key_value_seq_lengths": jnp.array([3, 4])},
            ValueError,
            r"key_value_seq_lengths must have shape \[B\] = \[1\]",
        ),
        (
            (q, k[:1], v),
            {},
            ValueError,
            r"key must have shape \[B, S, K, H\] = \[2, \?, \?, 3\].*\(1, 7, 2, 3\)",
        ),
        ((q, k[..., :2], v), {}, ValueError, r"key must have shape .*= \[2, \?, \?, 3\]"),
        (
            (q, k, v[:, :6]),
            {},
            ValueError,
            r"value must have shape \[B, S, K, Hv\] = \[2, 7, 2, \?\].*\(2, 6, 2, 3\)",
        ),
        ((q[:, :, :3], k, v), {}, ValueError, r"N=3 .* multiple of .* K=2"),
        ((q, k.astype(jnp.bfloat16), v), {}, TypeError, r"share one dtype.*float32, bfloat16"),
        ((q.astype(jnp.int32), k, v), {}, TypeError, r"query must be a floating-point array"),
        (
            (q, k, v),
            {"mask": jnp.ones((2, 4, 5, 6), bool)},
            ValueError,
            r"mask must broadcast to \[B, N, T, S\] = \[2, 4, 5, 7\].*\(2, 4, 5, 6\)",
        ),
        ((q, k, v), {"mask": jnp.ones((5, 7))}, TypeError, r"mask must be boolean.*float32.*bias"),
        (
            (q, k, v),
            {"bias": jnp.ones((3, 1, 5, 7))},
            ValueError,
            r"bias must broadcast to \[B, N, T, S\]",
        ),
        (
            (q, k, v),
            {"key_value_seq_lengths": jnp.array([3, 4, 5])},
            ValueError,
            r"key_value_seq_lengths must have shape \[B\] = \[2\]",
        ),
        (
            (q, k, v),
            {"query_seq_lengths": jnp.array([3.0, 4.0])},
            TypeError,
            r"query_seq_lengths must be integer",
        ),
        ((q, k, v), {"local_window_size": (1, -1)}, ValueError, r"window sizes must be >= 0"),
        (
            (q, k, v),
            {"implementation": "flash"},
            ValueError,
            r"implementation must be one of .*'blockwise'",
        ),
    ],
)
def test_dot_product_attention_errors(args, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        dot_product_attention(*args, **kwargs)


def test_blockwise_rejects_bad_block_sizes():
    with pytest.raises(ValueError, match="block_q and block_k must be ints >= 1"):
        blockwise_attention(q, k, v, block_q=0)


@pytest.mark.parametrize(
    ("args", "kwargs", "pattern"),
    [
        (
            (q[0, :, 0], k[0, :, 0], v[0]),
            {},
            r"v must have shape \[S, Hv\] = \[7, \?\].*\(7, 2, 3\)",
        ),
        ((q[0, :, 0], k[0, :6, 0], v[0, :, 0]), {}, r"v must have shape \[S, Hv\] = \[6, \?\]"),
        ((q[0, :, 0], k[0, :, 0, :2], v[0, :, 0]), {}, r"k must have shape \[S, H\] = \[\?, 3\]"),
        (
            (q[0, :, 0], k[0, :, 0], v[0, :, 0]),
            {"mask": jnp.ones((5, 6), bool)},
            r"mask must broadcast to \[T, S\] = \[5, 7\]",
        ),
    ],
)
def test_single_head_attention_errors(args, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        attention(*args, **kwargs)


def test_check_token_ids():
    ids = jnp.array([[0, 3, 9]])
    assert check_token_ids("M", "ids", ids, 10) is not None
    with pytest.raises(
        ValueError,
        match=r"M: ids must lie in \[0, vocab_size=9\), got ids from 0 to 9 "
        r"\(first out of range: 9 at \[0, 2\]\)",
    ):
        check_token_ids("M", "ids", ids, 9)
    with pytest.raises(ValueError, match=r"from -1 to 3 \(first out of range: -1 at \[1, 0\]\)"):
        check_token_ids("M", "ids", jnp.array([[0, 3], [-1, 3]]), 9)
    with pytest.raises(ValueError, match=r"integer token ids \[B, S\], got float32"):
        check_token_ids("M", "src", jnp.zeros((1, 3)), 9, "S")
    # Under jit the values are unknown: no error, the ids pass unchanged when they are in range.
    np.testing.assert_array_equal(jax.jit(lambda x: check_token_ids("M", "ids", x, 10))(ids), ids)


def test_under_jit_a_row_with_an_out_of_range_id_becomes_out_of_range_everywhere():
    ids = jnp.array([[0, 3, 9], [1, 2, 3], [-1, 4, 5]], jnp.int32)
    checked = jax.jit(lambda x: check_token_ids("M", "ids", x, 9))(ids)
    # Row 0 holds 9 = V, row 2 holds -1: every id of those rows becomes V (NaN in `nnx.Embed`);
    # nothing is clamped or wrapped, and row 1 is untouched.
    np.testing.assert_array_equal(checked, [[9, 9, 9], [1, 2, 3], [9, 9, 9]])
    # A dtype too narrow for the marker is widened.
    narrow = jax.jit(lambda x: check_token_ids("M", "ids", x, 300))(ids.astype(jnp.int8))
    np.testing.assert_array_equal(narrow, [[0, 3, 9], [1, 2, 3], [300, 300, 300]])


def test_checkify_reports_out_of_range_ids_under_jit():
    ids = jnp.array([[0, 3, 4], [1, 12, 3]])
    checked = jax.jit(checkify.checkify(lambda x: check_token_ids("M", "src", x, 9, "S")))
    error, _ = checked(ids)
    with pytest.raises(
        checkify.JaxRuntimeError,
        match=r"M: src must lie in \[0, vocab_size=9\), got 12 at \[1, 1\]",
    ):
        error.throw()
    error, out = checked(ids.at[1, 1].set(8))
    error.throw()  # in range: no error
    np.testing.assert_array_equal(out, ids.at[1, 1].set(8))


def test_ids_closed_over_inside_jit_are_checked_once_at_trace_time():
    ids = np.array([[0, 3, 6]])

    @jax.jit
    def run():
        return check_token_ids("Model", "ids", ids, vocab_size=7)

    np.testing.assert_array_equal(run(), ids)

    @jax.jit
    def out_of_range():
        return check_token_ids("Model", "ids", ids, vocab_size=6)

    with pytest.raises(ValueError, match=r"ids must lie in \[0, vocab_size=6\), got ids from 0"):
        out_of_range()
