"""Attention score functions: score(q[T, Hq], k[S, Hk], **params) -> logits[T, S].

Matrices use the JAX (in, out) layout. Scores are computed with float32 accumulation for
low-precision inputs (float64 inputs stay float64), since the softmax that follows runs in float32.
`SCORES` maps a name to its function; the RNN attention layers and multi-head attention share it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
from jax import lax

from attn.typing import Array, ArrayLike


def accumulation_dtype(*arrays: ArrayLike) -> jnp.dtype:
    """float32 for float16/bfloat16/float32 inputs, float64 when any input is float64."""
    dtype = jnp.result_type(*arrays)
    return jnp.dtype(jnp.float64) if dtype == jnp.float64 else jnp.dtype(jnp.float32)


def dot(q: ArrayLike, k: ArrayLike) -> Array:
    """Dot-product score s_ij = q_i · k_j (Luong et al. 2015, "dot").

    Args:
      q: [T, H] queries.
      k: [S, H] keys.

    Returns:
      [T, S] logits.
    """
    return jnp.einsum("TH,SH->TS", q, k, preferred_element_type=accumulation_dtype(q, k))


def scaled_dot(q: ArrayLike, k: ArrayLike, scale: float | None = None) -> Array:
    """Scaled dot-product score s_ij = (q_i · k_j) / sqrt(H) (Vaswani et al. 2017).

    Args:
      q: [T, H] queries.
      k: [S, H] keys.
      scale: multiplier of the dot product; defaults to 1 / sqrt(H).

    Returns:
      [T, S] logits.
    """
    if scale is None:
        scale = 1.0 / float(jnp.shape(q)[-1]) ** 0.5
    return dot(q, k) * scale


def general(q: ArrayLike, k: ArrayLike, W: ArrayLike) -> Array:
    """Bilinear ("general") score s_ij = q_i W k_jᵀ (Luong et al. 2015).

    Queries and keys may differ in width.

    Args:
      q: [T, Hq] queries.
      k: [S, Hk] keys.
      W: [Hq, Hk] bilinear form.

    Returns:
      [T, S] logits.
    """
    acc = accumulation_dtype(q, k, W)
    qW = jnp.einsum("TQ,QK->TK", q, W, preferred_element_type=acc)
    return jnp.einsum("TK,SK->TS", qW, k, preferred_element_type=acc)


def additive(q: ArrayLike, k: ArrayLike, W_q: ArrayLike, W_k: ArrayLike, v: ArrayLike) -> Array:
    """Additive ("concat") score s_ij = v · tanh(q_i W_q + k_j W_k) (Bahdanau et al. 2015).

    Both projections and the vector v are parameters; queries and keys may differ in width.

    Args:
      q: [T, Hq] queries (for Bahdanau: the previous decoder state).
      k: [S, Hk] keys (the encoder annotations).
      W_q: [Hq, A] query projection.
      W_k: [Hk, A] key projection.
      v: [A] output vector.

    Returns:
      [T, S] logits.
    """
    acc = accumulation_dtype(q, k, W_q, W_k, v)
    projected_q = jnp.einsum("TQ,QA->TA", q, W_q, preferred_element_type=acc)
    projected_k = jnp.einsum("SK,KA->SA", k, W_k, preferred_element_type=acc)
    hidden = jnp.tanh(projected_q[:, None, :] + projected_k[None, :, :])  # [T, S, A]
    return jnp.einsum("TSA,A->TS", hidden, jnp.asarray(v, acc))


def cosine(q: ArrayLike, k: ArrayLike, temperature: float = 1.0, eps: float = 1e-6) -> Array:
    """Cosine score s_ij = cos(q_i, k_j) / temperature (Graves et al. 2014, content addressing).

    Args:
      q: [T, H] queries.
      k: [S, H] keys.
      temperature: divides the cosine; small values sharpen the softmax that follows.
      eps: floor on the norms, so zero vectors give score 0 and a finite gradient, not NaN.

    Returns:
      [T, S] logits in [-1/temperature, 1/temperature].
    """
    acc = accumulation_dtype(q, k)
    return dot(unit(jnp.asarray(q, acc), eps), unit(jnp.asarray(k, acc), eps)) / temperature


def unit(x: ArrayLike, eps: float = 1e-6) -> Array:
    """x / max(|x|, eps) along the last axis, in the dtype of x.

    Written with rsqrt of the clamped squared norm, summed in float32 (float64 for float64 x), so
    that a zero vector gives 0 with a finite gradient (the gradient of |x| at 0 is 0/0).

    Args:
      x: [..., H] vectors.
      eps: floor on the norm.

    Returns:
      [..., H] unit vectors; a vector shorter than eps is scaled by 1/eps instead.
    """
    x = jnp.asarray(x)
    squared = jnp.sum(jnp.square(x.astype(accumulation_dtype(x))), axis=-1, keepdims=True)
    return (x * lax.rsqrt(jnp.maximum(squared, eps**2))).astype(x.dtype)


ScoreFn = Callable[..., Array]

SCORES: dict[str, ScoreFn] = {
    "dot": dot,
    "scaled_dot": scaled_dot,
    "general": general,
    "additive": additive,
    "cosine": cosine,
}


def get_score(name: str) -> ScoreFn:
    """The score function registered under `name`, or a ValueError listing the known names."""
    if name not in SCORES:
        raise ValueError(f"unknown score {name!r}; expected one of {sorted(SCORES)}")
    return SCORES[name]


def check_score_params(name: str, score_params: dict[str, Any] | None) -> dict[str, Any]:
    """`score_params` as a dict, or a ValueError naming the parameters that score `name` takes.

    A score's parameters are the arguments of its function after q and k; those without a default
    are required (e.g. W_q, W_k and v of "additive").
    """
    params = dict(score_params or {})
    signature = inspect.signature(get_score(name))
    accepted = list(signature.parameters)[2:]  # after q and k
    required = [p for p in accepted if signature.parameters[p].default is inspect.Parameter.empty]
    missing = [p for p in required if p not in params]
    unknown = [p for p in params if p not in accepted]
    if missing or unknown:
        raise ValueError(
            f"score={name!r} takes score_params with keys {accepted} ({required} required); "
            f"got {sorted(params)}"
        )
    return params
