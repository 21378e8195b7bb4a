import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from attn.kernels import SCORES, attention, dot_product_attention, masked_softmax, scores


def test_lecture_problem_1_sentiment_of_last_token():
    """The worked example of the lecture notes: one head, W_Q = W_K = W_V, scaled dot product."""
    words = {
        "<START>": [0, 0, 0],
        "Awful": [0, -5, 0],
        "plot": [1, 0, 0],
        "and": [0, 0, 0],
        "actors.": [-1, 0, 0],
        "The": [0, 0, 0],
        "movie": [-2, 0, 0],
        "is": [0, 0, 0],
    }
    x = np.array(list(words.values()), np.float32)
    positions = np.stack([np.zeros(8), np.zeros(8), np.arange(8)], axis=1)  # p_t = [0, 0, t-1]
    W = np.array([[0.1, 0.0], [0.0, -0.1], [0.0, 0.1]], np.float32)
    h = jnp.asarray((x + positions) @ W)  # Q = K = V = X W: [T=8, H=2]
    W_yh = np.array([[1.0, -1.0], [-1.0, 1.0]])  # rows: "good", "bad"

    # Through the reference kernel, causal as a language model ...
    causal = np.tril(np.ones((8, 8), bool))
    z, p = attention(h, h, h, mask=causal, score="scaled_dot")
    np.testing.assert_allclose(
        p[-1], [0.101, 0.136, 0.112, 0.118, 0.124, 0.130, 0.136, 0.143], atol=5e-4
    )
    np.testing.assert_allclose(z[-1], [-0.028, 0.436], atol=5e-4)
    logits = W_yh @ np.asarray(z[-1])
    np.testing.assert_allclose(logits, [-0.464, 0.464], atol=1e-3)
    assert ["good", "bad"][int(np.argmax(logits))] == "bad"

    # ... and through the multi-head kernel, every implementation.
    hm = h[None, :, None, :]  # [T, H] -> [B=1, T, N=1, H]
    for implementation in ("reference", "blockwise", "xla"):
        out = dot_product_attention(hm, hm, hm, is_causal=True, implementation=implementation)
        np.testing.assert_allclose(out[0, :, 0], z, atol=1e-6, err_msg=implementation)


def _qkv(rng, T=5, S=7, H=3, Hv=4):
    return (
        jnp.asarray(rng.normal(size=(T, H)), jnp.float32),
        jnp.asarray(rng.normal(size=(S, H)), jnp.float32),
        jnp.asarray(rng.normal(size=(S, Hv)), jnp.float32),
    )


def test_scores_match_their_formulas():
    rng = np.random.default_rng(0)
    q, k, _ = _qkv(rng)
    qn, kn = np.asarray(q, np.float64), np.asarray(k, np.float64)
    np.testing.assert_allclose(scores.dot(q, k), qn @ kn.T, rtol=1e-5)
    np.testing.assert_allclose(scores.scaled_dot(q, k), qn @ kn.T / np.sqrt(3), rtol=1e-5)
    np.testing.assert_allclose(scores.scaled_dot(q, k, scale=0.25), qn @ kn.T / 4, rtol=1e-5)
    W = rng.normal(size=(3, 6)).astype(np.float32)
    k6 = rng.normal(size=(7, 6)).astype(np.float32)
    np.testing.assert_allclose(scores.general(q, k6, W), qn @ W @ k6.T, rtol=1e-5, atol=1e-5)
    W_q = rng.normal(size=(3, 8)).astype(np.float32)
    W_k = rng.normal(size=(6, 8)).astype(np.float32)
    v = rng.normal(size=8).astype(np.float32)
    want = np.array([[v @ np.tanh(qi @ W_q + kj @ W_k) for kj in k6] for qi in qn])
    np.testing.assert_allclose(scores.additive(q, k6, W_q, W_k, v), want, rtol=1e-5, atol=1e-5)
    cos = (qn / np.linalg.norm(qn, axis=1, keepdims=True)) @ (
        kn / np.linalg.norm(kn, axis=1, keepdims=True)
    ).T
    np.testing.assert_allclose(scores.cosine(q, k, temperature=0.5), cos / 0.5, rtol=1e-5)


def test_cosine_of_zero_vector_is_zero_not_nan():
    got = scores.cosine(jnp.zeros((1, 3)), jnp.ones((2, 3)))
    np.testing.assert_array_equal(got, np.zeros((1, 2)))


def test_score_registry_names():
    assert set(SCORES) == {"dot", "scaled_dot", "general", "additive", "cosine"}


def test_unknown_score_lists_the_known_ones():
    q, k, v = _qkv(np.random.default_rng(1))
    with pytest.raises(ValueError, match="unknown score 'luong'.*additive"):
        attention(q, k, v, score="luong")


