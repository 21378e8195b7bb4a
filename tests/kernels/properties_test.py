"""Properties that hold for every implementation of multi-head attention (hypothesis)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attn.kernels import dot_product_attention

IMPLEMENTATIONS = ("reference", "blockwise", "direct", "xla")


def _self_attention_inputs(seed, B, T, N, H):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(B, T, N, H)) * 1.5, jnp.float32)
    W = jnp.asarray(rng.normal(size=(3, H, H)), jnp.float32)
    return [jnp.einsum("BTNH,HI->BTNI", x, w) for w in W]  # q, k, v from one sequence


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@settings(max_examples=8)
@given(T=st.sampled_from([2, 7, 12]), seed=st.integers(0, 2**16))
def test_self_attention_is_permutation_equivariant(implementation, T, seed):
    q, k, v = _self_attention_inputs(seed, 2, T, 2, 3)
    perm = np.random.default_rng(seed).permutation(T)
    out = dot_product_attention(q, k, v, implementation=implementation)
    permuted = dot_product_attention(
        q[:, perm], k[:, perm], v[:, perm], implementation=implementation
    )
    np.testing.assert_allclose(permuted, out[:, perm], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@settings(max_examples=8)
@given(T=st.sampled_from([2, 7, 12]), t=st.integers(0, 11), seed=st.integers(0, 2**16))
def test_causal_attention_leaks_nothing_from_the_future(implementation, T, t, seed):
    t = t % T
    q, k, v = _self_attention_inputs(seed, 1, T, 2, 3)
    # A random cotangent on output t alone: its gradient must not reach keys or values > t.
    cotangent = np.zeros((1, T, 2, 3), np.float32)
    cotangent[:, t] = np.random.default_rng(seed).normal(size=(2, 3))

    def attend(q, k, v):
        return dot_product_attention(q, k, v, is_causal=True, implementation=implementation)

    _, vjp = jax.vjp(attend, q, k, v)
    dq, dk, dv = (np.asarray(g) for g in vjp(jnp.asarray(cotangent)))
    future = np.arange(T) > t
    assert np.all(dk[:, future] == 0.0) and np.all(dv[:, future] == 0.0)
    assert np.all(dq[:, np.arange(T) != t] == 0.0)
    assert np.any(dv[:, ~future] != 0.0)  # the past does reach it


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@settings(max_examples=8)
@given(S=st.sampled_from([1, 4, 9]), pad=st.sampled_from([1, 6]), seed=st.integers(0, 2**16))
def test_padded_keys_change_nothing(implementation, S, pad, seed):
    rng = np.random.default_rng(seed)
    q = jnp.asarray(rng.normal(size=(1, 4, 2, 3)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, S, 2, 3)), jnp.float32)
    v = jnp.asarray(rng.normal(size=(1, S, 2, 3)), jnp.float32)
    junk = jnp.asarray(rng.normal(size=(1, pad, 2, 3)) * 100, jnp.float32)
    out = dot_product_attention(q, k, v, implementation=implementation)
    padded = dot_product_attention(
        q,
        jnp.concatenate([k, junk], axis=1),
        jnp.concatenate([v, junk], axis=1),
        key_value_seq_lengths=jnp.array([S]),
        implementation=implementation,
    )
    np.testing.assert_allclose(padded, out, rtol=1e-5, atol=1e-5)
