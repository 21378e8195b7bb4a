"""Masked cross-entropy with label smoothing and z-loss, computed in float32.

    q_v   = (1 - ε) · 1[v = y] + ε / V                        (label smoothing, Szegedy et al. 2016)
    ℓ_t   = -Σ_v q_v log softmax(z_t)_v  +  α · (log Σ_v exp z_{t,v})²   (z-loss, PaLM, Chowdhery
                                                                        et al. 2022)
    loss  = Σ_t w_t ℓ_t / Σ_t w_t

where w_t is 1 for real target tokens and 0 for padding. Vaswani et al. (2017) train with ε = 0.1;
the z-loss keeps the log-partition function near 0 so bfloat16 logits stay in range.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from attn.typing import Array, ArrayLike


def cross_entropy_per_token(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
) -> Array:
    """ℓ = -Σ_v q_v log softmax(z)_v + α (log Σ_v exp z_v)², with the smoothed targets q.

    Args:
      logits: float [..., V] in any dtype (cast to float32).
      labels: int [...] target ids in [0, V).
      label_smoothing: ε in [0, 1): the mass spread uniformly over the V classes.
      z_loss: α >= 0, the weight of the squared log-partition function.

    Returns:
      float32 [...], one loss per position.
    """
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    if logits.ndim < 1 or logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"cross_entropy_per_token: logits must be [..., V] with the shape of labels [...] "
            f"in front, got logits {logits.shape} and labels {labels.shape}"
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"cross_entropy_per_token: labels must be integers, got {labels.dtype}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(
            f"cross_entropy_per_token: label_smoothing must be in [0, 1), got {label_smoothing}"
        )
    if z_loss < 0:
        raise ValueError(f"cross_entropy_per_token: z_loss must be >= 0, got {z_loss}")
    logits = logits.astype(jnp.float32)
    V = logits.shape[-1]
    log_z = jax.nn.logsumexp(logits, axis=-1)  # [...]
    log_probs = logits - log_z[..., None]  # [..., V]
    label_log_prob = jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
    loss = -(1.0 - label_smoothing) * label_log_prob
    if label_smoothing:
        loss = loss - label_smoothing / V * jnp.sum(log_probs, axis=-1)
    if z_loss:
        loss = loss + z_loss * jnp.square(log_z)
    return loss


def masked_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    label_smoothing: float = 0.0,
    z_loss: float = 0.0,
) -> tuple[Array, Array]:
    """loss = Σ_t w_t ℓ_t / max(Σ_t w_t, 1), with ℓ from `cross_entropy_per_token`.

    Args:
      logits: float [B, T, V] (or [B, V] for classification).
      labels: int [B, T] (or [B]).
      mask: [B, T] (or [B]) weights w, 1/True = counted, 0/False = padding; default all 1.
      label_smoothing: ε in [0, 1).
      z_loss: α >= 0.

    Returns:
      (mean loss, float32 scalar; total weight Σ w, float32 scalar).
    """
    per_token = cross_entropy_per_token(
        logits, labels, label_smoothing=label_smoothing, z_loss=z_loss
    )
    if mask is None:
        weights = jnp.ones_like(per_token)
    else:
        mask = jnp.asarray(mask)
        if mask.shape != per_token.shape:
            raise ValueError(
                f"masked_cross_entropy: mask must have the shape of labels {per_token.shape}, "
                f"got {mask.shape}"
            )
        weights = mask.astype(jnp.float32)
    total = jnp.sum(weights)
    return jnp.sum(per_token * weights) / jnp.maximum(total, 1.0), total
