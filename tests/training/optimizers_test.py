"""Learning-rate schedules at known steps and the optimizer factory."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from attn.training.optimizers import (
    inverse_sqrt_schedule,
    make_optimizer,
    make_schedule,
    warmup_cosine_schedule,
)


def test_inverse_sqrt_matches_vaswani():
    D, w = 512, 4000
    lr = inverse_sqrt_schedule(D, w)
    for s in (1, 100, 3999, 4000, 4001, 10_000, 100_000):
        expected = D**-0.5 * min(s**-0.5, s * w**-1.5)
        np.testing.assert_allclose(lr(s - 1), expected, rtol=1e-6)
    # The peak is at s = w: (D w)^-0.5.
    np.testing.assert_allclose(lr(w - 1), (D * w) ** -0.5, rtol=1e-6)
    assert lr(w - 2) < lr(w - 1) > lr(w)


def test_warmup_cosine_at_known_steps():
    lr = warmup_cosine_schedule(1e-3, 10, 110, end_factor=0.1)
    np.testing.assert_allclose(lr(0), 0.0)
    np.testing.assert_allclose(lr(5), 0.5e-3, rtol=1e-6)
    np.testing.assert_allclose(lr(10), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(lr(60), 1e-4 + 0.5 * (1e-3 - 1e-4), rtol=1e-5)  # halfway
    np.testing.assert_allclose(lr(110), 1e-4, rtol=1e-5)


def config(**changes):
    base = dict(
        name="adamw",
        learning_rate=1e-2,
        schedule="constant",
        warmup_steps=0,
        b1=0.9,
        b2=0.98,
        eps=1e-9,
        weight_decay=0.0,
        grad_clip_norm=0.0,
        accumulate_steps=1,
    )
    return {**base, **changes}


def test_clipping_bounds_the_update():
    params = {"w": jnp.ones((3, 2))}
    grads = {"w": jnp.full((3, 2), 100.0)}
    sgd_like = config(name="adam", grad_clip_norm=1.0)
    tx = make_optimizer(sgd_like, total_steps=10, model_dim=4)
    chain = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2, b1=0.9, b2=0.98, eps=1e-9))
    got, _ = tx.update(grads, tx.init(params), params)
    expected, _ = chain.update(grads, chain.init(params), params)
    np.testing.assert_allclose(got["w"], expected["w"])


def test_weight_decay_skips_vectors():
    params = {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(2)}
    zero = jax.tree.map(jnp.zeros_like, params)
    tx = make_optimizer(config(weight_decay=0.5), total_steps=10, model_dim=4)
    updates, _ = tx.update(zero, tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], -1e-2 * 0.5 * np.ones((2, 2)), rtol=1e-6)
    np.testing.assert_allclose(updates["bias"], 0.0)


def test_accumulation_averages_micro_batches():
    params = {"w": jnp.zeros(3)}
    tx = make_optimizer(config(name="adam", accumulate_steps=2), total_steps=4, model_dim=4)
    state = tx.init(params)
    g1, g2 = {"w": jnp.array([1.0, 2.0, 3.0])}, {"w": jnp.array([3.0, 2.0, -5.0])}
    first, state = tx.update(g1, state, params)
    np.testing.assert_allclose(first["w"], 0.0)  # no update after the first micro-batch
    second, state = tx.update(g2, state, params)
    plain = make_optimizer(config(name="adam"), total_steps=2, model_dim=4)
    mean = {"w": (g1["w"] + g2["w"]) / 2}
    expected, _ = plain.update(mean, plain.init(params), params)
    np.testing.assert_allclose(second["w"], expected["w"], rtol=1e-6)


def test_bad_config():
    with pytest.raises(ValueError, match=r"config.optimizer.learning_rate must be > 0"):
        make_optimizer(config(learning_rate=-1.0), total_steps=10, model_dim=4)
    with pytest.raises(ValueError, match="schedule"):
        make_schedule(config(schedule="linear"), total_steps=10, model_dim=4)
    with pytest.raises(ValueError, match="accumulate_steps"):
        make_optimizer(config(accumulate_steps=0), total_steps=10, model_dim=4)
    with pytest.raises(ValueError, match="warmup_steps"):
        inverse_sqrt_schedule(512, 0)
