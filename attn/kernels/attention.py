"""The reference attention kernel: one example, one head.

    weights = softmax(score(q, k) + bias, masked),   out = weights · v

This is the definition every other implementation in `attn.kernels` is tested against, and the
function that `multihead.dot_product_attention` lifts over heads and batch with `jax.vmap`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from attn.kernels import scores as scores_lib
from attn.kernels.validation import check_single_head
from attn.typing import Array, ArrayLike


def mask_value(dtype: jnp.dtype) -> float:
    """The finite logit that stands for "masked": 0.7 × the most negative value of `dtype`.

    Finite, so that `max` and `exp` never see -inf, and small enough in magnitude that logits
    clamped to it never overflow when a mask and a large negative bias meet.
    """
    return float(jnp.finfo(dtype).min) * 0.7


def masked_softmax(logits: Array, mask: Array | None) -> Array:
    """Softmax over the last axis where masked entries get weight exactly 0.

    Rows with no attendable entry get all-zero weights (not the uniform row a plain softmax of
    equal masked logits would give), and their gradient is zero and finite. Logits below
    `mask_value` (an additive -inf bias) are clamped to it: such keys get weight 0 next to any
    larger logit, and a row whose attendable logits are all clamped spreads evenly over them.

    Args:
      logits: [..., S] float32 or float64 logits.
      mask: bool, broadcastable to `logits`, True = attend; None = attend everywhere.

    Returns:
      [..., S] weights in the dtype of `logits`.
    """
    floor = mask_value(logits.dtype)
    logits = jnp.maximum(logits, floor)  # an additive -inf / finfo.min bias stays finite
    if mask is None:
        return jax.nn.softmax(logits, axis=-1)
    row_max = jnp.max(jnp.where(mask, logits, floor), axis=-1, keepdims=True)
    unnormalised = jnp.where(mask, jnp.exp(jnp.where(mask, logits, floor) - row_max), 0.0)
    total = jnp.sum(unnormalised, axis=-1, keepdims=True)
    return unnormalised / jnp.where(total > 0, total, 1.0)


def attention(
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    score: str = "scaled_dot",
    score_params: dict[str, Any] | None = None,
) -> tuple[Array, Array]:
    """Soft attention of T queries over S key/value pairs (Bahdanau 2015; Vaswani 2017).

        s = score(q, k) + bias
        p_i = softmax(s_i) over the keys j with mask[i, j]
        out_i = Σ_j p_ij v_j

    The logits and the softmax run in float32 (float64 for float64 inputs); `out` is returned in
    the dtype of `v`. A query whose mask row is all False gets weights 0 and output 0.

    Args:
      q: [T, Hq] queries.
      k: [S, Hk] keys (Hk = Hq for the dot-product scores).
      v: [S, Hv] values.
      mask: bool, broadcastable to [T, S], True = attend.
      bias: float, broadcastable to [T, S], added to the logits (relative positions, ALiBi).
      score: a name in `attn.kernels.scores.SCORES`.
      score_params: keyword arguments of the score function (e.g. `{"W": W}` for "general",
        `{"scale": 0.125}` for "scaled_dot").

    Returns:
      (out[T, Hv], weights[T, S]); weights are float32 (float64 for float64 inputs).
    """
    q, k, v = jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)
    check_single_head(q, k, v, mask=mask, bias=bias, score=score)
    params = scores_lib.check_score_params(score, score_params)
    logits = scores_lib.get_score(score)(q, k, **params)
    if bias is not None:
        logits = logits + jnp.asarray(bias, logits.dtype)
    weights = masked_softmax(logits, None if mask is None else jnp.asarray(mask))
    out = jnp.einsum("TS,SH->TH", weights.astype(v.dtype), v, preferred_element_type=logits.dtype)
    return out.astype(v.dtype), weights
