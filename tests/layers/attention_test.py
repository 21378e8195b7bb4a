"""MultiHeadAttention: against the kernel and NumPy, cached decoding, scores, sown weights."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.kernels import dot_product_attention
from attn.layers.attention import MultiHeadAttention
from attn.layers.intermediates import collect_intermediates
from tests.numpy_reference import numpy_attention

B, T, D, N = 2, 7, 24, 4


def _x(seed=0, shape=(B, T, D), dtype=jnp.float32):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


def _numpy_mha(layer, x, context=None, mask=None):
    """MultiHead(x, c) with the layer's own weights, in float64 NumPy."""
    context = x if context is None else context
    H, K = layer.head_dim, layer.num_kv_heads

    def dense(linear, inputs):
        out = np.asarray(inputs, np.float64) @ np.asarray(linear.kernel[...], np.float64)
        return out + np.asarray(linear.bias[...], np.float64) if linear.bias is not None else out

    q = dense(layer.query, x).reshape(*x.shape[:2], N, H)
    k = dense(layer.key, context).reshape(*context.shape[:2], K, H)
    v = dense(layer.value, context).reshape(*context.shape[:2], K, H)
    heads = numpy_attention(q, k, v, mask=mask)
    return dense(layer.out, heads.reshape(*x.shape[:2], N * H))


@pytest.mark.parametrize("num_kv_heads", [1, 2, 4])
def test_self_attention_matches_numpy(num_kv_heads):
    layer = MultiHeadAttention(N, D, num_kv_heads=num_kv_heads, rngs=nnx.Rngs(0))
    x = _x()
    i, j = np.indices((T, T))
    np.testing.assert_allclose(
        layer(x, is_causal=True), _numpy_mha(layer, x, mask=j <= i), rtol=1e-4, atol=1e-5
    )


def test_cross_attention_with_other_width_and_padding():
    layer = MultiHeadAttention(N, D, context_dim=10, rngs=nnx.Rngs(1))
    x, context = _x(1), _x(2, shape=(B, 5, 10))
    mask = np.ones((B, 1, 1, 5), bool)
    mask[1, ..., 3:] = False
    got = layer(x, context, mask=jnp.asarray(mask))
    np.testing.assert_allclose(got, _numpy_mha(layer, x, context, mask=mask), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rotary", [None, 10000.0], ids=["plain", "rotary"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_cached_decoding_equals_full_pass(rotary, dtype):
    layer = MultiHeadAttention(
        N, D, num_kv_heads=2, rotary_base=rotary, dtype=dtype, rngs=nnx.Rngs(3)
    )
    x = _x(3, shape=(B, 10, D), dtype=dtype)
    full = layer(x, is_causal=True)
    layer.init_cache(B, 16)
    chunks = [layer(x[:, a:b], decode=True) for a, b in ((0, 4), (4, 5), (5, 6), (6, 10))]
    tolerance = 1e-5 if dtype == jnp.float32 else 5e-2
    np.testing.assert_allclose(
        jnp.concatenate(chunks, axis=1).astype(np.float32),
        full.astype(np.float32),
        rtol=tolerance,
        atol=tolerance,
    )
    assert int(layer.cache_index[...]) == 10


def test_jitted_decoding_step_does_not_retrace():
    layer = MultiHeadAttention(N, D, rngs=nnx.Rngs(4))
    x = _x(4, shape=(B, 6, D))
    full = layer(x, is_causal=True)
    layer.init_cache(B, 8)

    @nnx.jit
    @chex.assert_max_traces(n=1)
    def step(layer, token):
        return layer(token, decode=True)

    outs = [step(layer, x[:, t : t + 1]) for t in range(6)]
    np.testing.assert_allclose(jnp.concatenate(outs, axis=1), full, rtol=1e-5, atol=1e-5)


def test_cross_attention_cache_projects_the_context_once():
    layer = MultiHeadAttention(N, D, rngs=nnx.Rngs(5))
    x, context = _x(5), _x(6, shape=(B, 9, D))
    full = layer(x, context)
    layer.init_cross_cache(context)
    np.testing.assert_allclose(layer(x, decode=True), full, rtol=1e-5, atol=1e-5)
    # The cache, not the projection, is used: changing the key weights no longer matters.
    layer.key.kernel[...] = jnp.zeros_like(layer.key.kernel[...])
    np.testing.assert_allclose(layer(x, decode=True), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("score", ["scaled_dot", "dot", "cosine", "general", "additive"])
def test_every_score_gives_normalised_causal_weights(score):
    layer = MultiHeadAttention(N, D, num_kv_heads=2, score=score, rngs=nnx.Rngs(7))
    x = _x(7)
    out, found = collect_intermediates(layer, x, is_causal=True)
    weights = found[("attention_weights",)]
    assert out.shape == (B, T, D) and weights.shape == (B, N, T, T)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.triu(np.asarray(weights), k=1) == 0.0)
    # The output is the weights applied to the values, projected.
    G = N // 2
    v = layer.value(x).reshape(B, T, 2, -1).repeat(G, axis=2)
    heads = jnp.einsum("BNTS,BSNH->BTNH", weights, v).reshape(B, T, -1)
    np.testing.assert_allclose(out, layer.out(heads), rtol=1e-4, atol=1e-5)


def test_scaled_dot_equals_the_kernel_call():
    layer = MultiHeadAttention(N, D, rngs=nnx.Rngs(8))
    x = _x(8)
    q = layer.query(x).reshape(B, T, N, -1)
    k = layer.key(x).reshape(B, T, N, -1)
    v = layer.value(x).reshape(B, T, N, -1)
    want = layer.out(dot_product_attention(q, k, v, is_causal=True).reshape(B, T, D))
    np.testing.assert_allclose(layer(x, is_causal=True), want, rtol=1e-5, atol=1e-6)


def test_attention_dropout_only_in_training():
    layer = MultiHeadAttention(N, D, dropout_rate=0.5, rngs=nnx.Rngs(10))
    x = _x(10)
    a = layer(x, deterministic=True)
    np.testing.assert_array_equal(a, layer(x, deterministic=True))
    b = layer(x, deterministic=False)
    assert not np.allclose(a, b)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"num_heads": 4, "model_dim": 24, "num_kv_heads": 3}, "multiple of num_kv_heads"),
        ({"num_heads": 5, "model_dim": 24}, "divisible by num_heads"),
        ({"num_heads": 4, "model_dim": 24, "score": "luong"}, "unknown score 'luong'"),
        ({"num_heads": 4, "model_dim": 20, "head_dim": 5, "rotary_base": 1e4}, "even head_dim"),
    ],
)
def test_bad_configuration(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        MultiHeadAttention(**kwargs, rngs=nnx.Rngs(0))


def test_bad_inputs():
    layer = MultiHeadAttention(N, D, rngs=nnx.Rngs(0))
    with pytest.raises(
        ValueError, match=r"x must have shape \[B, T, D\] with D=24, got shape \(2, 7, 5\)"
    ):
        layer(_x(shape=(B, T, 5)))
    with pytest.raises(ValueError, match="init_cache"):
        layer(_x(), decode=True)
    layer.init_cache(B, 4)
    with pytest.raises(ValueError, match="does not fit the cache"):
        layer(_x(), decode=True)


def test_overrunning_the_cache_is_an_error():
    layer = MultiHeadAttention(N, D, rngs=nnx.Rngs(0))
    layer.init_cache(B, 5)
    layer(_x(shape=(B, 4, D)), decode=True)
    with pytest.raises(ValueError, match="max_length=5 positions; appending 2 at index 4"):
        layer(_x(shape=(B, 2, D)), decode=True)
