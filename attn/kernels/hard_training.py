"""Training hard attention: the Gumbel temperature schedule, the REINFORCE loss with a
moving-average baseline and an entropy bonus, and the gradient variance of each estimator.

    τ(step) = max(τ_min, τ_0 exp(-r step))                              (Jang et al. 2017)
    L_REINFORCE = -mean[(R - b) log p(i)] - λ mean[H(p)],   b ← β b + (1 - β) mean(R)
                                                       (Williams 1992; Xu et al. 2015)

The estimators themselves are `attn.kernels.hard.ESTIMATORS`. `gradient_variance` measures, on
one batch and one set of parameters, how much each estimator's single-sample gradient varies from
draw to draw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from attn.kernels.hard import ESTIMATORS, check_estimator
from attn.kernels.validation import check_float
from attn.typing import Array, ArrayLike, PRNGKey


def gumbel_temperature(
    step: int | ArrayLike, *, initial: float = 1.0, minimum: float = 0.5, rate: float = 1e-3
) -> Array:
    """The annealed Gumbel-softmax temperature of Jang et al. (2017).

        τ(step) = max(τ_min, τ_0 exp(-r step))

    Args:
      step: the training step, a number or a traced scalar (the schedule works under `jax.jit`).
      initial: τ_0 > 0, the temperature at step 0.
      minimum: τ_min, with 0 < τ_min <= τ_0.
      rate: r >= 0, the decay rate per step.

    Returns:
      float32 scalar τ.
    """
    fn = "gumbel_temperature"
    if not initial > 0:
        raise ValueError(f"{fn}: initial must be > 0, got {initial!r}")
    if not 0 < minimum <= initial:
        raise ValueError(f"{fn}: minimum must be in (0, initial={initial!r}], got {minimum!r}")
    if not rate >= 0:
        raise ValueError(f"{fn}: rate must be >= 0, got {rate!r}")
    if jnp.ndim(step) != 0:
        raise ValueError(f"{fn}: step must be a scalar, got shape {jnp.shape(step)}")
    step = jnp.asarray(step, jnp.float32)
    return jnp.maximum(jnp.float32(minimum), initial * jnp.exp(-rate * step))


def update_baseline(baseline: ArrayLike, reward: ArrayLike, decay: float = 0.9) -> Array:
    """Moving-average reward baseline, b ← β b + (1 - β) mean(R) (Williams 1992).

    Args:
      baseline: scalar b, the running average of past rewards.
      reward: [...] rewards of the current batch.
      decay: β in [0, 1).

    Returns:
      float32 scalar, the new baseline (no gradient flows into it).
    """
    fn = "update_baseline"
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"{fn}: decay must be in [0, 1), got {decay!r}")
    if jnp.ndim(baseline) != 0:
        raise ValueError(f"{fn}: baseline must be a scalar, got shape {jnp.shape(baseline)}")
    check_float(fn, "reward", reward)
    mean_reward = jnp.mean(jnp.asarray(reward, jnp.float32))
    new = decay * jnp.asarray(baseline, jnp.float32) + (1.0 - decay) * mean_reward
    return jax.lax.stop_gradient(new)


def reinforce_loss(
    log_prob: ArrayLike,
    reward: ArrayLike,
    baseline: ArrayLike,
    *,
    decay: float = 0.9,
    entropy: ArrayLike | None = None,
    entropy_weight: float = 0.0,
) -> tuple[Array, Array]:
    """REINFORCE surrogate loss with a moving-average baseline and an entropy bonus.

        L = -mean[stop_gradient(R - b) log p(i)] - λ mean[H(p)],   b' = β b + (1 - β) mean(R)

    Its gradient is the score-function estimate of -∇ E_i[R(i)] (Williams 1992), with the variance
    reduced by the baseline b and exploration kept up by the entropy bonus λ H (Xu et al. 2015).
    Add it to the task loss (whose gradient trains everything after the selection); the reward is
    typically the negative per-example task loss. The baseline is the one from before this batch,
    so the estimate stays unbiased; the updated one is returned for the next step.

    Args:
      log_prob: [B, ...] log-probabilities of the selected positions (e.g. `HardSelection.log_prob`
        [B, N, T] of `HardMultiHeadAttention(estimator="reinforce")`).
      reward: [B, ...] rewards, a prefix of `log_prob`'s shape ([B] per example or the full shape
        per selection); no gradient flows through it.
      baseline: scalar b, the moving average of past rewards (start it at 0).
      decay: β in [0, 1) of the baseline update.
      entropy: [B, ...] entropies of the selection distributions, shape of `log_prob`; required
        when `entropy_weight` > 0.
      entropy_weight: λ >= 0.

    Returns:
      (loss, new_baseline): float32 scalars.
    """
    fn = "reinforce_loss"
    check_float(fn, "log_prob", log_prob)
    check_float(fn, "reward", reward)
    log_prob, reward = jnp.asarray(log_prob), jnp.asarray(reward)
    shape = log_prob.shape
    if reward.shape != shape[: reward.ndim]:
        raise ValueError(
            f"{fn}: reward must have a prefix of the shape of log_prob {list(shape)} (e.g. "
            f"[B] = {list(shape[:1])}), got shape {reward.shape}"
        )
    if not entropy_weight >= 0:
        raise ValueError(f"{fn}: entropy_weight must be >= 0, got {entropy_weight!r}")
    if entropy_weight > 0 and entropy is None:
        raise ValueError(f"{fn}: entropy_weight={entropy_weight!r} needs the entropy [B, ...]")
    if entropy is not None and jnp.shape(entropy) != shape:
        raise ValueError(
            f"{fn}: entropy must have the shape of log_prob {list(shape)}, got shape "
            f"{jnp.shape(entropy)}"
        )
    new_baseline = update_baseline(baseline, reward, decay)
    reward = reward.astype(jnp.float32).reshape(reward.shape + (1,) * (len(shape) - reward.ndim))
    advantage = jax.lax.stop_gradient(reward - jnp.asarray(baseline, jnp.float32))
    loss = -jnp.mean(advantage * log_prob.astype(jnp.float32))
    if entropy is not None and entropy_weight > 0:
        loss = loss - entropy_weight * jnp.mean(jnp.asarray(entropy, jnp.float32))
    return loss, new_baseline


def gradient_variance(
    gradient: Callable[[str, PRNGKey], Any],
    key: PRNGKey,
    *,
    estimators: Sequence[str] = tuple(ESTIMATORS),
    num_samples: int = 256,
) -> dict[str, float]:
    """Gradient variance of each estimator on one batch with fixed parameters.

        Var_e = (1 / P) Σ_p Var_k[g_e(k)_p]

    For each estimator e, `gradient(e, k)` is evaluated for `num_samples` keys k (the same keys
    for every estimator), giving single-sample gradient estimates g_e(k) with P entries in all.
    Var_e is the unbiased variance over the samples of each gradient entry, averaged over the
    entries. Only the random selection varies between samples: the caller fixes the batch and the
    parameters in `gradient`. A lower Var_e means fewer samples (or a smaller batch) for the same
    precision of the gradient; it says nothing about bias (straight-through and Gumbel-softmax
    are biased, REINFORCE is not).

    Args:
      gradient: (estimator name, key) -> pytree of float arrays, the gradient of the training loss
        of one draw; traced with `jax.vmap` over the keys, so it must be a pure JAX function of
        the key (build it with `nnx.split` / `nnx.merge` for a module).
      key: a `jax.random` key; split into the `num_samples` sample keys.
      estimators: names in `ESTIMATORS`.
      num_samples: draws per estimator, >= 2.

    Returns:
      {estimator: Var_e} as Python floats.
    """
    fn = "gradient_variance"
    if isinstance(estimators, str):
        raise TypeError(f"{fn}: estimators must be a sequence of names, got {estimators!r}")
    for estimator in estimators:
        check_estimator(fn, "estimator", estimator)
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 2:
        raise ValueError(f"{fn}: num_samples must be an integer >= 2, got {num_samples!r}")
    keys = jax.random.split(key, num_samples)
    result = {}
    for estimator in estimators:
        grads = jax.jit(jax.vmap(lambda k, e=estimator: gradient(e, k)))(keys)
        leaves = jax.tree.leaves(grads)
        if not leaves:
            raise ValueError(f"{fn}: gradient({estimator!r}, key) returned no arrays")
        total, count = 0.0, 0
        for leaf in leaves:
            check_float(fn, f"gradient({estimator!r}, key)", leaf)
            per_entry = np.var(np.asarray(leaf, np.float64).reshape(num_samples, -1), 0, ddof=1)
            total += float(per_entry.sum())
            count += per_entry.size
        result[estimator] = total / count
    return result
