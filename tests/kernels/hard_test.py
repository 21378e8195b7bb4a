"""Tests for attn.kernels.hard: argmax / sampled selection, straight-through, Gumbel-softmax and
the REINFORCE log-probabilities, against float64 NumPy references and jax.nn.softmax.

The tests draw "rbg" keys: the kernels pass keys straight to `jax.random`, so they accept any key
type, and rbg compiles much faster than the default threefry on CPU.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn.kernels import hard
from attn.kernels.attention import attention

T, S, H, HV = 5, 7, 3, 2
B, N = 2, 4

argmax_index = jax.jit(hard.argmax_index)
argmax_weights = jax.jit(hard.argmax_weights)
sample_index = jax.jit(hard.sample_index)
sample_weights = jax.jit(hard.sample_weights)
straight_through = jax.jit(hard.straight_through_weights)
gumbel_softmax = jax.jit(hard.gumbel_softmax_weights, static_argnames="hard")
log_prob = jax.jit(hard.selection_log_prob)
entropy = jax.jit(hard.selection_entropy)
hard_attention = jax.jit(hard.hard_attention, static_argnames="estimator")
softmax = jax.jit(jax.nn.softmax)


def _key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl="rbg")


def _logits(*shape: int, seed: int = 0, spread: float = 2.0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=shape) * spread).astype(np.float32)


def _mask(*shape: int, seed: int = 1, empty_row: int | None = None) -> np.ndarray:
    """A random mask with at least one True per row, optionally one all-False row."""
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < 0.6
    flat = mask.reshape(-1, shape[-1])
    flat[np.arange(flat.shape[0]), rng.integers(0, shape[-1], flat.shape[0])] = True
    if empty_row is not None:
        flat[empty_row] = False
    return mask


def _np_masked_softmax(logits, mask) -> np.ndarray:
    """float64 reference: softmax over the True entries, 0 elsewhere and in empty rows."""
    logits = np.asarray(logits, np.float64)
    mask = np.broadcast_to(np.asarray(mask), logits.shape)
    top = np.max(np.where(mask, logits, -1e300), axis=-1, keepdims=True)
    e = np.where(mask, np.exp(np.where(mask, logits - top, -np.inf)), 0.0)
    total = e.sum(-1, keepdims=True)
    return np.divide(e, total, out=np.zeros_like(e), where=total > 0)


def _np_masked_argmax(logits, mask) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    return np.argmax(np.where(np.broadcast_to(mask, logits.shape), logits, -np.inf), axis=-1)


def _one_hot(index, size) -> np.ndarray:
    """NumPy one-hot; index -1 gives an all-zero row."""
    return np.eye(size + 1, dtype=np.float32)[np.asarray(index)][..., :size]


def _vjp(fn, x, cotangent):
    value, pullback = jax.vjp(fn, x)
    return value, pullback(cotangent)[0]


# ---------------------------------------------------------------------------- forward values


def test_argmax_weights_exact_one_hot_at_argmax():
    logits = _logits(B, N, T, S)
    weights = argmax_weights(logits)
    assert weights.dtype == jnp.float32 and weights.shape == (B, N, T, S)
    np.testing.assert_array_equal(weights, _one_hot(np.argmax(logits, -1), S))
    mask = _mask(B, 1, T, S)  # broadcasts over heads
    expected = _np_masked_argmax(logits, mask)
    assert not np.array_equal(expected, np.argmax(logits, -1))  # the mask matters here
    np.testing.assert_array_equal(argmax_weights(logits, mask), _one_hot(expected, S))
    np.testing.assert_array_equal(argmax_index(logits, mask), expected)


def test_straight_through_forward_is_exactly_one_hot():
    # Many rows of moderate probabilities: (1 + p) - p is not 1 for some of them in float32.
    logits = _logits(B, N, T, S, spread=0.7)
    np.testing.assert_array_equal(straight_through(logits), _one_hot(np.argmax(logits, -1), S))
    key = _key(3)
    sampled = straight_through(logits, key=key)
    np.testing.assert_array_equal(sampled, sample_weights(key, logits))
    assert not np.array_equal(sampled, _one_hot(np.argmax(logits, -1), S))  # really sampled
    assert set(np.unique(np.asarray(sampled)).tolist()) == {0.0, 1.0}


def test_sample_weights_is_one_hot_of_sample_index():
    logits, mask = _logits(T, S), _mask(T, S, empty_row=3)
    key = _key(0)
    index = sample_index(key, logits, mask)
    assert index.shape == (T,) and index.dtype == jnp.int32
    assert index[3] == hard.NO_SELECTION
    np.testing.assert_array_equal(sample_weights(key, logits, mask), _one_hot(index, S))
    np.testing.assert_array_equal(sample_index(key, logits, mask), index)  # deterministic
    others = [np.asarray(sample_index(_key(seed), logits, mask)) for seed in range(1, 6)]
    assert any(not np.array_equal(index, other) for other in others)


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("use_key", [False, True])
def test_straight_through_gradient_equals_softmax_gradient(use_key):
    logits = _logits(T, S, seed=4)
    cotangent = _logits(T, S, seed=5)
    key = _key(7) if use_key else None
    _, got = _vjp(lambda x: straight_through(x, key=key), logits, cotangent)
    _, want = _vjp(softmax, logits, cotangent)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(want)).max() > 1e-2  # a vanishing gradient would pass trivially


def test_straight_through_gradient_with_mask_is_softmax_over_selectable_columns():
    logits = _logits(T, S, seed=6)
    cotangent = _logits(T, S, seed=8)
    keep = np.array([True, False, True, True, False, True, True])
    _, got = _vjp(lambda x: straight_through(x, keep), logits, cotangent)
    _, want = _vjp(softmax, logits[:, keep], cotangent[:, keep])
    np.testing.assert_allclose(got[:, keep], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[:, ~keep], 0.0)


# ------------------------------------------------------------------------------- masking


def test_masked_positions_are_never_selected():
    # The masked-out positions carry the largest logits, so ignoring the mask would pick them.
    n = 4000
    mask = np.ones((T, S), bool)
    mask[:, 2] = False
    mask[np.arange(T), (np.arange(T) + 4) % S] = False
    logits = jnp.asarray(np.where(mask, _logits(T, S, spread=1.0), 30.0), jnp.float32)

    @jax.jit
    def select(key, logits):
        many = jnp.broadcast_to(logits, (n, T, S))
        return {
            "argmax": jnp.broadcast_to(hard.argmax_index(logits, mask), (n, T)),
            "sample": hard.sample_index(key, many, mask),
            "straight_through": jnp.argmax(hard.straight_through_weights(many, mask, key=key), -1),
            "gumbel_hard": jnp.argmax(
                hard.gumbel_softmax_weights(key, many, 0.5, mask, hard=True), -1
            ),
            "gumbel_soft_masked_mass": jnp.sum(
                jnp.where(mask, 0.0, hard.gumbel_softmax_weights(key, many, 0.5, mask))
            ),
        }

    selected = select(_key(11), logits)
    assert float(selected.pop("gumbel_soft_masked_mass")) == 0.0
    for name, index in selected.items():
        assert np.all(mask[np.arange(T), np.asarray(index)]), name


def test_sample_frequencies_match_masked_softmax():
    n = 20000
    logits = np.asarray(
        [
            [0.0, 1.0, -1.0, 0.5, 2.0, -0.5, 0.2],
            [1.5, 1.5, 0.0, 0.0, -2.0, 0.7, 3.0],
            [0.3, -0.3, 0.9, 1.2, -1.0, 0.0, 0.4],
        ],
        np.float32,
    )
    mask = np.ones((3, S), bool)
    mask[1, [0, 6]] = False
    index = np.asarray(sample_index(_key(5), np.broadcast_to(logits, (n, 3, S)), mask))
    freq = np.stack([np.bincount(index[:, r], minlength=S) / n for r in range(3)])
    p = _np_masked_softmax(logits, mask)
    bound = 5.0 * np.sqrt(p * (1 - p) / n) + 1.0 / n  # five binomial standard deviations
    assert np.all(np.abs(freq - p) <= bound), np.abs(freq - p) / bound


# -------------------------------------------------------------------------- Gumbel-softmax


def test_gumbel_softmax_value_reproducibility_and_normalization():
    logits, mask = _logits(T, S), _mask(T, S)
    key = _key(21)
    weights = gumbel_softmax(key, logits, 0.7, mask)
    np.testing.assert_array_equal(weights, gumbel_softmax(key, logits, 0.7, mask))
    assert not np.allclose(weights, gumbel_softmax(_key(22), logits, 0.7, mask))
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(weights)[~mask], 0.0)
    g = jax.random.gumbel(key, (T, S))
    want = _np_masked_softmax((np.asarray(logits) + np.asarray(g)) / 0.7, mask)
    np.testing.assert_allclose(weights, want, rtol=1e-5, atol=1e-6)


def test_gumbel_softmax_approaches_sample_one_hot_as_temperature_shrinks():
    logits, mask = _logits(T, S, seed=2), _mask(T, S, seed=3)
    key = _key(4)
    sample = _one_hot(sample_index(key, logits, mask), S)
    distances = [
        float(np.abs(gumbel_softmax(key, logits, t, mask) - sample).max(-1).mean())
        for t in (3.0, 1.0, 0.1, 0.01)
    ]
    assert all(a > b for a, b in itertools.pairwise(distances)), distances
    assert distances[0] > 0.2 and distances[-1] < 1e-3, distances
    np.testing.assert_array_equal(gumbel_softmax(key, logits, 3.0, mask, hard=True), sample)


@pytest.mark.parametrize("is_hard", [False, True])
def test_gumbel_softmax_gradient_is_finite_and_scaled_by_temperature(is_hard):
    logits, mask = _logits(T, S), _mask(T, S, empty_row=1)
    cotangent = np.asarray(_logits(T, S, seed=9), np.float64)
    key = _key(8)
    g = np.asarray(jax.random.gumbel(key, (T, S)), np.float64)
    for temperature in (2.0, 0.3, 0.05):  # traced under jit: one compilation
        _, got = _vjp(
            lambda x, t=temperature: gumbel_softmax(key, x, t, mask, hard=is_hard),
            logits,
            cotangent.astype(np.float32),
        )
        assert np.all(np.isfinite(got))
        # d/dx softmax((x + g) / t) applied to c:  y (c - Σ y c) / t over the selectable entries.
        y = _np_masked_softmax((np.asarray(logits) + g) / temperature, mask)
        want = y * (cotangent - np.sum(y * cotangent, -1, keepdims=True)) / temperature
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(got[1], 0.0)


# ------------------------------------------------------------------- REINFORCE quantities


def test_selection_log_prob_equals_log_softmax_at_index():
    logits, mask = _logits(B, T, S), _mask(B, T, S, empty_row=4)
    index = sample_index(_key(1), logits, mask)
    got = log_prob(logits, index, mask)
    p = _np_masked_softmax(logits, mask).reshape(-1, S)
    flat_index = np.asarray(index).reshape(-1)
    assert flat_index[4] == -1
    want = np.zeros(flat_index.shape)
    rows = flat_index >= 0
    want[rows] = np.log(p[rows, flat_index[rows]])
    np.testing.assert_allclose(got.reshape(-1), want, rtol=1e-5, atol=1e-6)
    assert got.reshape(-1)[4] == 0.0  # the empty row: log-prob 0, not -inf
    # Without a mask: log_softmax at the index.
    lowest = np.argmin(logits, -1)
    want_plain = np.log(np.take_along_axis(_np_masked_softmax(logits, True), lowest[..., None], -1))
    np.testing.assert_allclose(log_prob(logits, lowest), want_plain[..., 0], rtol=1e-5)


def test_selection_log_prob_gradient_and_out_of_range_index():
    logits = _logits(T, S)
    index = np.asarray([0, S, -1, 3, S - 1], np.int32)
    got = np.asarray(log_prob(logits, index))
    assert np.isnan(got[[1, 2]]).all() and np.isfinite(got[[0, 3, 4]]).all()
    valid = np.asarray([0, 6, 2, 3, 1], np.int32)
    grad = jax.grad(lambda x: jnp.sum(log_prob(x, valid)))(logits)
    p = _np_masked_softmax(logits, np.ones(S, bool))
    np.testing.assert_allclose(grad, _one_hot(valid, S) - p, rtol=1e-5, atol=1e-6)


def test_selection_entropy_matches_reference():
    logits, mask = _logits(T, S, spread=1.0), _mask(T, S, empty_row=0)
    got = entropy(logits, mask)
    p = _np_masked_softmax(logits, mask)
    want = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), -1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got[0] == 0.0 and np.all(np.asarray(got[1:]) > 0.05)
    np.testing.assert_allclose(entropy(np.zeros((T, S), np.float32))[0], np.log(S), rtol=1e-6)


def test_reinforce_estimate_matches_exact_gradient_of_expected_reward():
    theta = np.asarray([0.5, -1.0, 1.0, 0.0], np.float32)
    reward = np.asarray([1.0, -0.5, 2.0, 0.3], np.float32)
    p = _np_masked_softmax(theta, True)
    exact = p * (reward - p @ reward)  # ∇_θ Σ_i softmax(θ)_i r_i

    n = 20000
    index = sample_index(_key(0), np.broadcast_to(theta, (n, 4)))

    @jax.jit
    def per_sample_grads(theta, index):
        def surrogate(theta, i):
            return hard.selection_log_prob(theta, i) * jnp.asarray(reward)[i]

        return jax.vmap(jax.grad(surrogate), in_axes=(None, 0))(theta, index)

    grads = np.asarray(per_sample_grads(theta, index), np.float64)
    estimate = grads.mean(0)
    bound = 5.0 * grads.std(0) / np.sqrt(n)
    # Meaningful only if a sign flip (estimate ≈ -exact) would leave the bound.
    assert np.all(2 * np.abs(exact) > 3 * bound), (exact, bound)
    assert np.all(np.abs(estimate - exact) <= bound), (estimate, exact, bound)


# -------------------------------------------------------------------- fully masked rows


FUNCTIONS = {
    "argmax": lambda x, m: hard.argmax_weights(x, m),
    "sample": lambda x, m: hard.sample_weights(_key(0), x, m),
    "straight_through": lambda x, m: hard.straight_through_weights(x, m),
    "straight_through_sampled": lambda x, m: hard.straight_through_weights(x, m, key=_key(1)),
    "gumbel": lambda x, m: hard.gumbel_softmax_weights(_key(2), x, 0.3, m),
    "gumbel_hard": lambda x, m: hard.gumbel_softmax_weights(_key(3), x, 0.3, m, hard=True),
    "log_prob": lambda x, m: hard.selection_log_prob(x, jnp.zeros(x.shape[:-1], jnp.int32), m),
    "entropy": lambda x, m: hard.selection_entropy(x, m),
}


def test_fully_masked_rows_give_zero_values_and_zero_finite_gradients():
    logits, mask = _logits(T, S), _mask(T, S, empty_row=2)

    @jax.jit
    def values_and_grads(x):
        results = {}
        for name, fn in FUNCTIONS.items():

            def loss(x, fn=fn):
                out = fn(x, mask)
                weights = jnp.arange(1, out.size + 1, dtype=out.dtype).reshape(out.shape)
                return jnp.sum(out * weights)

            results[name] = fn(x, mask), jax.grad(loss)(x)
        return results

    for name, (out, grad) in values_and_grads(logits).items():
        np.testing.assert_array_equal(out[2], 0.0, err_msg=name)
        assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad)), name
        np.testing.assert_array_equal(grad[2], 0.0, err_msg=name)
        assert np.abs(np.asarray(grad)).max() > 0 or name in ("argmax", "sample"), name


def test_fully_masked_rows_in_hard_attention_give_zero_output_and_gradients():
    q, k, v = _logits(T, H, seed=1), _logits(S, H, seed=2), _logits(S, HV, seed=3)
    mask = _mask(T, S, empty_row=3)

    @jax.jit
    def outputs_and_grads(q, k, v):
        results = {}
        for estimator in (None, *hard.ESTIMATORS):

            def loss(q, k, v, estimator=estimator):
                out, _ = hard.hard_attention(q, k, v, key=_key(0), mask=mask, estimator=estimator)
                return jnp.sum(out**2), out

            results[str(estimator)] = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(q, k, v)
        return results

    for estimator, (grads, out) in outputs_and_grads(q, k, v).items():
        np.testing.assert_array_equal(out[3], 0.0, err_msg=estimator)
        assert all(np.all(np.isfinite(g)) for g in grads), estimator
        np.testing.assert_array_equal(grads[0][3], 0.0, err_msg=estimator)


# ------------------------------------------------------------------------- hard_attention


def test_hard_attention_argmax_selects_the_best_scoring_value():
    q, k, v = _logits(T, H, seed=1), _logits(S, H, seed=2), _logits(S, HV, seed=3)
    out, weights = hard_attention(q, k, v)
    best = np.argmax(np.asarray(q, np.float64) @ np.asarray(k, np.float64).T, -1)
    np.testing.assert_array_equal(out, np.asarray(v)[best])
    np.testing.assert_array_equal(weights, _one_hot(best, S))
    # The default scale 1/sqrt(H) is covered by the comparison with soft attention below.
    key = _key(0)
    _, scaled = hard_attention(q, k, v, key=key, estimator="gumbel_relaxed", scale=0.01)
    g = np.asarray(jax.random.gumbel(key, (T, S)))
    want = _np_masked_softmax(np.asarray(q, np.float64) @ k.T * 0.01 + g, True)
    np.testing.assert_allclose(scaled, want, rtol=1e-5, atol=1e-6)


def test_hard_attention_straight_through_has_soft_attention_gradient_for_q_and_k():
    q, k, v = _logits(T, H, seed=1), _logits(S, H, seed=2), _logits(S, HV, seed=3)
    mask = _mask(T, S)
    cotangent = _logits(T, HV, seed=4)

    def hard_out(q, k):
        return hard.hard_attention(q, k, v, mask=mask, estimator="straight_through_argmax")[0]

    def soft_out(q, k):
        return attention(q, k, v, mask=mask)[0]

    @jax.jit
    def pullbacks(q, k):
        return jax.vjp(hard_out, q, k)[1](cotangent), jax.vjp(soft_out, q, k)[1](cotangent)

    got, want = pullbacks(q, k)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    best = _np_masked_argmax(np.asarray(q) @ np.asarray(k).T, mask)
    np.testing.assert_array_equal(jax.jit(hard_out)(q, k), np.asarray(v)[best])


def test_low_precision_logits_give_float32_weights():
    logits = _logits(T, S).astype(jnp.bfloat16)
    assert straight_through(logits).dtype == jnp.float32
    assert entropy(logits).dtype == jnp.float32
    assert gumbel_softmax(_key(0), logits, 1.0).dtype == jnp.float32
    out, weights = hard_attention(
        _logits(T, H).astype(jnp.bfloat16),
        _logits(S, H).astype(jnp.bfloat16),
        _logits(S, HV).astype(jnp.bfloat16),
    )
    assert out.dtype == jnp.bfloat16 and weights.dtype == jnp.float32


# ---------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors():
    logits = _logits(T, S)
    key = _key(0)
    with pytest.raises(TypeError, match=r"mask must be boolean .* got dtype float32"):
        hard.argmax_weights(logits, np.ones((T, S), np.float32))
    with pytest.raises(
        ValueError, match=r"mask must broadcast to \[\.\.\., S\] = \[5, 7\].*\(3,\)"
    ):
        hard.sample_index(key, logits, np.ones((3,), bool))
    with pytest.raises(TypeError, match="logits must be a floating-point array, got dtype int32"):
        hard.straight_through_weights(np.ones((T, S), np.int32))
    with pytest.raises(ValueError, match=r"logits must have shape \[\.\.\., S\].*got shape \(\)"):
        hard.selection_entropy(np.float32(1.0))
    with pytest.raises(
        ValueError, match=r"index must have the leading shape.*\[5\], got shape \(7,\)"
    ):
        hard.selection_log_prob(logits, np.zeros((S,), np.int32))
    with pytest.raises(TypeError, match="index must be an integer array, got dtype float32"):
        hard.selection_log_prob(logits, np.zeros((T,), np.float32))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=rf"temperature must be > 0, got {bad!r}"):
            hard.gumbel_softmax_weights(key, logits, bad)


def test_hard_attention_bad_arguments():
    q, k, v = _logits(T, H), _logits(S, H), _logits(S, HV)
    with pytest.raises(
        ValueError, match=r"unknown estimator 'topk'.*'straight_through_argmax', 'straight_"
    ):
        hard.hard_attention(q, k, v, estimator="topk")
    sampling = [name for name in hard.ESTIMATORS if hard.needs_key(name)]
    assert sampling == [name for name in hard.ESTIMATORS if name != "straight_through_argmax"]
    for estimator in sampling:
        with pytest.raises(ValueError, match=rf"estimator='{estimator}' .* needs a key"):
            hard.hard_attention(q, k, v, estimator=estimator)
    with pytest.raises(
        ValueError, match=r"k must have shape \[S, H\] = \[\?, 3\], got shape \(7, 4\)"
    ):
        hard.hard_attention(q, _logits(S, 4), v)
    with pytest.raises(
        ValueError, match=r"v must have shape \[S, Hv\] = \[7, \?\], got shape \(6, 2\)"
    ):
        hard.hard_attention(q, k, _logits(6, HV))
    with pytest.raises(ValueError, match=r"mask must broadcast to \[T, S\] = \[5, 7\]"):
        hard.hard_attention(q, k, v, mask=np.ones((S, T), bool))
    with pytest.raises(TypeError, match="mask must be boolean"):
        hard.hard_attention(q, k, v, mask=np.ones((T, S), np.int32))
    with pytest.raises(ValueError, match="temperature must be > 0, got -0.5"):
        hard.hard_attention(q, k, v, estimator="gumbel_relaxed", key=_key(0), temperature=-0.5)
