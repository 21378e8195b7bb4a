"""implementation="triton" (the Pallas GPU kernel, in interpret mode off a GPU) under the
contract of dot_product_attention. Small sizes: interpret mode takes seconds per call."""

import jax.numpy as jnp
import pytest

from attn.kernels import dot_product_attention
from tests.kernels.splash_triton_checks import (
    check_against_float64_reference,
    check_fully_masked_rows,
    inputs,
)


def test_causal_grouped_heads_lengths_and_more_queries_than_keys():
    # T = 20 > S = 13: both are padded to one block of 32, keys masked by the extra coordinate.
    q, k, v = inputs(0, B=2, T=20, S=13, N=2, K=1, H=8)
    check_against_float64_reference(
        "triton",
        q,
        k,
        v,
        is_causal=True,
        query_seq_lengths=jnp.array([20, 11]),
        key_value_seq_lengths=jnp.array([13, 6]),
    )


def test_whole_blocks_and_scale():
    q, k, v = inputs(1, B=1, T=32, S=32, N=2, K=2, H=8)  # two blocks of 16, nothing to mask
    check_against_float64_reference("triton", q, k, v, scale=0.3)


def test_fully_masked_rows():
    # Example 1 has no keys and example 0 only 3 queries: rows masked inside computed blocks.
    q, k, v = inputs(2, B=2, T=16, S=16, N=2, K=1, H=8)
    check_fully_masked_rows(
        "triton",
        q,
        k,
        v,
        is_causal=True,
        query_seq_lengths=jnp.array([3, 16]),
        key_value_seq_lengths=jnp.array([16, 0]),
    )


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"local_window_size": 2}, r"no local window.*'blockwise'"),
        ({"mask": jnp.ones((4, 4), bool)}, r"static masks only.*'blockwise'"),
        ({"bias": jnp.zeros((4, 4))}, r"takes no bias.*'blockwise'"),
    ],
)
def test_what_triton_cannot_do_is_a_clear_error(kwargs, pattern):
    q, k, v = inputs(3, B=1, T=4, S=4, N=2, K=1, H=8)
    with pytest.raises(ValueError, match=pattern):
        dot_product_attention(q, k, v, implementation="triton", **kwargs)
