"""The position kinds a transformer stack can use, and what each adds to the stack.

    none         nothing: self-attention is permutation-equivariant (a causal mask breaks that)
    sinusoidal   h_0 = E[x] + PE(p), the fixed sinusoids of Vaswani et al. (2017)
    learned      h_0 = E[x] + P[p], a learned table of `max_length` rows (Gehring et al. 2017)
    rotary       q, k rotated by p·θ inside every self-attention (RoPE, Su et al. 2021)
    alibi        logits − m_n · (i − j) in every self-attention (Press et al. 2022); the symmetric
                 −m_n · |i − j| in an encoder
    t5           logits + E[bucket(j − i), n], one learned bias per stack shared by its layers
                 (Raffel et al. 2020); bidirectional buckets in an encoder

A stack reads three things: `absolute_positions` (the module that adds to the embeddings, or
None), `relative_bias_module` (the T5 table, or None) and `position_bias` (the logit bias
[1, N, T, S] of ALiBi or T5, or None), with the rotary base passed to the blocks. Query i sits
at position offset + i and key j at j, so cached decoding passes the cache index as offset.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from attn.kernels.positions import alibi_bias
from attn.layers.position import LearnedPositions, RelativePositionBias, SinusoidalPositions
from attn.typing import Array, DType

POSITION_KINDS = ("none", "sinusoidal", "learned", "rotary", "alibi", "t5")


def check_position(owner: str, position: str, model_dim: int, num_heads: int) -> None:
    """Raise a ValueError naming `owner` unless `position` is one of `POSITION_KINDS` that the
    widths allow (sinusoids need an even D, rotary an even head dim D / N)."""
    if position not in POSITION_KINDS:
        raise ValueError(
            f"{owner}: position must be one of {list(POSITION_KINDS)}, got {position!r}"
        )
    if position == "sinusoidal" and model_dim % 2:
        raise ValueError(f"{owner}: sinusoidal positions need an even model_dim, got {model_dim}")
    if position == "rotary" and (model_dim // num_heads) % 2:
        raise ValueError(
            f"{owner}: rotary positions need an even head dim model_dim / num_heads, got "
            f"{model_dim} / {num_heads} = {model_dim // num_heads}"
        )


def absolute_positions(
    position: str,
    max_length: int,
    dim: int,
    *,
    rngs: nnx.Rngs,
    dtype: DType,
    param_dtype: DType,
) -> SinusoidalPositions | LearnedPositions | None:
    """The module whose encodings [T, D] are added to the embeddings, or None for the kinds that
    act inside attention (or not at all)."""
    if position == "sinusoidal":
        return SinusoidalPositions(None, dim, dtype=dtype)
    if position == "learned":
        return LearnedPositions(max_length, dim, rngs=rngs, param_dtype=param_dtype, dtype=dtype)
    return None


def relative_bias_module(
    position: str, num_heads: int, *, causal: bool, rngs: nnx.Rngs, param_dtype: DType
) -> RelativePositionBias | None:
    """The T5 relative bias table of a stack (bidirectional buckets unless `causal`), else
    None."""
    if position != "t5":
        return None
    return RelativePositionBias(
        num_heads, bidirectional=not causal, rngs=rngs, param_dtype=param_dtype
    )


def position_bias(
    position: str,
    relative: RelativePositionBias | None,
    num_heads: int,
    T: int,
    S: int,
    *,
    offset: int | Array = 0,
    causal: bool,
) -> Array | None:
    """The additive logit bias float32 [1, N, T, S] of ALiBi or T5 for T queries from position
    `offset` over S keys from position 0; None for the other kinds."""
    if position == "alibi":
        return alibi_bias(num_heads, T, S, offset=offset, causal=causal, dtype=jnp.float32)
    if position == "t5":
        return relative(T, S, offset)
    return None
