"""Tests for attn.kernels.hard_training: the Gumbel temperature schedule, the REINFORCE loss with
its baseline and entropy bonus, and the gradient variance of the estimators.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn.kernels import hard, hard_training

T = 5
B, N = 2, 4


def _key(seed: int) -> jax.Array:
    return jax.random.key(seed, impl="rbg")


def _logits(*shape: int, seed: int = 0, spread: float = 2.0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=shape) * spread).astype(np.float32)


def test_gumbel_temperature_follows_the_annealing_schedule():
    steps = np.asarray([0, 1, 50, 200, 1000, 10**6])
    got = np.asarray(
        [hard_training.gumbel_temperature(s, initial=2.0, minimum=0.5, rate=0.01) for s in steps]
    )
    want = np.maximum(0.5, 2.0 * np.exp(-0.01 * steps))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got[0] == 2.0 and got[-1] == 0.5 and np.all(np.diff(got) <= 0)
    traced = jax.jit(
        lambda s: hard_training.gumbel_temperature(s, initial=2.0, minimum=0.5, rate=0.01)
    )
    np.testing.assert_allclose(jax.vmap(traced)(steps), want, rtol=1e-6)
    with pytest.raises(ValueError, match="initial must be > 0, got 0.0"):
        hard_training.gumbel_temperature(0, initial=0.0)
    with pytest.raises(ValueError, match=r"minimum must be in \(0, initial=1.0\], got 2.0"):
        hard_training.gumbel_temperature(0, minimum=2.0)
    with pytest.raises(ValueError, match="rate must be >= 0, got -1.0"):
        hard_training.gumbel_temperature(0, rate=-1.0)
    with pytest.raises(ValueError, match=r"step must be a scalar, got shape \(2,\)"):
        hard_training.gumbel_temperature(np.zeros(2))


def test_reinforce_loss_value_gradient_and_baseline_update():
    log_prob = _logits(B, N, T, seed=3) - 3.0
    reward = np.asarray([1.5, -0.5], np.float32)  # one reward per example: [B]
    entropy_values = np.abs(_logits(B, N, T, seed=4))
    baseline, decay, weight = 0.25, 0.8, 0.1

    def loss(log_prob, reward, entropy_values):
        return hard_training.reinforce_loss(
            log_prob, reward, baseline, decay=decay, entropy=entropy_values, entropy_weight=weight
        )

    (value, new_baseline), pullback = jax.vjp(loss, log_prob, reward, entropy_values)
    advantage = (reward - baseline)[:, None, None]
    want = -np.mean(advantage * log_prob) - weight * np.mean(entropy_values)
    np.testing.assert_allclose(value, want, rtol=1e-5)
    np.testing.assert_allclose(new_baseline, decay * baseline + (1 - decay) * reward.mean())
    d_log_prob, d_reward, d_entropy = pullback((jnp.float32(1.0), jnp.float32(0.0)))
    size = log_prob.size
    np.testing.assert_allclose(d_log_prob, -np.broadcast_to(advantage, log_prob.shape) / size)
    np.testing.assert_array_equal(d_reward, 0.0)  # the reward is a constant of the surrogate
    np.testing.assert_allclose(d_entropy, np.full(log_prob.shape, -weight / size), rtol=1e-6)
    # A per-selection reward [B, N, T] works too, and the baseline leaves the expectation alone.
    per_selection = np.broadcast_to(reward[:, None, None], log_prob.shape)
    same, _ = hard_training.reinforce_loss(log_prob, per_selection, baseline)
    np.testing.assert_allclose(same, -np.mean(advantage * log_prob), rtol=1e-5)
    np.testing.assert_allclose(
        hard_training.update_baseline(0.0, per_selection, 0.5), 0.5 * reward.mean(), rtol=1e-6
    )


def test_reinforce_loss_bad_inputs():
    log_prob = _logits(B, N, T)
    with pytest.raises(ValueError, match=r"reward must have a prefix of the shape of log_prob"):
        hard_training.reinforce_loss(log_prob, np.zeros(N, np.float32), 0.0)
    with pytest.raises(TypeError, match="reward must be a floating-point array, got dtype int32"):
        hard_training.reinforce_loss(log_prob, np.zeros(B, np.int32), 0.0)
    with pytest.raises(ValueError, match=r"entropy_weight=0.1 needs the entropy"):
        hard_training.reinforce_loss(log_prob, np.zeros(B, np.float32), 0.0, entropy_weight=0.1)
    with pytest.raises(ValueError, match=r"entropy must have the shape of log_prob \[2, 4, 5\]"):
        hard_training.reinforce_loss(
            log_prob, np.zeros(B, np.float32), 0.0, entropy=np.zeros(B, np.float32)
        )
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\), got 1.0"):
        hard_training.update_baseline(0.0, np.zeros(B, np.float32), 1.0)
    with pytest.raises(ValueError, match=r"baseline must be a scalar, got shape \(2,\)"):
        hard_training.update_baseline(np.zeros(2), np.zeros(B, np.float32))


def test_gradient_variance_measures_the_variance_over_draws():
    scales = {
        "straight_through_argmax": 0.25,
        "straight_through_sample": 0.5,
        "gumbel_relaxed": 1.0,
        "gumbel_straight_through": 2.0,
        "reinforce": 3.0,
    }

    def gradient(estimator, key):
        a_key, b_key = jax.random.split(key)
        return {
            "a": scales[estimator] * jax.random.normal(a_key, (40,)),
            "b": (scales[estimator] * jax.random.normal(b_key, (3, 2)), jnp.ones(4)),
        }

    got = hard_training.gradient_variance(gradient, _key(0), num_samples=400)
    assert list(got) == list(hard.ESTIMATORS)
    # Entries "a" and "b" have variance scale², the constant entries 0: 46 of 50 entries vary.
    for estimator, scale in scales.items():
        np.testing.assert_allclose(got[estimator], scale**2 * 46 / 50, rtol=0.1)
    # The same keys for every estimator: the draws differ only by their scale, so the variances
    # are in the ratio of the squared scales up to rounding (independent draws would miss it).
    np.testing.assert_allclose(
        got["gumbel_relaxed"] / got["straight_through_sample"], 4.0, rtol=1e-5
    )


def test_gradient_variance_bad_arguments():
    def gradient(estimator, key):
        return {"w": jax.random.normal(key, (3,))}

    with pytest.raises(
        ValueError, match=r"unknown estimator 'argmax'; expected one of \['straight_through_argmax'"
    ):
        hard_training.gradient_variance(gradient, _key(0), estimators=["reinforce", "argmax"])
    with pytest.raises(TypeError, match="estimators must be a sequence of names, got 'reinforce'"):
        hard_training.gradient_variance(gradient, _key(0), estimators="reinforce")
    with pytest.raises(ValueError, match="num_samples must be an integer >= 2, got 1"):
        hard_training.gradient_variance(gradient, _key(0), num_samples=1)
    with pytest.raises(TypeError, match=r"gradient\('gumbel_relaxed', key\) must be"):
        hard_training.gradient_variance(
            lambda e, key: jnp.zeros(3, jnp.int32), _key(0), estimators=["gumbel_relaxed"]
        )
    with pytest.raises(ValueError, match=r"gradient\('reinforce', key\) returned no arrays"):
        hard_training.gradient_variance(lambda e, key: {}, _key(0), estimators=["reinforce"])
