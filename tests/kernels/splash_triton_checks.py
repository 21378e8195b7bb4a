"""Shared checks for the Pallas kernels ("splash", "triton"), which run in interpret mode here:
forward and gradients against the float64 reference kernel, and the fully-masked-row contract."""

import jax
import jax.numpy as jnp
import numpy as np

from attn.kernels import dot_product_attention, masks


def inputs(seed, B, T, S, N, K, H):
    rng = np.random.default_rng(seed)
    return (
        jnp.asarray(rng.normal(size=(B, T, N, H)), jnp.float32),
        jnp.asarray(rng.normal(size=(B, S, K, H)), jnp.float32),
        jnp.asarray(rng.normal(size=(B, S, K, H)), jnp.float32),
    )


def check_against_float64_reference(implementation, q, k, v, **kwargs):
    """Output and gradients (q, k, v) of `implementation` in float32 against "reference" in
    float64; returns the output."""
    cotangent = jnp.asarray(np.random.default_rng(1).normal(size=q.shape), jnp.float32)

    def run(impl, dtype):
        fn = lambda q, k, v: dot_product_attention(q, k, v, implementation=impl, **kwargs)  # noqa: E731
        out, vjp = jax.vjp(fn, *(x.astype(dtype) for x in (q, k, v)))
        return out, vjp(cotangent.astype(dtype))

    out, grads = run(implementation, jnp.float32)
    with jax.enable_x64(True):
        want, want_grads = run("reference", jnp.float64)
        np.testing.assert_allclose(out, want, rtol=2e-5, atol=2e-5)
        for name, a, b in zip("qkv", grads, want_grads, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=f"d{name}")
    return out


def check_fully_masked_rows(implementation, q, k, v, **kwargs):
    """Rows that may attend to no key give output 0 and gradient 0 (finite); the others agree
    with the reference."""
    T, S = q.shape[1], k.shape[1]
    structure = {
        n: kwargs.get(n)
        for n in ("is_causal", "query_seq_lengths", "key_value_seq_lengths", "local_window_size")
    }
    attends = np.asarray(masks.attending_queries(T, S, **structure))  # [B or 1, T]
    assert not attends.all() and attends.any()
    fn = lambda q, k, v: dot_product_attention(q, k, v, implementation=implementation, **kwargs)  # noqa: E731
    out, vjp = jax.vjp(fn, q, k, v)
    hidden = np.broadcast_to(~attends, q.shape[:2])
    np.testing.assert_array_equal(np.asarray(out)[hidden], 0.0)
    cotangent = np.zeros(q.shape, np.float32)
    cotangent[hidden] = 1.0
    for grad in vjp(jnp.asarray(cotangent)):
        assert np.all(np.isfinite(grad))
        np.testing.assert_array_equal(grad, np.zeros_like(grad))
    want = dot_product_attention(q, k, v, implementation="reference", **kwargs)
    np.testing.assert_allclose(out, want, rtol=2e-5, atol=2e-5)
