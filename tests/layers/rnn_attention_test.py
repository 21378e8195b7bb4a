"""Bahdanau and Luong attention: torch score computations as peers, masking, hard attention
(eval argmax, straight-through, Gumbel, REINFORCE log-probs), gradients and bad input.

The fixtures are made by `tests/fixtures/make_torch_rnn.py`; this file needs no torch.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.kernels.hard import ESTIMATORS
from attn.layers.rnn_attention import BahdanauAttention, LuongAttention

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
B, S, HQ, HK, A = 3, 7, 6, 8, 5
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "torch_rnn_attention.npz") as arrays:
        return {key: arrays[key] for key in arrays.files}


def bahdanau_from(data, **kwargs) -> BahdanauAttention:
    """The layer with the torch fixture's weights, in evaluation mode (peer parity; the tests of
    training pass `deterministic=False`)."""
    layer = BahdanauAttention(HQ, HK, A, deterministic=True, rngs=nnx.Rngs(0), **kwargs)
    layer.W_q[...] = jnp.asarray(data["bahdanau/W_q"].T)  # torch Linear [A, Hq] -> [Hq, A]
    layer.W_k[...] = jnp.asarray(data["bahdanau/W_k"].T)
    layer.v[...] = jnp.asarray(data["bahdanau/v"][0])
    return layer


def general_from(data, **kwargs) -> LuongAttention:
    layer = LuongAttention(HQ, HK, "general", rngs=nnx.Rngs(0), **kwargs)
    layer.eval()  # as `bahdanau_from`
    layer.W[...] = jnp.asarray(data["general/W"])  # q · (W k) = q W kᵀ with W [Hq, Hk]
    return layer


def check(out, data, name):
    np.testing.assert_allclose(out.weights, data[f"{name}/weights"], **TOL)
    np.testing.assert_allclose(out.context, data[f"{name}/context"], **TOL)
    assert out.log_prob is None


# ----------------------------------------------------------------------------------------------
# Peers: the score computations written in torch.


def test_bahdanau_matches_torch(data):
    out = bahdanau_from(data)(data["query"], data["keys"], mask=data["mask"])
    check(out, data, "bahdanau")


def test_luong_dot_matches_torch(data):
    layer = LuongAttention(HK, HK, "dot", rngs=nnx.Rngs(0))
    check(layer(data["query_dot"], data["keys"], mask=data["mask"]), data, "dot")


def test_luong_scaled_dot_is_dot_over_sqrt_width(data):
    """e_j = s · h_j / √H: the torch dot peer's logits divided by √H give the same softmax."""
    layer = LuongAttention(HK, HK, "scaled_dot", rngs=nnx.Rngs(0))
    out = layer(data["query_dot"], data["keys"], mask=data["mask"])
    mask = jnp.asarray(data["mask"], bool)
    logits = jnp.einsum("BH,BSH->BS", data["query_dot"], data["keys"]) / np.sqrt(HK)
    weights = jax.nn.softmax(jnp.where(mask, logits, -jnp.inf), axis=-1)
    np.testing.assert_allclose(out.weights, weights, **TOL)
    np.testing.assert_allclose(out.context, jnp.einsum("BS,BSH->BH", weights, data["keys"]), **TOL)
    dot_weights = LuongAttention(HK, HK, "dot", rngs=nnx.Rngs(0))(
        data["query_dot"] / np.sqrt(HK), data["keys"], mask=data["mask"]
    ).weights
    np.testing.assert_allclose(out.weights, dot_weights, **TOL)
    assert not np.allclose(out.weights, data["dot/weights"], **TOL)  # the scale changes α


def test_luong_general_matches_torch(data):
    check(general_from(data)(data["query"], data["keys"], mask=data["mask"]), data, "general")


def test_luong_concat_matches_torch(data):
    layer = LuongAttention(HQ, HK, "concat", attention_dim=A, rngs=nnx.Rngs(0))
    W = data["concat/W"]  # [A, Hq + Hk] acting on [q; k]
    layer.W_q[...] = jnp.asarray(W[:, :HQ].T)
    layer.W_k[...] = jnp.asarray(W[:, HQ:].T)
    layer.v[...] = jnp.asarray(data["concat/v"][0])
    check(layer(data["query"], data["keys"], mask=data["mask"]), data, "concat")


def test_weights_are_exactly_zero_at_padding_and_sum_to_one(data):
    out = bahdanau_from(data)(data["query"], data["keys"], mask=data["mask"])
    mask = data["mask"]
    assert np.all(np.asarray(out.weights)[~mask] == 0.0)
    np.testing.assert_allclose(np.asarray(out.weights).sum(-1), 1.0, rtol=1e-6)
    # Values at padded positions do not reach the context.
    values = np.array(data["keys"])
    values[~mask] = 1e6
    noisy = bahdanau_from(data)(data["query"], data["keys"], values, mask=data["mask"])
    np.testing.assert_allclose(noisy.context, out.context, **TOL)


