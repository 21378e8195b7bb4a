"""HardMultiHeadAttention: the argmax selection against soft attention, the training estimators,
one estimator name meaning the same in the RNN attention layers, learning an alignment task and the
estimators' gradient variance.

Keys are "rbg" keys, which compile much faster than threefry on CPU.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from attn.kernels.hard import ESTIMATORS
from attn.kernels.hard_training import gradient_variance, gumbel_temperature, reinforce_loss
from attn.layers.attention import MultiHeadAttention
from attn.layers.hard_attention import HardMultiHeadAttention, HardSelection
from attn.layers.intermediates import collect_intermediates
from attn.layers.rnn_attention import BahdanauAttention, LuongAttention

B, T, S, D, N, K = 2, 5, 7, 12, 4, 2


def _key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl="rbg")


def _x(seed: int, shape: tuple[int, ...]) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape) * 2.0, jnp.float32)


def _pair(estimator: str, score: str = "scaled_dot", seed: int = 0, **kwargs):
    """A soft and a hard layer with the same parameters."""
    common = dict(num_kv_heads=K, score=score)
    soft = MultiHeadAttention(N, D, **common, rngs=nnx.Rngs(seed))
    hard = HardMultiHeadAttention(
        N, D, **common, estimator=estimator, **kwargs, rngs=nnx.Rngs(seed)
    )
    hard.eval()  # the argmax unless a call asks for training
    return soft, hard


def _inspect(layer, *args, **kwargs):
    """(out, weights [B, N, T, S], selection or None) of one call, through the collector."""
    out, found = collect_intermediates(layer, *args, **kwargs)
    return out, found[("attention_weights",)], found.get(("selection",))


def _selected_output(layer: MultiHeadAttention, context: jax.Array, index: jax.Array) -> jax.Array:
    """out = W_O concat_n v[index[b, n, t], n // G] in NumPy float64, index [B, N, T]."""
    H = layer.head_dim
    v = np.asarray(layer.value(context), np.float64).reshape(*context.shape[:2], K, H)
    index = np.asarray(index)
    Bx, Nx, Tx = index.shape
    heads = np.zeros((Bx, Tx, Nx, H))
    for b in range(Bx):
        for n in range(Nx):
            for t in range(Tx):
                if index[b, n, t] >= 0:
                    heads[b, t, n] = v[b, index[b, n, t], n // (Nx // K)]
    kernel = np.asarray(layer.out.kernel[...], np.float64)
    return heads.reshape(Bx, Tx, Nx * H) @ kernel + np.asarray(layer.out.bias[...], np.float64)


# --------------------------------------------------------------------- forward semantics


@pytest.mark.parametrize("score", ["scaled_dot", "cosine", "general", "additive"])
def test_deterministic_hard_attention_selects_the_argmax_of_the_soft_weights(score):
    soft, hard = _pair("straight_through_sample", score, seed=1)
    x, context = _x(1, (B, T, D)), _x(2, (B, S, D))
    mask = np.random.default_rng(3).random((B, 1, T, S)) < 0.7
    mask[..., 0] = True
    mask[1, 0, 2] = False  # a query that may attend nowhere
    _, soft_weights, _ = _inspect(soft, x, context, mask=mask)
    out, weights, selection = _inspect(hard, x, context, mask=mask)
    assert isinstance(selection, HardSelection)
    want_index = np.argmax(np.asarray(soft_weights), -1)
    want_index[1, :, 2] = -1
    np.testing.assert_array_equal(selection.index, want_index)
    np.testing.assert_array_equal(weights, jax.nn.one_hot(want_index, S))
    np.testing.assert_allclose(out, _selected_output(hard, context, want_index), atol=1e-4)
    # log p(i*) and the entropy are those of the soft layer's softmax.
    p = np.asarray(soft_weights, np.float64)
    picked = np.take_along_axis(p, np.maximum(want_index, 0)[..., None], -1)[..., 0]
    want_log_prob = np.where(want_index >= 0, np.log(np.maximum(picked, 1e-30)), 0.0)
    np.testing.assert_allclose(selection.log_prob, want_log_prob, rtol=1e-4, atol=1e-5)
    terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    np.testing.assert_allclose(selection.entropy, -terms.sum(-1), rtol=1e-4, atol=1e-5)


def test_causal_hard_self_attention_never_selects_the_future():
    _, hard = _pair("reinforce", seed=2)
    x = _x(4, (B, T, D))
    for deterministic in (True, False):
        _, _, selection = _inspect(
            hard, x, is_causal=True, deterministic=deterministic, key=_key(0)
        )
        index = np.asarray(selection.index)
        assert np.all(index <= np.arange(T)[None, None, :]), deterministic
    assert np.all(np.asarray(selection.index)[:, :, 0] == 0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_cached_hard_decoding_equals_the_full_causal_pass(dtype):
    layer = HardMultiHeadAttention(
        N, D, num_kv_heads=K, estimator="gumbel_relaxed", dtype=dtype, rngs=nnx.Rngs(6)
    )
    layer.eval()
    x = _x(11, (B, T, D)).astype(dtype)
    full, _, selection = _inspect(layer, x, is_causal=True)
    assert full.dtype == dtype and selection.log_prob.dtype == jnp.float32
    layer.init_cache(B, T + 2)
    prefill = layer(x[:, :3], decode=True)
    steps = [layer(x[:, t : t + 1], decode=True) for t in range(3, T)]
    cached = jnp.concatenate([prefill, *steps], axis=1)
    tolerance = 1e-5 if dtype == jnp.float32 else 2e-2
    np.testing.assert_allclose(
        np.asarray(cached, np.float32), np.asarray(full, np.float32), atol=tolerance
    )


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_training_mode_samples_and_routes_gradients_as_the_estimator_says(estimator):
    soft, hard = _pair(estimator, seed=3)
    x, context = _x(5, (B, T, D)), _x(6, (B, S, D))
    key, temperature = _key(7), 0.4
    out, weights, selection = _inspect(
        hard, x, context, deterministic=False, key=key, temperature=temperature
    )
    _, soft_weights, _ = _inspect(soft, x, context)
    index = np.asarray(selection.index)
    log_p = np.log(np.asarray(soft_weights, np.float64))
    if estimator == "straight_through_argmax":
        np.testing.assert_array_equal(index, np.argmax(log_p, -1))
    else:
        # The positions are Gumbel-max samples: argmax(log p + g) with g drawn from the key.
        g = np.asarray(jax.random.gumbel(key, (B, N, T, S)))
        np.testing.assert_array_equal(index, np.argmax(log_p + g, -1))
        assert not np.array_equal(index, np.argmax(log_p, -1))  # not the argmax: it samples
    if estimator == "gumbel_relaxed":
        relaxed = np.exp((log_p + g) / temperature)
        relaxed /= relaxed.sum(-1, keepdims=True)
        np.testing.assert_allclose(weights, relaxed, rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_array_equal(weights, jax.nn.one_hot(index, S))
        np.testing.assert_allclose(out, _selected_output(hard, context, index), atol=1e-4)

    def output_loss(layer):
        out = layer(x, context, deterministic=False, key=key, temperature=temperature)
        return jnp.sum(jnp.sin(out))

    grads = nnx.grad(output_loss)(hard)
    score_grad = np.abs(np.asarray(grads["query"]["kernel"][...])).max()
    value_grad = np.abs(np.asarray(grads["value"]["kernel"][...])).max()
    assert value_grad > 1e-3
    if estimator == "reinforce":  # the scores learn from the log-probabilities only
        assert score_grad == 0.0

        def log_prob_loss(layer):
            _, _, sel = _inspect(layer, x, context, deterministic=False, key=key)
            return jnp.sum(sel.log_prob)

        assert np.abs(np.asarray(nnx.grad(log_prob_loss)(hard)["query"]["kernel"][...])).max() > 0
    else:
        assert score_grad > 1e-4


def test_lower_gumbel_temperature_gives_sharper_weights():
    _, hard = _pair("gumbel_relaxed", seed=4)
    x = _x(8, (B, T, D))
    peaks = [
        float(jnp.mean(jnp.max(_inspect(hard, x, deterministic=False, key=_key(1),
                                        temperature=tau)[1], -1)))
        for tau in (5.0, 1.0, 0.1)
    ]  # fmt: skip
    assert peaks[0] < peaks[1] < peaks[2] and peaks[2] > 0.9, peaks
    # Without a temperature in the call, the constructor's temperature applies.
    _, sharp = _pair("gumbel_relaxed", seed=4, temperature=0.1)
    np.testing.assert_allclose(
        sharp(x, deterministic=False, key=_key(1)),
        hard(x, deterministic=False, key=_key(1), temperature=0.1),
        rtol=1e-5,
        atol=1e-6,
    )


def test_without_a_key_the_selection_draws_from_the_dropout_stream():
    def indices(seed):
        layer = HardMultiHeadAttention(N, D, estimator="reinforce", rngs=nnx.Rngs(0, dropout=seed))
        x = _x(9, (B, T, D)) * 0.1  # flat scores: samples differ between draws
        draws = [_inspect(layer, x, deterministic=False)[2].index for _ in range(2)]
        return [np.asarray(d) for d in draws]

    first, second = indices(1), indices(1)
    np.testing.assert_array_equal(first[0], second[0])  # reproducible from the seed
    assert not np.array_equal(first[0], first[1])  # a fresh key per call
    assert not np.array_equal(first[0], indices(2)[0])


def test_the_hard_layer_has_the_parameters_of_the_soft_one():
    soft, hard = _pair("gumbel_relaxed", seed=5)
    assert not hasattr(soft, "estimator") and isinstance(hard, MultiHeadAttention)
    x = _x(10, (B, T, D))
    np.testing.assert_array_equal(
        nnx.to_flat_state(nnx.state(soft, nnx.Param))[0][1][...],
        nnx.to_flat_state(nnx.state(hard, nnx.Param))[0][1][...],
    )
    out, weights, _ = _inspect(soft, x)
    assert np.all(np.asarray(weights) < 1.0) and out.shape == (B, T, D)


# --------------------------------------------------------------------- learning and variance

BATCH, SLOTS, WIDTH = 32, 7, 8
LEARNERS = ("straight_through_sample", "gumbel_relaxed", "reinforce")


def _marker_batch(key):
    """A query must select the one context slot whose last feature is a marker.

    Returns query [B, 1, D] (ones), context [B, S, D] (random payload, marker 3.0 at one slot),
    target [B, 1, D] (the marked slot) and the marked slot [B].
    """
    payload_key, marker_key = jax.random.split(key)
    context = jax.random.normal(payload_key, (BATCH, SLOTS, WIDTH)).at[:, :, -1].set(0.0)
    marker = jax.random.randint(marker_key, (BATCH,), 0, SLOTS)
    context = context.at[jnp.arange(BATCH), marker, -1].set(3.0)
    target = context[jnp.arange(BATCH), marker][:, None, :]
    return jnp.ones((BATCH, 1, WIDTH)), context, target, marker


def _task_loss(layer, batch, key, temperature):
    """Per-example squared error of the attended slot, and the selection."""
    query, context, target, _ = batch
    out, _, selection = _inspect(
        layer, query, context, deterministic=False, key=key, temperature=temperature
    )
    return jnp.mean((out - target) ** 2, axis=(1, 2)), selection


def _accuracy(layer) -> float:
    query, context, _, marker = _marker_batch(_key(12345))
    _, _, selection = _inspect(layer, query, context, deterministic=True)
    return float(np.mean(np.asarray(selection.index)[:, :, 0] == np.asarray(marker)[:, None]))


@pytest.mark.parametrize("estimator", LEARNERS)
def test_each_estimator_learns_to_select_the_marked_slot(estimator):
    layer = HardMultiHeadAttention(2, WIDTH, estimator=estimator, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)
    tx = optax.adam(3e-2)
    steps = 250

    def loss_fn(params, step, baseline):
        layer = nnx.merge(graphdef, params, rest)
        key = jax.random.fold_in(_key(1), step)
        batch = _marker_batch(jax.random.fold_in(key, 0))
        temperature = gumbel_temperature(step, initial=1.0, minimum=0.3, rate=0.01)
        per_example, selection = _task_loss(layer, batch, jax.random.fold_in(key, 1), temperature)
        loss = jnp.mean(per_example)
        if estimator != "reinforce":
            return loss, baseline
        surrogate, new_baseline = reinforce_loss(
            selection.log_prob,
            -per_example,
            baseline,
            entropy=selection.entropy,
            entropy_weight=0.01,
        )
        return loss + surrogate, new_baseline

    @jax.jit
    def train(params):
        def step(carry, i):
            params, opt_state, baseline = carry
            grads, baseline = jax.grad(loss_fn, has_aux=True)(params, i, baseline)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state, baseline), None

        carry = (params, tx.init(params), jnp.zeros((), jnp.float32))
        return jax.lax.scan(step, carry, jnp.arange(steps))[0][0]

    assert _accuracy(layer) < 0.5
    trained = nnx.merge(graphdef, train(params), rest)
    assert _accuracy(trained) > 0.9


def _gradient_of_scores(estimator: str, baseline: float, batch):
    """gradient(estimator, key) -> gradients of the query and key projections for one draw."""
    # The same parameters for every estimator.
    layer = HardMultiHeadAttention(2, WIDTH, estimator=estimator, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def loss(params, key):
        layer = nnx.merge(graphdef, params, rest)
        per_example, selection = _task_loss(layer, batch, key, 0.5)
        total = jnp.mean(per_example)
        if estimator == "reinforce":
            total = total + reinforce_loss(selection.log_prob, -per_example, baseline)[0]
        return total

    def gradient(name, key):
        assert name == estimator
        grads = jax.grad(loss)(params, key)
        return {"query": grads["query"], "key": grads["key"]}

    return gradient, nnx.merge(graphdef, params, rest)


def test_reinforce_has_the_highest_gradient_variance_and_the_baseline_lowers_it():
    batch = _marker_batch(_key(5))
    variances = {}
    for estimator in LEARNERS:
        gradient, _ = _gradient_of_scores(estimator, 0.0, batch)
        variances.update(
            gradient_variance(gradient, _key(0), estimators=[estimator], num_samples=96)
        )
    assert all(np.isfinite(v) and v > 0 for v in variances.values()), variances
    others = max(variances["straight_through_sample"], variances["gumbel_relaxed"])
    assert variances["reinforce"] > 2 * others
    # The mean reward as baseline (what the moving average converges to on a fixed batch).
    _, layer = _gradient_of_scores("reinforce", 0.0, batch)
    keys = jax.random.split(_key(3), 32)
    graphdef, state = nnx.split(
        layer
    )  # a module is mutated (sown into) in the trace it is merged in
    per_example = jax.vmap(lambda k: _task_loss(nnx.merge(graphdef, state), batch, k, 1.0)[0])(keys)
    gradient, _ = _gradient_of_scores("reinforce", float(-jnp.mean(per_example)), batch)
    with_baseline = gradient_variance(gradient, _key(0), estimators=["reinforce"], num_samples=96)[
        "reinforce"
    ]
    assert with_baseline < 0.5 * variances["reinforce"], (with_baseline, variances)


# ---------------------------------------------------------------------------- bad input


def test_bad_hard_options_raise_clear_errors():
    allowed = r"\['straight_through_argmax', 'straight_through_sample', 'gumbel_relaxed'"
    with pytest.raises(ValueError, match=rf"unknown estimator 'argmax'; expected one of {allowed}"):
        HardMultiHeadAttention(N, D, estimator="argmax", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="temperature must be > 0, got 0.0"):
        HardMultiHeadAttention(N, D, estimator="gumbel_relaxed", temperature=0.0, rngs=nnx.Rngs(0))
    _, hard = _pair("gumbel_relaxed")
    with pytest.raises(ValueError, match="temperature must be > 0, got -1.0"):
        hard(_x(0, (B, T, D)), deterministic=False, key=_key(0), temperature=-1.0)


# ------------------------------------------------------------- one vocabulary, every layer


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
@pytest.mark.parametrize("rnn_layer", ["bahdanau", "luong"])
def test_an_estimator_name_means_the_same_in_multi_head_and_rnn_attention(estimator, rnn_layer):
    """The same logits and key give identical weights and gradients in both families."""
    common = dict(estimator=estimator, temperature=0.7, rngs=nnx.Rngs(0))
    mha = HardMultiHeadAttention(N, D, **common)
    rnn = (BahdanauAttention if rnn_layer == "bahdanau" else LuongAttention)(D, D, **common)
    logits = _x(20, (B, S))
    mask = np.ones((B, S), bool)
    mask[1, 4:] = False
    key, cotangent = _key(3), _x(21, (B, S))

    def weights_and_gradient(select, deterministic):
        def run(logits):
            return select(logits, mask, key=key, deterministic=deterministic)

        weights, pullback = jax.vjp(lambda logits: run(logits)[0], logits)
        return weights, pullback(cotangent)[0], run(logits)[1]

    for deterministic in (False, True):
        w_mha, g_mha, selection = weights_and_gradient(mha.select, deterministic)
        w_rnn, g_rnn, log_prob = weights_and_gradient(rnn.select, deterministic)
        np.testing.assert_array_equal(w_mha, w_rnn)
        np.testing.assert_array_equal(g_mha, g_rnn)
        assert np.all(np.asarray(w_mha)[1, 4:] == 0.0)
        if estimator != "gumbel_relaxed" or deterministic:  # one-hot values
            np.testing.assert_array_equal(np.asarray(w_rnn).sum(-1), 1.0)
        if estimator == "reinforce" and not deterministic:
            np.testing.assert_array_equal(selection.log_prob, log_prob)
        else:
            assert log_prob is None
