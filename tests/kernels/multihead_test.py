"""Every implementation of dot_product_attention against a float64 NumPy reference, against
jax.nn.dot_product_attention, and against each other, forward and backward."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn.kernels import blockwise_attention, causal_mask, dot_product_attention, masks
from attn.kernels.multihead import choose_implementation
from tests.numpy_reference import numpy_attention

IMPLEMENTATIONS = ("reference", "blockwise", "direct", "xla")
B, T, S, N, K, H = 2, 5, 7, 4, 2, 3


def _inputs(seed=0, T=T, S=S, N=N, K=K, H=H, Hv=None, spread=1.5, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(B, T, N, H)) * spread
    k = rng.normal(size=(B, S, K, H)) * spread
    v = rng.normal(size=(B, S, K, Hv or H))
    return tuple(jnp.asarray(x, dtype) for x in (q, k, v))


def _call(implementation, q, k, v, **kwargs):
    if implementation == "blockwise":
        # Small blocks so that several blocks, partial blocks and skipped blocks all occur.
        return blockwise_attention(q, k, v, block_q=2, block_k=3, **kwargs)
    return dot_product_attention(q, k, v, implementation=implementation, **kwargs)


def _rng_mask(seed, shape):
    mask = np.random.default_rng(seed).random(shape) > 0.35
    mask[..., 0] = True  # every query keeps a key, so jax.nn agrees (see fully-masked tests)
    return jnp.asarray(mask)


def _cases():
    """(name, kwargs for our kernel, the boolean mask they amount to, bias)."""
    ones = np.ones((T, S), bool)
    i, j = np.indices((T, S))
    rng = np.random.default_rng(7)
    per_head = _rng_mask(1, (B, N, T, S))
    bias_full = jnp.asarray(rng.normal(size=(1, N, T, S)) * 2, jnp.float32)
    bias_keys = jnp.asarray(rng.normal(size=(B, 1, 1, S)) * 2, jnp.float32)
    kv_lengths = jnp.array([7, 4])
    return [
        ("plain", {}, None, None),
        ("bool_mask_per_head", {"mask": per_head}, per_head, None),
        ("bool_mask_2d", {"mask": _rng_mask(2, (T, S))}, _rng_mask(2, (T, S)), None),
        ("padding", {"key_value_seq_lengths": kv_lengths}, masks.padding_mask(kv_lengths, S), None),
        ("causal", {"is_causal": True}, j <= i, None),
        ("offset_causal", {"mask": causal_mask(T, S, offset=2)}, j <= i + 2, None),
        ("window", {"local_window_size": 1}, np.abs(j - i) <= 1, None),
        (
            "window_asym_causal",
            {"local_window_size": (2, 0), "is_causal": True},
            (j <= i) & (j >= i - 2),
            None,
        ),
        ("bias_per_head", {"bias": bias_full}, ones, bias_full),
        ("bias_keys_and_causal", {"bias": bias_keys, "is_causal": True}, j <= i, bias_keys),
        ("scale", {"scale": 0.37}, ones, None),
    ]


CASES = _cases()
CASE_IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_forward_matches_float64_numpy(implementation, case):
    _, kwargs, mask, bias = case
    q, k, v = _inputs()
    got = _call(implementation, q, k, v, **kwargs)
    want = numpy_attention(q, k, v, bias=bias, mask=mask, scale=kwargs.get("scale"))
    assert got.shape == (B, T, N, H) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_matches_jax_nn_forward_and_gradients(implementation, case):
    _, kwargs, _, _ = case
    q, k, v = _inputs(seed=3)
    cotangent = jnp.asarray(np.random.default_rng(5).normal(size=(B, T, N, H)), jnp.float32)
    ours, ours_vjp = jax.vjp(lambda q, k, v: _call(implementation, q, k, v, **kwargs), q, k, v)
    peer, peer_vjp = jax.vjp(
        lambda q, k, v: jax.nn.dot_product_attention(q, k, v, implementation="xla", **kwargs),
        q,
        k,
        v,
    )
    np.testing.assert_allclose(ours, peer, rtol=2e-5, atol=2e-5)
    for name, a, b in zip("qkv", ours_vjp(cotangent), peer_vjp(cotangent), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4, err_msg=f"d{name}")


@pytest.mark.parametrize("implementation", ("reference", "blockwise", "direct"))
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gradients_match_float64_reference(x64, implementation, case):
    """Gradients in float32 against the float64 reference kernel's gradients (bias included)."""
    _, kwargs, _, bias = case
    q, k, v = _inputs(seed=4)
    kwargs = dict(kwargs)
    kwargs.pop("bias", None)
    cot = jnp.asarray(np.random.default_rng(6).normal(size=(B, T, N, H)), jnp.float32)

    def grads(dtype, impl):
        args = [x.astype(dtype) for x in (q, k, v)]
        if bias is not None:
            args.append(bias.astype(dtype))
        fn = lambda *a: _call(impl, *a[:3], bias=a[3] if bias is not None else None, **kwargs)  # noqa: E731
        _, vjp = jax.vjp(fn, *args)
        return vjp(cot.astype(dtype))

    want = grads(jnp.float64, "reference")
    got = grads(jnp.float32, implementation)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    got64 = grads(jnp.float64, implementation)
    for a, b in zip(got64, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("kv_heads", [1, 2, 4], ids=["MQA", "GQA", "MHA"])
def test_grouped_kv_heads(implementation, kv_heads):
    q, k, v = _inputs(seed=8, K=kv_heads)
    got = _call(implementation, q, k, v, is_causal=True)
    i, j = np.indices((T, S))
    np.testing.assert_allclose(got, numpy_attention(q, k, v, mask=j <= i), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("implementation", ("reference", "blockwise", "direct"))
def test_value_head_dim_may_differ(implementation):
    q, k, v = _inputs(seed=9, Hv=6)
    got = _call(implementation, q, k, v)
    assert got.shape == (B, T, N, 6)
    np.testing.assert_allclose(got, numpy_attention(q, k, v), rtol=2e-5, atol=2e-5)


def test_xla_rejects_value_head_dim_mismatch():
    q, k, v = _inputs(Hv=6)
    with pytest.raises(ValueError, match="value.*head dim H=3"):
        dot_product_attention(q, k, v, implementation="xla")


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("causal", [False, True])
def test_rectangular_shapes(implementation, causal):
    """T > S and T < S, causal top-left aligned as in jax.nn."""
    for t, s in ((9, 4), (3, 8)):
        q, k, v = _inputs(seed=t, T=t, S=s)
        got = _call(implementation, q, k, v, is_causal=causal)
        i, j = np.indices((t, s))
        want = numpy_attention(q, k, v, mask=(j <= i) if causal else None)
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_bfloat16(implementation):
    q, k, v = _inputs(seed=10, dtype=jnp.bfloat16)
    got = _call(implementation, q, k, v, is_causal=True)
    assert got.dtype == jnp.bfloat16
    i, j = np.indices((T, S))
    want = numpy_attention(
        q.astype(np.float32), k.astype(np.float32), v.astype(np.float32), mask=j <= i
    )
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=3e-2, atol=3e-2)
    grads = jax.grad(lambda q: jnp.sum(_call(implementation, q, k, v).astype(jnp.float32)))(q)
    assert grads.dtype == jnp.bfloat16 and np.all(np.isfinite(grads.astype(np.float32)))


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_large_logits_are_stable(implementation):
    q, k, v = _inputs(seed=11, spread=60.0)  # logits in the thousands
    got = _call(implementation, q, k, v, is_causal=True)
    i, j = np.indices((T, S))
    want = numpy_attention(q, k, v, mask=j <= i)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def _fully_masked_setup():
    """Query 1 of example 0 and every query of example 1 beyond length 2 attend to nothing."""
    mask = np.ones((B, 1, T, S), bool)
    mask[0, 0, 1] = False
    return jnp.asarray(mask), jnp.array([T, 2])


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_fully_masked_rows_give_zero_output_and_zero_finite_gradients(implementation):
    mask, q_lengths = _fully_masked_setup()
    q, k, v = _inputs(seed=12)
    fn = lambda q, k, v: _call(implementation, q, k, v, mask=mask, query_seq_lengths=q_lengths)  # noqa: E731
    out, vjp = jax.vjp(fn, q, k, v)
    np.testing.assert_array_equal(out[0, 1], np.zeros((N, H)))
    np.testing.assert_array_equal(out[1, 2:], np.zeros((T - 2, N, H)))
    # A cotangent only on the fully masked rows reaches nothing.
    cot = np.zeros((B, T, N, H), np.float32)
    cot[0, 1] = 1.0
    cot[1, 2:] = 1.0
    for grad in vjp(jnp.asarray(cot)):
        assert np.all(np.isfinite(grad))
        np.testing.assert_array_equal(grad, np.zeros_like(grad))
    # The other rows are untouched by the rule.
    allowed = np.asarray(mask) & np.asarray(masks.query_padding_mask(q_lengths, T))
    np.testing.assert_allclose(out, numpy_attention(q, k, v, mask=allowed), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_additive_and_boolean_masks_together_do_not_overflow(implementation, dtype):
    q, k, v = _inputs(seed=13, dtype=dtype)
    most_negative = float(jnp.finfo(dtype).min)
    bias = np.zeros((1, 1, T, S), np.float32)
    bias[..., 3:] = most_negative  # an additive padding mask on top of the causal mask
    bias = jnp.asarray(bias, dtype)
    got = _call(implementation, q, k, v, bias=bias, is_causal=True)
    assert np.all(np.isfinite(got.astype(np.float32)))
    i, j = np.indices((T, S))
    want = numpy_attention(
        q.astype(np.float32), k.astype(np.float32), v.astype(np.float32), mask=(j <= i) & (j < 3)
    )
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=3e-2, atol=3e-2)


def test_return_weights():
    q, k, v = _inputs(seed=14)
    mask = _rng_mask(15, (B, N, T, S))
    out, weights = dot_product_attention(q, k, v, mask=mask, return_weights=True)
    want_out, want_weights = numpy_attention(q, k, v, mask=mask, return_weights=True)
    assert weights.shape == (B, N, T, S)
    np.testing.assert_allclose(weights, want_weights, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(out, want_out, rtol=2e-5, atol=2e-5)


def test_return_weights_needs_reference():
    q, k, v = _inputs()
    with pytest.raises(ValueError, match="return_weights=True needs implementation='reference'"):
        dot_product_attention(q, k, v, implementation="blockwise", return_weights=True)


def test_choose_implementation():
    q, k, v = _inputs()
    assert choose_implementation(q, k, v, return_weights=True) == "reference"
    assert choose_implementation(q, k, v, return_weights=False, platform="cpu") == "direct"
    q_long = _inputs(T=17)[0]
    assert choose_implementation(q_long, k, v, return_weights=False, platform="cpu") == "blockwise"
    assert choose_implementation(q, k, v, return_weights=False, platform="tpu") == "xla"
    q16, k16, v16 = _inputs(H=64, dtype=jnp.bfloat16)
    assert choose_implementation(q16, k16, v16, return_weights=False, platform="gpu") == "cudnn"
    assert choose_implementation(q, k, v, return_weights=False, platform="gpu") == "xla"


def test_choose_implementation_every_row_of_the_table():
    """Each row of the docstring's table, by platform, dtype, head dim, length and arguments."""

    def choice(S=16, H=64, dtype=jnp.bfloat16, platform="gpu", T=16, **kwargs):
        q = jax.ShapeDtypeStruct((1, T, 4, H), dtype)
        k = jax.ShapeDtypeStruct((1, S, 2, H), dtype)
        return choose_implementation(q, k, k, return_weights=False, platform=platform, **kwargs)

    long = 1024
    # GPU: cudnn where it applies, even for long sequences and with a run-time mask.
    assert choice() == choice(S=long) == choice(S=long, has_mask=True) == "cudnn"
    assert choice(dtype=jnp.float16) == "cudnn"
    # GPU, 16-bit, a head dim cudnn does not take: triton from S = 1024 up, xla below.
    assert choice(S=long, H=256) == choice(S=long, H=12) == "triton"
    assert choice(S=long - 1, H=256) == "xla"
    # GPU: a bias, a window or a mask where triton would apply: xla.
    assert choice(S=long, has_bias=True) == "xla"
    assert choice(S=long, local_window_size=(4, 0)) == "xla"
    assert choice(S=long, H=256, has_mask=True) == "xla"
    assert choice(S=long, H=256, has_bias=True) == "xla"
    assert choice(S=long, dtype=jnp.float32) == "xla"  # float32: neither cudnn nor triton
    # TPU: splash from S = 1024 up (any float but float64, a window is static), xla otherwise.
    for dtype in (jnp.bfloat16, jnp.float32):
        assert choice(S=long, dtype=dtype, platform="tpu") == "splash"
        assert choice(S=long - 1, dtype=dtype, platform="tpu") == "xla"
    assert choice(S=long, platform="tpu", local_window_size=(128, 0)) == "splash"
    assert choice(S=long, platform="tpu", has_mask=True) == "xla"
    assert choice(S=long, platform="tpu", has_bias=True) == "xla"
    # CPU: direct up to 16 queries (any keys, masks, bias, dtype), blockwise for the rest.
    assert choice(S=long, platform="cpu") == choice(platform="cpu", has_bias=True) == "direct"
    assert choice(platform="cpu", H=12, dtype=jnp.float32, has_mask=True) == "direct"
    assert choice(T=17, S=long, platform="cpu") == "blockwise"
    assert choice(T=17, platform="cpu", has_bias=True) == "blockwise"


def test_jitted_call_does_not_retrace_for_same_shapes():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def f(q, k, v, lengths):
        return dot_product_attention(q, k, v, is_causal=True, key_value_seq_lengths=lengths)

    q, k, v = _inputs(seed=16)
    f(q, k, v, jnp.array([3, 7]))
    q2, k2, v2 = _inputs(seed=17)
    f(q2, k2, v2, jnp.array([5, 6]))  # new values, same shapes: no second trace
    with pytest.raises(AssertionError):
        f(*_inputs(seed=18, T=6), jnp.array([5, 6]))  # a new shape traces again


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_padding_bias_at_float32_min_with_causal_mask(implementation):
    """A Hugging Face-style additive padding bias (float32 min on left-padded keys) together with
    the causal mask: a query whose causal keys are all padding spreads over them evenly, never
    over keys the boolean mask hides, and every implementation agrees."""
    q, k, v = _inputs(seed=19, T=S)
    bias = np.zeros((B, 1, 1, S), np.float32)
    bias[0, ..., :3] = np.finfo(np.float32).min  # example 0: first 3 keys are padding
    got = _call(implementation, q, k, v, bias=jnp.asarray(bias), is_causal=True)
    i, j = np.indices((S, S))
    allowed = np.broadcast_to(j <= i, (B, 1, S, S)) & (bias > -1)
    want = numpy_attention(q, k, v, mask=allowed)
    # Queries 0..2 of example 0 see only padding: the mean of their causal (padding) values.
    for t in range(3):
        want[0, t] = np.asarray(v, np.float64)[0, : t + 1].mean(0).repeat(N // K, axis=0)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_bfloat16_inputs_keep_a_float32_bias(implementation):
    """A large smooth bias (ALiBi far from the diagonal) must not be rounded to bfloat16."""
    q, k, v = _inputs(seed=20, dtype=jnp.bfloat16)
    bias = jnp.asarray(-300.0 - 0.5 * np.arange(S, dtype=np.float32))  # [S], broadcast
    got = _call(implementation, q * 0, k, v, bias=bias)  # logits = bias alone
    weights = np.exp(-0.5 * np.arange(S))
    weights /= weights.sum()
    want = np.einsum("s,bskh->bkh", weights, np.asarray(v, np.float32)).repeat(N // K, axis=1)
    np.testing.assert_allclose(
        got.astype(np.float32), np.broadcast_to(want[:, None], got.shape), atol=3e-2
    )


def test_choose_implementation_avoids_paths_that_reject_the_input():
    q, k, v = _inputs(Hv=6)
    assert choose_implementation(q, k, v, return_weights=False, platform="tpu") == "blockwise"
    with jax.enable_x64(True):
        q64, k64, v64 = _inputs(dtype=jnp.float64)
        assert choose_implementation(q64, k64, v64, return_weights=False, platform="gpu") == (
            "blockwise"
        )
    q16, k16, v16 = _inputs(H=64, dtype=jnp.bfloat16)
    kwargs = {"return_weights": False, "platform": "gpu"}
    assert choose_implementation(q16, k16, v16, has_bias=True, **kwargs) == "xla"
    assert choose_implementation(q16, k16, v16, local_window_size=(4, 0), **kwargs) == "xla"


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_traced_scale_and_its_gradient(implementation):
    q, k, v = _inputs(seed=21)

    def loss(scale):
        return jnp.sum(jnp.sin(_call(implementation, q, k, v, scale=scale, is_causal=True)))

    value, grad = jax.jit(jax.value_and_grad(loss))(0.3)
    i, j = np.indices((T, S))
    want = np.sum(np.sin(numpy_attention(q, k, v, scale=0.3, mask=j <= i)))
    np.testing.assert_allclose(value, want, rtol=1e-5)
    eps = 1e-3
    numeric = (loss(0.3 + eps) - loss(0.3 - eps)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=2e-2)


@pytest.mark.parametrize("implementation", ("reference", "blockwise", "direct"))
def test_second_order_gradients(implementation):
    q, k, v = _inputs(seed=22)

    def gradient_norm(q, k, v, impl):
        grad = jax.grad(lambda q: jnp.sum(_call(impl, q, k, v, is_causal=True) ** 2))(q)
        return jnp.sum(grad**2)

    got = jax.grad(gradient_norm)(q, k, v, implementation)
    with jax.enable_x64(True):
        q64, k64, v64 = (x.astype(jnp.float64) for x in (q, k, v))
        want = jax.grad(gradient_norm)(q64, k64, v64, "reference")
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_empty_keys_give_zero_output(implementation):
    if implementation == "xla":
        pytest.skip("jax.nn.dot_product_attention cannot take S = 0 keys")
    q, k, v = _inputs()
    out = _call(implementation, q, k[:, :0], v[:, :0])
    np.testing.assert_array_equal(out, np.zeros((B, T, N, H)))


def _vmap_cases():
    """(name, kwargs batched over B (in_axes 0), kwargs shared by every example (in_axes None))."""
    rng = np.random.default_rng(23)
    key_mask = _rng_mask(24, (B, 1, T, S))
    shared_mask = _rng_mask(25, (1, N, T, S))
    bias = jnp.asarray(rng.normal(size=(B, N, T, S)), jnp.float32)
    return [
        ("plain", {}, {}),
        ("causal", {}, {"is_causal": True}),
        ("window", {}, {"local_window_size": (2, 1)}),
        ("mask_per_example", {"mask": key_mask}, {}),
        ("mask_shared_4d", {}, {"mask": shared_mask}),
        ("mask_shared_2d_causal", {}, {"mask": _rng_mask(26, (T, S)), "is_causal": True}),
        ("bias_per_example", {"bias": bias}, {}),
        ("lengths_per_example", {"key_value_seq_lengths": jnp.array([7, 4])}, {}),
        (
            "both_lengths",
            {"query_seq_lengths": jnp.array([3, 5]), "key_value_seq_lengths": jnp.array([6, 2])},
            {},
        ),
    ]


VMAP_CASES = _vmap_cases()


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("case", VMAP_CASES, ids=[c[0] for c in VMAP_CASES])
def test_unbatched_inputs_under_vmap_match_jax_nn(implementation, case):
    """jax.vmap over the batch hands each call [T, N, H] inputs, as jax.nn's own tests do."""
    _, per_example, shared = case
    q, k, v = _inputs(seed=27)
    names = tuple(per_example)

    def one_example(q, k, v, *batched):
        kwargs = dict(zip(names, batched, strict=True))
        return dot_product_attention(q, k, v, implementation=implementation, **kwargs, **shared)

    got = jax.vmap(one_example)(q, k, v, *per_example.values())
    kwargs = {**per_example, **shared}
    want = jax.nn.dot_product_attention(q, k, v, implementation="xla", **kwargs)
    allowed = masks.build_mask(
        T,
        S,
        **{
            n: kwargs.get(n)
            for n in (
                "mask",
                "is_causal",
                "query_seq_lengths",
                "key_value_seq_lengths",
                "local_window_size",
            )
        },
    )
    if allowed is not None:  # jax.nn gives mean(V) where a query may attend to nothing; we give 0
        attends = jnp.broadcast_to(jnp.any(allowed, axis=-1), (B, N, T)).transpose(0, 2, 1)
        want = jnp.where(attends[..., None], want, 0.0)
    assert got.shape == (B, T, N, H)
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_unbatched_call_with_lengths_of_one_example(implementation):
    q, k, v = _inputs(seed=28)
    mask = _rng_mask(29, (N, T, S))  # [N, T, S] broadcasts to [1, N, T, S]
    kwargs = {"mask": mask, "key_value_seq_lengths": jnp.array([5]), "is_causal": True}
    got = dot_product_attention(q[1], k[1], v[1], implementation=implementation, **kwargs)
    want = dot_product_attention(q[1:], k[1:], v[1:], implementation="reference", **kwargs)
    assert got.shape == (T, N, H)
    np.testing.assert_allclose(got, want[0], rtol=2e-5, atol=2e-5)
    out, weights = dot_product_attention(q[1], k[1], v[1], return_weights=True, **kwargs)
    assert out.shape == (T, N, H) and weights.shape == (N, T, S)


def test_blockwise_attention_takes_unbatched_inputs():
    q, k, v = _inputs(seed=30)
    got = blockwise_attention(q[0], k[0], v[0], is_causal=True, block_q=2, block_k=3)
    want = blockwise_attention(q[:1], k[:1], v[:1], is_causal=True, block_q=2, block_k=3)
    np.testing.assert_array_equal(got, want[0])


def test_cudnn_off_a_gpu_is_one_clear_error():
    if jax.default_backend() == "gpu":
        pytest.skip("this process has a GPU")
    q = jnp.ones((1, 4, 2, 8), jnp.bfloat16)
    with pytest.raises(ValueError, match=r"implementation='cudnn' needs an NVIDIA GPU.*'cpu'"):
        dot_product_attention(q, q, q, implementation="cudnn")