@pytest.mark.parametrize("score", ["dot", "scaled_dot", "cosine", "general", "additive"])
def test_attention_output_is_weights_times_values(score):
    rng = np.random.default_rng(2)
    q, k, v = _qkv(rng)
    params = {
        "general": {"W": jnp.asarray(rng.normal(size=(3, 3)), jnp.float32)},
        "additive": {
            "W_q": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
            "W_k": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
            "v": jnp.asarray(rng.normal(size=4), jnp.float32),
        },
    }.get(score, {})
    out, weights = attention(q, k, v, score=score, score_params=params)
    logits = SCORES[score](q, k, **params)
    np.testing.assert_allclose(weights, jax.nn.softmax(logits, axis=-1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out, weights @ v, rtol=1e-5, atol=1e-6)
    assert out.shape == (5, 4) and weights.shape == (5, 7)


def test_mask_and_bias_in_reference_kernel():
    rng = np.random.default_rng(3)
    q, k, v = _qkv(rng)
    mask = rng.random((5, 7)) > 0.4
    mask[:, 0] = True
    bias = rng.normal(size=(5, 7)).astype(np.float32)
    _, weights = attention(q, k, v, mask=mask, bias=bias)
    logits = np.asarray(q, np.float64) @ np.asarray(k, np.float64).T / np.sqrt(3) + bias
    logits = np.where(mask, logits, -np.inf)
    want = np.exp(logits - logits.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    np.testing.assert_allclose(weights, want, rtol=1e-5, atol=1e-7)
    assert np.all(np.asarray(weights)[~mask] == 0.0)


def test_masked_softmax_fully_masked_row_is_zero_with_zero_gradient():
    logits = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = jnp.array([[True, False, True], [False, False, False]])
    weights = masked_softmax(logits, mask)
    np.testing.assert_array_equal(weights[1], np.zeros(3))
    np.testing.assert_allclose(weights[0].sum(), 1.0, rtol=1e-6)
    grad = jax.grad(lambda x: jnp.sum(masked_softmax(x, mask) * jnp.arange(3.0)))(logits)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[1], np.zeros(3))


def test_minus_inf_bias_stays_finite():
    logits = jnp.array([[0.0, -jnp.inf, 1.0]])
    weights = masked_softmax(logits, None)
    assert np.all(np.isfinite(weights)) and weights[0, 1] == 0.0


@pytest.mark.parametrize("score", ["scaled_dot", "general", "additive", "cosine"])
def test_check_grads_float64_reference(x64, score):
    rng = np.random.default_rng(4)
    q = jnp.asarray(rng.normal(size=(5, 3)))
    k = jnp.asarray(rng.normal(size=(7, 3)))
    v = jnp.asarray(rng.normal(size=(7, 4)))
    bias = jnp.asarray(rng.normal(size=(5, 7)))
    mask = jnp.asarray(np.tril(np.ones((5, 7), bool), k=1))
    params = {
        "general": {"W": jnp.asarray(rng.normal(size=(3, 3)))},
        "additive": {
            "W_q": jnp.asarray(rng.normal(size=(3, 4))),
            "W_k": jnp.asarray(rng.normal(size=(3, 4))),
            "v": jnp.asarray(rng.normal(size=4)),
        },
    }.get(score, {})
    assert q.dtype == jnp.float64

    def f(q, k, v, bias, params):
        return attention(q, k, v, mask=mask, bias=bias, score=score, score_params=params)[0]

    check_grads(f, (q, k, v, bias, params), order=2, modes=("rev",), atol=1e-6, rtol=1e-6)


def test_cosine_gradient_at_a_zero_vector_is_finite():
    grad = jax.grad(lambda q: jnp.sum(scores.cosine(q, jnp.ones((2, 3)))))(jnp.zeros((1, 3)))
    assert np.all(np.isfinite(grad))


def test_very_negative_bias_on_every_allowed_key_spreads_over_the_allowed_keys():
    mask = jnp.array([[True, True, False, False]])
    bias = jnp.array([[-jnp.inf, -jnp.inf, 0.0, 0.0]])
    _, weights = attention(jnp.zeros((1, 2)), jnp.zeros((4, 2)), jnp.eye(4), mask=mask, bias=bias)
    np.testing.assert_allclose(weights, [[0.5, 0.5, 0.0, 0.0]])


def test_score_params_that_do_not_fit_the_score_are_one_clear_error():
    q, k, v = _qkv(np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"score='additive' takes score_params .*W_q.*got \[\]"):
        attention(q, k, v, score="additive")
    with pytest.raises(ValueError, match=r"score='general' .*got \['U'\]"):
        attention(q, k, v, score="general", score_params={"U": jnp.eye(3)})
    out, _ = attention(q, k, v, score="scaled_dot", score_params={"scale": 0.5})  # optional key
    assert out.shape == (5, 4)