def test_bfloat16_compute_keeps_float32_weights(data):
    layer = general_from(data, dtype=jnp.bfloat16)
    keys = jnp.asarray(data["keys"], jnp.bfloat16)
    out = layer(jnp.asarray(data["query"], jnp.bfloat16), keys, mask=data["mask"])
    assert out.weights.dtype == jnp.float32 and out.context.dtype == jnp.bfloat16
    np.testing.assert_allclose(out.weights, data["general/weights"], atol=0.05)


# ----------------------------------------------------------------------------------------------
# Hard attention.


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_hard_attention_selects_the_argmax_at_evaluation(data, estimator):
    soft = general_from(data)(data["query"], data["keys"], mask=data["mask"])
    out = general_from(data, estimator=estimator)(data["query"], data["keys"], mask=data["mask"])
    best = np.argmax(np.where(data["mask"], soft.weights, -1), axis=-1)
    np.testing.assert_array_equal(out.weights, np.eye(S)[best])
    np.testing.assert_allclose(out.context, data["keys"][np.arange(B), best], **TOL)


def test_straight_through_has_one_hot_value_and_softmax_gradient(data):
    hard = general_from(data, estimator="straight_through_argmax")
    soft = general_from(data)
    keys, mask = jnp.asarray(data["keys"]), data["mask"]
    probe = jax.random.normal(jax.random.key(0), (B, S))

    def loss(layer, query):
        return jnp.sum(layer(query, keys, mask=mask, deterministic=False).weights * probe)

    out = hard(data["query"], keys, mask=mask, deterministic=False)
    assert set(np.unique(np.asarray(out.weights))) <= {0.0, 1.0}
    g_hard = jax.grad(loss, argnums=1)(hard, jnp.asarray(data["query"]))
    g_soft = jax.grad(loss, argnums=1)(soft, jnp.asarray(data["query"]))
    np.testing.assert_allclose(g_hard, g_soft, rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(g_hard).max()) > 0


def test_sampling_estimators_draw_real_positions_with_a_key(data):
    keys, mask = data["keys"], data["mask"]
    for estimator in ("gumbel_straight_through", "reinforce"):
        layer = general_from(data, estimator=estimator)
        with pytest.raises(ValueError, match="needs key="):
            layer(data["query"], keys, mask=mask, deterministic=False)
        picks = []
        for seed in range(20):
            out = layer(
                data["query"], keys, mask=mask, key=jax.random.key(seed), deterministic=False
            )
            weights = np.asarray(out.weights)
            np.testing.assert_array_equal(weights.sum(-1), 1.0)
            assert np.all(weights[~mask] == 0.0)
            picks.append(weights.argmax(-1))
        assert len({tuple(p) for p in picks}) > 1  # it samples, not always the argmax


def test_reinforce_log_prob_is_the_log_softmax_of_the_sample_and_has_a_gradient(data):
    layer = general_from(data, estimator="reinforce")
    soft = general_from(data)(data["query"], data["keys"], mask=data["mask"])
    out = layer(
        data["query"], data["keys"], mask=data["mask"], key=jax.random.key(3), deterministic=False
    )
    index = np.asarray(out.weights).argmax(-1)
    expected = np.log(np.asarray(soft.weights)[np.arange(B), index])
    np.testing.assert_allclose(out.log_prob, expected, rtol=1e-5, atol=1e-6)

    def surrogate(layer):
        attended = layer(
            data["query"],
            data["keys"],
            mask=data["mask"],
            key=jax.random.key(3),
            deterministic=False,
        )
        return jnp.sum(attended.log_prob)

    grads = nnx.grad(surrogate)(layer)
    assert float(jnp.abs(grads.W[...]).max()) > 0


# ----------------------------------------------------------------------------------------------
# Bad input.


def test_bad_input_raises_clear_errors(data):
    with pytest.raises(ValueError, match=r"unknown score 'bilinear'; expected one of \['concat'"):
        LuongAttention(HQ, HK, "bilinear", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="dot score needs query_dim == key_dim"):
        LuongAttention(HQ, HK, "dot", rngs=nnx.Rngs(0))
    with pytest.raises(
        ValueError, match=r"expected one of \['concat', 'dot', 'general', 'scaled_dot'\]"
    ):
        LuongAttention(HQ, HK, "scaled", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="scaled_dot score needs query_dim == key_dim, got query"):
        LuongAttention(HQ, HK, "scaled_dot", rngs=nnx.Rngs(0))
    with pytest.raises(
        ValueError, match=r"unknown estimator 'soft'; expected one of \['straight_through_argmax'"
    ):
        BahdanauAttention(HQ, HK, rngs=nnx.Rngs(0), estimator="soft")
    layer = bahdanau_from(data)
    with pytest.raises(ValueError, match=r"query must have shape \[B, Hq\] with Hq=6"):
        layer(data["keys"], data["keys"])
    with pytest.raises(ValueError, match=r"keys must have shape \[B, S, Hk\] = \[3, S, 8\]"):
        layer(data["query"], data["keys"][..., :5])
    with pytest.raises(ValueError, match=r"mask must have shape \[B, S\] = \[3, 7\]"):
        layer(data["query"], data["keys"], mask=data["mask"][:, :5])
