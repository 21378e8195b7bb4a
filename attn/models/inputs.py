"""Checks of the token ids that the text models take."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from attn.typing import Array, ArrayLike


def check_token_ids(
    owner: str, name: str, ids: ArrayLike, vocab_size: int, letter: str = "T"
) -> Array:
    """`ids` as an array, after checking it is integer [B, letter] and, when its values are known
    (outside `jax.jit`), that every id lies in [0, vocab_size)."""
    known = None if isinstance(ids, jax.core.Tracer) else np.asarray(ids)
    ids = jnp.asarray(ids)
    if ids.ndim != 2 or not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(
            f"{owner}: {name} must be integer token ids [B, {letter}], got {ids.dtype} array of "
            f"shape {ids.shape}"
        )
    if known is not None and known.size:
        low, high = int(known.min()), int(known.max())
        if low < 0 or high >= vocab_size:
            raise ValueError(
                f"{owner}: {name} must lie in [0, vocab_size={vocab_size}), got ids from {low} "
                f"to {high}"
            )
    return ids
