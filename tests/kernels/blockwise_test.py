"""The blockwise kernel: its block schedule, exactness for any block size, its bias gradient and
its O(T) memory in the forward and the backward pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attn.kernels import blockwise, blockwise_attention, dot_product_attention
from attn.kernels.blockwise import block_schedule, block_shape, default_block_shape


def test_causal_schedule_is_the_block_lower_triangle():
    visible = block_schedule(1024, 1024, block_q=128, block_k=128, is_causal=True)
    np.testing.assert_array_equal(visible, np.tril(np.ones((8, 8), bool)))
    assert visible.sum() == 36  # of 64 blocks: causal attention computes about half


def test_schedule_with_partial_blocks_and_rectangular_causal():
    # T=10 queries in blocks of 4 (4, 4, 2), S=7 keys in blocks of 3 (3, 3, 1).
    visible = block_schedule(10, 7, block_q=4, block_k=3, is_causal=True)
    want = np.array([[1, 1, 0], [1, 1, 1], [1, 1, 1]], bool)  # key block 2 starts at key 6 > 3
    np.testing.assert_array_equal(visible, want)


def test_window_schedule_is_a_band():
    visible = block_schedule(64, 64, block_q=8, block_k=8, local_window_size=(8, 0))
    i, j = np.indices((8, 8))
    np.testing.assert_array_equal(visible, (j <= i) & (j >= i - 1))


@pytest.mark.parametrize(
    ("T", "S", "H", "want"),
    [
        (2048, 2048, 64, (512, 256)),  # from four 512-query blocks on, head dim <= 64
        (16384, 16384, 32, (512, 256)),
        (2047, 2047, 64, (256, 256)),  # fewer queries: 256-query blocks
        (1024, 8192, 64, (256, 256)),
        (4096, 4096, 128, (256, 256)),  # a wider head: 256-query blocks at any length
        (8192, 100, 64, (512, 100)),  # clipped to the key length
        (100, 50, 64, (100, 50)),  # clipped to both lengths
    ],
)
def test_default_block_shape_follows_its_table(T, S, H, want):
    assert default_block_shape(T, S, H) == want


def test_given_block_sizes_win_over_the_default_and_are_clipped():
    assert block_shape(4096, 4096, 64, None, None) == (512, 256)
    assert block_shape(4096, 4096, 64, 128, None) == (128, 256)
    assert block_shape(4096, 4096, 64, None, 64) == (512, 64)
    assert block_shape(4096, 4096, 64, 1024, 1024) == (1024, 1024)
    assert block_shape(10, 7, 64, 32, 32) == (10, 7)


def test_the_kernel_runs_with_the_default_block_shape(monkeypatch):
    """Without block sizes the kernel asks `default_block_shape`: its score blocks take that
    shape ([B, K, G, block_q, block_k] in the traced program), and the result stays exact."""
    q, k, v = _random_inputs(3, 1, 12, 12, 2, 2, 4, 4)
    monkeypatch.setattr(blockwise, "default_block_shape", lambda T, S, H: (4, 6))
    program = str(jax.make_jaxpr(lambda q, k, v: blockwise_attention(q, k, v))(q, k, v))
    assert "f32[1,2,1,4,6]" in program
    assert "f32[1,2,1,12,12]" not in program
    got = blockwise_attention(q, k, v, is_causal=True)
    want = dot_product_attention(q, k, v, is_causal=True, implementation="reference")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _random_inputs(seed, B, T, S, N, K, H, Hv):
    rng = np.random.default_rng(seed)
    return (
        jnp.asarray(rng.normal(size=(B, T, N, H)) * 1.5, jnp.float32),
        jnp.asarray(rng.normal(size=(B, S, K, H)) * 1.5, jnp.float32),
        jnp.asarray(rng.normal(size=(B, S, K, Hv)), jnp.float32),
    )


@settings(max_examples=12)
@given(
    B=st.integers(1, 2),
    T=st.integers(1, 19),
    S=st.integers(1, 19),
    K=st.sampled_from([1, 2]),
    G=st.sampled_from([1, 3]),
    H=st.sampled_from([2, 5]),
    block_q=st.integers(1, 8),
    block_k=st.integers(1, 8),
    is_causal=st.booleans(),
    lengths=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_blockwise_equals_reference_for_any_shape_and_block_size(
    B, T, S, K, G, H, block_q, block_k, is_causal, lengths, seed
):
    q, k, v = _random_inputs(seed, B, T, S, K * G, K, H, H + 1)
    kwargs = {"is_causal": is_causal}
    if lengths:
        kwargs["key_value_seq_lengths"] = jnp.asarray(
            np.random.default_rng(seed).integers(0, S + 1, size=B)
        )
    cot = jnp.asarray(
        np.random.default_rng(seed + 1).normal(size=(B, T, K * G, H + 1)), jnp.float32
    )

    def run(fn):
        out, vjp = jax.vjp(fn, q, k, v)
        return out, vjp(cot)

    got = run(
        lambda q, k, v: blockwise_attention(q, k, v, block_q=block_q, block_k=block_k, **kwargs)
    )
    want = run(lambda q, k, v: dot_product_attention(q, k, v, implementation="reference", **kwargs))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(got[1], want[1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "bias_shape", [(1, 6, 9, 11), (2, 1, 1, 11), (9, 11), (2, 6, 1, 1)], ids=str
)
def test_bias_gradient_matches_reference(bias_shape):
    q, k, v = _random_inputs(0, 2, 9, 11, 6, 2, 4, 4)
    bias = jnp.asarray(np.random.default_rng(1).normal(size=bias_shape), jnp.float32)

    def loss(bias, implementation):
        out = (
            blockwise_attention(q, k, v, bias, is_causal=True, block_q=4, block_k=3)
            if implementation == "blockwise"
            else dot_product_attention(q, k, v, bias, is_causal=True, implementation="reference")
        )
        return jnp.sum(out * jnp.cos(out))

    got = jax.grad(loss)(bias, "blockwise")
    want = jax.grad(loss)(bias, "reference")
    assert got.shape == bias_shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_mask_hides_whole_blocks_without_changing_the_result():
    # A block-diagonal mask: most key blocks are hidden from most query blocks.
    q, k, v = _random_inputs(2, 1, 16, 16, 2, 2, 3, 3)
    i, j = np.indices((16, 16))
    mask = jnp.asarray(i // 4 == j // 4)
    got = blockwise_attention(q, k, v, mask=mask, block_q=4, block_k=4)
    want = dot_product_attention(q, k, v, mask=mask, implementation="reference")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _planned_bytes(fn, *args):
    analysis = jax.jit(fn).lower(*args).compile().memory_analysis()
    return analysis.temp_size_in_bytes


@pytest.mark.parametrize("is_causal", [False, True])
def test_forward_and_backward_memory_grow_linearly_in_T(is_causal):
    """XLA's plan for the gradient: the blockwise scratch doubles when T doubles (O(T)); the
    materialised scores of the xla path quadruple (O(T²))."""

    def grad_fn(implementation):
        def loss(q, k, v):
            out = dot_product_attention(q, k, v, is_causal=is_causal, implementation=implementation)
            return jnp.sum(out)

        return jax.grad(loss, argnums=(0, 1, 2))

    def planned(implementation, T):
        x = jax.ShapeDtypeStruct((1, T, 4, 64), jnp.float32)
        return _planned_bytes(grad_fn(implementation), x, x, x)

    small, large = planned("blockwise", 2048), planned("blockwise", 4096)
    assert large <= 2.3 * small, (small, large)
    xla_small, xla_large = planned("xla", 2048), planned("xla", 4096)
    assert xla_large >= 3.5 * xla_small, (xla_small, xla_large)
    assert large < xla_large / 8
