"""Next-token logits as sampling sees them: temperature, top-k and the top-p nucleus
(Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration").

    logits / τ, restricted to the k largest, then to the smallest set of most probable tokens
    whose probability reaches p
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from attn.typing import Array

MASKED = -1e30
"""The log-probability / logit of an excluded token or an empty beam: finite (no NaN from
-inf - -inf) and far below any real score."""


def filter_logits(
    logits: Array,
    temperature: float | Array = 1.0,
    top_k: int | Array | None = None,
    top_p: float | Array | None = None,
) -> Array:
    """logits / τ, with every token outside the top k and outside the top-p nucleus masked.

    Args:
      logits: float [B, V].
      temperature: τ > 0.
      top_k: keep the k largest logits, 1 <= k <= V (ties with the k-th are kept too); None: all.
      top_p: then keep the smallest set of most probable tokens whose probability reaches
        top_p, in (0, 1] (ties with its least probable member are kept too); None: all.

    Returns:
      float32 [B, V]: the scaled logits, `MASKED` (a large finite negative) where excluded.
    """
    logits = logits.astype(jnp.float32) / temperature
    ranked = jnp.sort(logits, axis=-1)[:, ::-1]  # [B, V], descending
    if top_k is not None:
        kth = jnp.take(ranked, top_k - 1, axis=1)[:, None]  # [B, 1]
        logits = jnp.where(logits < kth, MASKED, logits)
        ranked = jnp.where(ranked < kth, MASKED, ranked)
    if top_p is not None:
        probs = jax.nn.softmax(ranked, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs  # probability of the better tokens
        kept = mass_before < top_p  # a prefix of the ranking, never empty
        lowest = jnp.min(jnp.where(kept, ranked, jnp.inf), axis=-1, keepdims=True)  # [B, 1]
        logits = jnp.where(logits < lowest, MASKED, logits)
    return logits
