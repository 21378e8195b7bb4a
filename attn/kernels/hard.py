"""Hard attention: each query attends to exactly one position.

    i* = argmax_j s_j   or   i* ~ Categorical(softmax(s)),   weights = one_hot(i*),   out = v[i*]

Selecting one position is not differentiable, so training uses one of the gradient estimators of
`ESTIMATORS`, the one vocabulary every hard-attention layer shares: straight-through with the
argmax or a sample (Bengio et al. 2013), the Gumbel-softmax relaxation and its straight-through
form (Jang et al. 2017; Maddison et al. 2017) and the score-function estimator REINFORCE
(Williams 1992), as in the stochastic hard attention of "Show, Attend and Tell" (Xu et al. 2015).
At evaluation every estimator selects the argmax.

Every function works on logits `[..., S]` with any leading shape ([T, S], [B, N, T, S], ...) and an
optional boolean `mask` broadcastable to the logits, True = may be selected. Masked positions are
never selected. A row with no selectable position selects nothing: its weights are all zero, its
sampled index is -1, its log-probability and entropy are 0, and all its gradients are zero and
finite (the fully-masked-row rule of the soft kernel, `attn.kernels.attention`). The softmax runs in
float32 (float64 for float64 logits); randomness comes only from an explicit `key`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from attn.kernels import scores as scores_lib
from attn.kernels.attention import mask_value, masked_softmax
from attn.kernels.validation import check_broadcastable, check_float, check_rank
from attn.typing import Array, ArrayLike, PRNGKey

NO_SELECTION = -1
"""The index reported for a row with no selectable position (`jax.nn.one_hot` maps it to zeros)."""


def _letters(logits: Array) -> tuple[str, ...]:
    return ("S",) if logits.ndim == 1 else ("...", "S")


def _prepare(fn: str, logits: ArrayLike, mask: ArrayLike | None) -> tuple[Array, Array | None]:
    """Checks `logits[..., S]` and `mask`; returns the logits in the softmax dtype and the mask."""
    check_float(fn, "logits", logits)
    logits = jnp.asarray(logits)
    if logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(
            f"{fn}: logits must have shape [..., S] with S >= 1, got shape {logits.shape}"
        )
    logits = logits.astype(scores_lib.accumulation_dtype(logits))
    if mask is None:
        return logits, None
    dtype = jnp.result_type(mask)
    if dtype != jnp.bool_:
        raise TypeError(
            f"{fn}: mask must be boolean (True = may be selected), got dtype {dtype}; "
            "add float biases to the logits instead"
        )
    check_broadcastable(fn, "mask", mask, _letters(logits), logits.shape, boolean=True)
    return logits, jnp.asarray(mask)


def _any_selectable(logits: Array, mask: Array | None) -> Array:
    """bool[...]: whether each row has at least one selectable position."""
    if mask is None:
        return jnp.ones(logits.shape[:-1], jnp.bool_)
    return jnp.any(jnp.broadcast_to(mask, logits.shape), axis=-1)


def _selection_scores(logits: Array, mask: Array | None) -> Array:
    """Scores for `argmax` only: selectable logits clamped to `mask_value`, masked ones below.

    Masked entries get the dtype's most negative finite value, strictly below every selectable
    entry (even one whose logit is -inf), so argmax can never land on them while a row has a
    selectable position.
    """
    floor = mask_value(logits.dtype)
    clamped = jnp.maximum(logits, floor)
    if mask is None:
        return clamped
    return jnp.where(mask, clamped, jnp.finfo(logits.dtype).min)


def _log_softmax(logits: Array, mask: Array | None) -> Array:
    """log_softmax over the selectable entries; masked entries get a finite, very negative value."""
    floor = mask_value(logits.dtype)
    logits = jnp.maximum(logits, floor)
    if mask is not None:
        logits = jnp.where(mask, logits, floor)
    return jax.nn.log_softmax(logits, axis=-1)


def _one_hot(index: Array, logits: Array) -> Array:
    """one_hot(index) in the dtype of `logits`; index -1 gives an all-zero row."""
    return jax.nn.one_hot(index, logits.shape[-1], dtype=logits.dtype)


def _straight_through(hard: Array, soft: Array) -> Array:
    """Value `hard`, gradient that of `soft`.

    Written as hard + (soft - stop_gradient(soft)) rather than hard + soft - stop_gradient(soft):
    the bracket is exactly 0, so the value is exactly `hard`, whereas (1 + p) - p is not always 1
    in floating point.
    """
    return hard + (soft - jax.lax.stop_gradient(soft))


def argmax_index(logits: ArrayLike, mask: ArrayLike | None = None) -> Array:
    """The most likely selectable position, i* = argmax_{j : mask_j} s_j (first one on ties).

    Args:
      logits: [..., S] float scores.
      mask: bool, broadcastable to `logits`, True = may be selected.

    Returns:
      int32[...] indices in [0, S); -1 (`NO_SELECTION`) for rows with no selectable position.
    """
    logits, mask = _prepare("argmax_index", logits, mask)
    index = jnp.argmax(_selection_scores(logits, mask), axis=-1)
    return jnp.where(_any_selectable(logits, mask), index, NO_SELECTION).astype(jnp.int32)


def argmax_weights(logits: ArrayLike, mask: ArrayLike | None = None) -> Array:
    """Deterministic hard attention weights, w = one_hot(argmax_{j : mask_j} s_j).

    Carries no gradient (`stop_gradient`); use `straight_through_weights` to train through it.

    Args:
      logits: [..., S] float scores.
      mask: bool, broadcastable to `logits`, True = may be selected.

    Returns:
      [..., S] one-hot weights, float32 (float64 for float64 logits); all zero in rows with no
      selectable position.
    """
    logits = _prepare("argmax_weights", logits, mask)[0]
    return jax.lax.stop_gradient(_one_hot(argmax_index(logits, mask), logits))


def sample_index(key: PRNGKey, logits: ArrayLike, mask: ArrayLike | None = None) -> Array:
    """A position drawn from the masked softmax, i ~ Categorical(softmax(s) over {j : mask_j}).

    Uses the Gumbel-max trick, i = argmax_j (s_j + g_j) with g_j ~ Gumbel(0, 1) drawn from `key`
    with the shape of `logits`, so `gumbel_softmax_weights(key, ..., hard=True)` selects the same
    positions for the same key. Every row is sampled independently.

    Args:
      key: a `jax.random` key.
      logits: [..., S] float scores.
      mask: bool, broadcastable to `logits`, True = may be selected.

    Returns:
      int32[...] indices in [0, S); -1 (`NO_SELECTION`) for rows with no selectable position.
    """
    logits, mask = _prepare("sample_index", logits, mask)
    gumbel = jax.random.gumbel(key, logits.shape, logits.dtype)
    floor = mask_value(logits.dtype)
    perturbed = jnp.maximum(logits, floor) + gumbel
    if mask is not None:
        perturbed = jnp.where(mask, perturbed, jnp.finfo(logits.dtype).min)
    index = jnp.argmax(perturbed, axis=-1)
    return jnp.where(_any_selectable(logits, mask), index, NO_SELECTION).astype(jnp.int32)


def sample_weights(key: PRNGKey, logits: ArrayLike, mask: ArrayLike | None = None) -> Array:
    """Stochastic hard attention weights, w = one_hot(i) with i ~ Categorical(softmax(s), masked).

    Carries no gradient; train through it with `straight_through_weights(..., key=key)`, the
    Gumbel-softmax relaxation or REINFORCE (`selection_log_prob`).

    Args:
      key: a `jax.random` key.
      logits: [..., S] float scores.
      mask: bool, broadcastable to `logits`, True = may be selected.

    Returns:
      [..., S] one-hot weights, float32 (float64 for float64 logits); all zero in rows with no
      selectable position.
    """
    logits = _prepare("sample_weights", logits, mask)[0]
    return jax.lax.stop_gradient(_one_hot(sample_index(key, logits, mask), logits))


def straight_through_weights(
    logits: ArrayLike, mask: ArrayLike | None = None, *, key: PRNGKey | None = None
) -> Array:
    """Straight-through hard attention (Bengio et al. 2013).

        w = one_hot(i*) + p - stop_gradient(p),   p = softmax(s) over {j : mask_j}

    The value is exactly the one-hot of i* (the argmax, or a sample from p when `key` is given);
    the gradient is that of the softmax p, as if the forward pass had been soft.

    Args:
      logits: [..., S] float scores.
      mask: bool, broadcastable to `logits`, True = may be selected.
      key: a `jax.random` key to sample i* from p; None selects the argmax.

    Returns:
      [..., S] weights, float32 (float64 for float64 logits); all zero, with zero gradient, in
      rows with no selectable position.
    """
    logits, mask = _prepare("straight_through_weights", logits, mask)
    if key is None:
        hard = argmax_weights(logits, mask)
    else:
        hard = sample_weights(key, logits, mask)
    return _straight_through(hard, masked_softmax(logits, mask))


def gumbel_softmax_weights(
    key: PRNGKey,
    logits: ArrayLike,
    temperature: float | ArrayLike,
    mask: ArrayLike | None = None,
    *,
    hard: bool = False,
) -> Array:
    """Gumbel-softmax (concrete) relaxation of a sample (Jang et al. 2017; Maddison et al. 2017).

        y = softmax((s + g) / τ) over {j : mask_j},   g_j ~ Gumbel(0, 1)

    As τ → 0, y approaches the one-hot of the Gumbel-max sample argmax_j (s_j + g_j), which is
    `sample_index(key, logits, mask)` for the same key. With `hard=True` the value is exactly that
    one-hot and the gradient is that of y (straight-through Gumbel-softmax).

    Args:
      key: a `jax.random` key.
      logits: [..., S] float scores.
      temperature: τ > 0, a number or an array broadcastable to `logits` (may be traced; only a
        Python or NumPy number is checked).
      mask: bool, broadcastable to `logits`, True = may be selected.
      hard: return the one-hot sample with the relaxation's gradient.

    Returns:
      [..., S] weights summing to 1 over the selectable positions, float32 (float64 for float64
      logits); all zero, with zero gradient, in rows with no selectable position.
    """
    fn = "gumbel_softmax_weights"
    logits, mask = _prepare(fn, logits, mask)
    if isinstance(temperature, (int, float, np.integer, np.floating)) and not temperature > 0:
        raise ValueError(f"{fn}: temperature must be > 0, got {temperature!r}")
    gumbel = jax.random.gumbel(key, logits.shape, logits.dtype)
    floor = mask_value(logits.dtype)
    perturbed = (jnp.maximum(logits, floor) + gumbel) / jnp.asarray(temperature, logits.dtype)
    soft = masked_softmax(perturbed, mask)  # clamps a perturbed logit that overflowed to -inf
    if not hard:
        return soft
    return _straight_through(sample_weights(key, logits, mask), soft)


def _check_index(fn: str, index: ArrayLike, logits: Array) -> Array:
    dtype = jnp.result_type(index)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"{fn}: index must be an integer array, got dtype {dtype}")
    leading = logits.shape[:-1]
    if tuple(jnp.shape(index)) != leading:
        letters = "[...]" if leading else "[]"
        raise ValueError(
            f"{fn}: index must have the leading shape of logits[..., S] = {list(logits.shape)}, "
            f"i.e. {letters} = {list(leading)}, got shape {tuple(jnp.shape(index))}"
        )
    return jnp.asarray(index)


def selection_log_prob(logits: ArrayLike, index: ArrayLike, mask: ArrayLike | None = None) -> Array:
    """log p(i) of a selected position under the masked softmax, for REINFORCE.

        log p(i) = s_i - log Σ_{j : mask_j} exp(s_j)

    The score-function estimator (Williams 1992) of ∇ E_i[R(i)] is R(i) ∇ log p(i) with
    i ~ p, as in the stochastic hard attention of Xu et al. (2015); differentiate
    `reward * selection_log_prob(logits, sample_index(key, logits, mask), mask)`.

    Rows with no selectable position have log-probability 0 (they select nothing, with certainty)
    whatever the index, and zero gradient. An index outside [0, S) in a row with a selectable
    position gives NaN; an index at a masked position gives a finite, very negative value.

    Args:
      logits: [..., S] float scores.
      index: int[...] selected positions, e.g. from `sample_index`.
      mask: bool, broadcastable to `logits`, True = may be selected.

    Returns:
      [...] log-probabilities, float32 (float64 for float64 logits).
    """
    fn = "selection_log_prob"
    logits, mask = _prepare(fn, logits, mask)
    index = _check_index(fn, index, logits)
    S = logits.shape[-1]
    log_probs = _log_softmax(logits, mask)
    in_range = (index >= 0) & (index < S)
    safe = jnp.clip(index, 0, S - 1)[..., None]  # [...] -> [..., 1]
    picked = jnp.take_along_axis(log_probs, safe, axis=-1)[..., 0]
    picked = jnp.where(in_range, picked, jnp.nan)
    return jnp.where(_any_selectable(logits, mask), picked, 0.0)


def selection_entropy(logits: ArrayLike, mask: ArrayLike | None = None) -> Array:
    """Entropy of the selection distribution, H = -Σ_{j : mask_j} p_j log p_j, p = softmax(s).

    The entropy bonus that keeps stochastic hard attention exploring (Xu et al. 2015). Rows with
    no selectable position have entropy 0 and zero gradient.

    Args:
      logits: [..., S] float scores.
      mask: bool, broadcastable to `logits`, True = may be selected.

    Returns:
      [...] entropies in nats, float32 (float64 for float64 logits).
    """
    logits, mask = _prepare("selection_entropy", logits, mask)
    probs = masked_softmax(logits, mask)
    terms = probs * _log_softmax(logits, mask)
    if mask is not None:
        terms = jnp.where(mask, terms, 0.0)
    return 0.0 - jnp.sum(terms, axis=-1)  # 0.0 - ...: +0, not -0, in empty rows


WeightFn = Callable[[Array, Array | None, PRNGKey | None, float | ArrayLike], Array]
"""weights(logits [..., S], mask or None, key or None, temperature) -> weights [..., S]."""


class Estimator(NamedTuple):
    """A way to train a one-position selection: its training-time weights and whether it draws.

    weights: the `WeightFn` used in training (every estimator selects the argmax at evaluation,
      `argmax_weights`).
    needs_key: whether `weights` draws a random position and therefore needs a key.
    """

    weights: WeightFn
    needs_key: bool


ESTIMATORS: dict[str, Estimator] = {
    # one_hot(argmax), gradient of softmax(s) (Bengio et al. 2013).
    "straight_through_argmax": Estimator(
        lambda logits, mask, key, temperature: straight_through_weights(logits, mask), False
    ),
    # one_hot(i), i ~ softmax(s), gradient of softmax(s) (Bengio et al. 2013).
    "straight_through_sample": Estimator(
        lambda logits, mask, key, temperature: straight_through_weights(logits, mask, key=key),
        True,
    ),
    # softmax((s + g) / τ), not one-hot (Jang et al. 2017; Maddison et al. 2017).
    "gumbel_relaxed": Estimator(
        lambda logits, mask, key, temperature: gumbel_softmax_weights(
            key, logits, temperature, mask
        ),
        True,
    ),
    # one_hot(argmax(s + g)), gradient of softmax((s + g) / τ) (Jang et al. 2017).
    "gumbel_straight_through": Estimator(
        lambda logits, mask, key, temperature: gumbel_softmax_weights(
            key, logits, temperature, mask, hard=True
        ),
        True,
    ),
    # one_hot(i), i ~ softmax(s), no gradient: the scores learn from log p(i) (Williams 1992).
    "reinforce": Estimator(
        lambda logits, mask, key, temperature: sample_weights(key, logits, mask), True
    ),
}
"""Estimator name -> `Estimator`: the one vocabulary of hard attention, used by `hard_attention`,
`attn.layers.HardMultiHeadAttention` and the RNN attention layers alike. The sampling estimators
draw i with the Gumbel-max trick from the key, so for one key "straight_through_sample",
"gumbel_straight_through" and "reinforce" select the same position."""


def check_estimator(owner: str, name: str, estimator: Any) -> Estimator:
    """The `Estimator` called `estimator`; a ValueError naming `name` and listing the names
    otherwise."""
    if not isinstance(estimator, str) or estimator not in ESTIMATORS:
        raise ValueError(
            f"{owner}: unknown {name} {estimator!r}; expected one of {list(ESTIMATORS)}"
        )
    return ESTIMATORS[estimator]


def needs_key(estimator: str) -> bool:
    """Whether the estimator called `estimator` draws random positions in training."""
    return check_estimator("needs_key", "estimator", estimator).needs_key


def training_weights(
    estimator: str,
    logits: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    key: PRNGKey | None = None,
    temperature: float | ArrayLike = 1.0,
) -> Array:
    """The training-time weights of the estimator called `estimator` (see `ESTIMATORS`).

    Args:
      estimator: a name in `ESTIMATORS`.
      logits: [..., S] float scores.
      mask: bool, broadcastable to `logits`, True = may be selected.
      key: a `jax.random` key, required when `needs_key(estimator)`.
      temperature: τ > 0 of the Gumbel estimators.

    Returns:
      [..., S] weights, float32 (float64 for float64 logits).
    """
    return _keyed_estimator("training_weights", estimator, key).weights(
        logits, mask, key, temperature
    )


def _keyed_estimator(owner: str, estimator: str, key: PRNGKey | None) -> Estimator:
    """The named `Estimator`, after checking the name and that a sampling one has its key."""
    chosen = check_estimator(owner, "estimator", estimator)
    if chosen.needs_key and key is None:
        raise ValueError(
            f"{owner}: estimator={estimator!r} draws random positions and needs a key, "
            "e.g. key=jax.random.key(0)"
        )
    return chosen


def hard_attention(
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    *,
    key: PRNGKey | None = None,
    mask: ArrayLike | None = None,
    estimator: str | None = None,
    temperature: float | ArrayLike = 1.0,
    scale: float | None = None,
) -> tuple[Array, Array]:
    """Hard attention with the scaled dot score (Xu et al. 2015; Vaswani et al. 2017).

        s = q kᵀ × scale,   w_i = weights(s_i) over the keys j with mask[i, j],   out = w v

    `estimator` picks the weights and the gradient that flows through them: None (evaluation)
    gives one_hot(argmax) with no gradient to q and k; a name in `ESTIMATORS` gives that
    estimator's training-time weights ("reinforce": a one-hot sample with no gradient to q and k;
    train them with `selection_log_prob` of the selected positions). The estimators with
    `needs_key` need `key`. A query whose mask row is all False gets weights 0 and output 0.

    Args:
      q: [T, H] queries.
      k: [S, H] keys.
      v: [S, Hv] values.
      key: a `jax.random` key for the sampling estimators.
      mask: bool, broadcastable to [T, S], True = may be selected.
      estimator: None (argmax) or a name in `ESTIMATORS`.
      temperature: τ > 0 of the Gumbel estimators.
      scale: multiplier of the dot product; defaults to 1 / sqrt(H).

    Returns:
      (out[T, Hv] in the dtype of v, weights[T, S] float32 (float64 for float64 inputs)).
    """
    fn = "hard_attention"
    chosen = None if estimator is None else _keyed_estimator(fn, estimator, key)
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_float(fn, name, x)
    q, k, v = jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)
    check_rank(fn, "q", q, ("T", "H"), (None, None))
    T, H = q.shape
    check_rank(fn, "k", k, ("S", "H"), (None, H))
    S = k.shape[0]
    check_rank(fn, "v", v, ("S", "Hv"), (S, None))
    if mask is not None:
        dtype = jnp.result_type(mask)
        if dtype != jnp.bool_:
            raise TypeError(
                f"{fn}: mask must be boolean (True = may be selected), got dtype {dtype}"
            )
        check_broadcastable(fn, "mask", mask, ("T", "S"), (T, S), boolean=True)
        mask = jnp.asarray(mask)
    logits = scores_lib.scaled_dot(q, k, scale=scale)
    if chosen is None:
        weights = argmax_weights(logits, mask)
    else:
        weights = chosen.weights(logits, mask, key, temperature)
    out = jnp.einsum("TS,SH->TH", weights.astype(v.dtype), v, preferred_element_type=logits.dtype)
    return out.astype(v.dtype), weights
