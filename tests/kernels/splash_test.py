"""implementation="splash" (the Pallas TPU kernel, in interpret mode off a TPU) under the
contract of dot_product_attention. Small sizes: interpret mode takes seconds per call."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn.kernels import dot_product_attention
from tests.kernels.splash_triton_checks import (
    check_against_float64_reference,
    check_fully_masked_rows,
    inputs,
)


def test_causal_grouped_heads_and_lengths_that_are_not_whole_blocks():
    q, k, v = inputs(0, B=2, T=100, S=100, N=2, K=1, H=8)
    check_against_float64_reference(
        "splash",
        q,
        k,
        v,
        is_causal=True,
        query_seq_lengths=jnp.array([100, 70]),
        key_value_seq_lengths=jnp.array([90, 60]),
    )


def test_local_window_scale_and_rectangular_shapes():
    q, k, v = inputs(1, B=1, T=40, S=56, N=2, K=2, H=8)
    check_against_float64_reference("splash", q, k, v, local_window_size=(3, 1), scale=0.3)


def test_fully_masked_rows_skipped_blocks_and_masked_inside_a_block():
    # Window (0, 0) with T = 256 > S = 128: queries 128..255 have no key, and their query block
    # is skipped by the kernel; example 1 has no keys: its rows are masked inside computed blocks.
    q, k, v = inputs(2, B=2, T=256, S=128, N=1, K=1, H=8)
    check_fully_masked_rows(
        "splash", q, k, v, local_window_size=(0, 0), key_value_seq_lengths=jnp.array([128, 0])
    )


def test_unbatched_under_vmap():
    q, k, v = inputs(3, B=2, T=24, S=24, N=2, K=1, H=8)
    lengths = jnp.array([24, 9])

    def one(q, k, v, n):
        return dot_product_attention(
            q, k, v, is_causal=True, key_value_seq_lengths=n, implementation="splash"
        )

    got = jax.vmap(one)(q, k, v, lengths)
    want = dot_product_attention(q, k, v, is_causal=True, key_value_seq_lengths=lengths)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"mask": jnp.ones((4, 4), bool)}, ValueError, r"static masks only.*'blockwise'"),
        ({"bias": jnp.zeros((4, 4))}, ValueError, r"takes no bias.*'blockwise'"),
    ],
)
def test_what_splash_cannot_do_is_a_clear_error(kwargs, error, pattern):
    q, k, v = inputs(4, B=1, T=4, S=4, N=2, K=1, H=8)
    with pytest.raises(error, match=pattern):
        dot_product_attention(q, k, v, implementation="splash", **kwargs)
    with pytest.raises(ValueError, match=r"head dim H=8.*'blockwise'"):
        dot_product_attention(q, k, v[..., :4], implementation="splash")


def test_float64_is_a_clear_error(x64):
    q, k, v = (x.astype(jnp.float64) for x in inputs(5, B=1, T=4, S=4, N=2, K=1, H=8))
    with pytest.raises(TypeError, match=r"float64.*'blockwise'"):
        dot_product_attention(q, k, v, implementation="splash")
