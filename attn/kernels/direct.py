"""Attention of a few queries over many keys in one pass: the decoding step's kernel.

    s = scale · q kᵀ (+ bias),   p = e^(s − max s) on the allowed keys,   out = (p v) / Σ p

for query[B, T, N, H] over key, value [B, S, K, H] in the layout of a key/value cache, with the
[B, N, T, S] scores formed whole: for a handful of queries (a cached decoding step, T = 1, or a
short chunk) they are no larger than a few rows of the cache, so the blockwise kernel's loops,
its transposed copies of K and V and its padding of S to a whole number of key blocks buy nothing.
Profiled on a 4-layer decoding step (benchmarks/README.md, "Cached decoding"): per step, each
layer used to copy, transpose and pad its whole K and V; greedy decoding of 1,024 tokens runs
1.5x faster with this path on a quiet 2-core CPU (635 -> 952 tokens/s).

Masking and numerics follow `attn.kernels.attention`: float32 (float64 for float64 inputs) logits
and softmax, masked logits at a finite large negative value, and output 0 (gradient 0) for a query
that may attend to no key. Gradients come from autodiff (the scores are small).
"""

from __future__ import annotations

import jax.numpy as jnp

from attn.kernels import masks as masks_lib
from attn.kernels.attention import mask_value
from attn.kernels.scores import accumulation_dtype
from attn.typing import Array

FEW_QUERIES = 16  # `implementation=None` on the CPU picks "direct" up to this query length


def direct_attention(
    query: Array,
    key: Array,
    value: Array,
    bias: Array | None,
    mask: Array | None,
    *,
    scale: float | Array | None,
    is_causal: bool,
    query_seq_lengths: Array | None,
    key_value_seq_lengths: Array | None,
    local_window_size: tuple[int, int] | None,
) -> Array:
    """`dot_product_attention(..., implementation="direct")` on checked, batched inputs.

    Args:
      query: [B, T, N, H]; key: [B, S, K, H]; value: [B, S, K, Hv], K divides N.
      bias, mask: broadcastable to [B, N, T, S] (float added to the logits; bool, True = attend).
      scale: logit multiplier (a float or a traced scalar), default 1 / sqrt(H).
      is_causal, query_seq_lengths, key_value_seq_lengths, local_window_size: as in
        `attn.kernels.dot_product_attention`.

    Returns:
      out[B, T, N, Hv] in the dtype of query.
    """
    B, T, N, H = query.shape
    S, K = key.shape[1], key.shape[2]
    G = N // K
    if T == 0 or S == 0:  # no query, or nothing to attend to: every output row is 0
        return jnp.zeros((B, T, N, value.shape[-1]), query.dtype)
    dtype = accumulation_dtype(query)
    floor = mask_value(dtype)
    scale = 1.0 / jnp.sqrt(jnp.asarray(H, dtype)) if scale is None else scale
    q = query.reshape(B, T, K, G, H)  # [B, T, N, H] -> [B, T, K, G, H]
    s = jnp.einsum("BTKGH,BSKH->BKGTS", q, key, preferred_element_type=dtype)
    s = s * jnp.asarray(scale, dtype)
    if bias is not None:
        s = s + _grouped(bias, K, G).astype(dtype)
        s = jnp.maximum(s, floor)  # an additive -inf bias stays finite
    allowed = masks_lib.build_mask(
        T,
        S,
        mask=mask,
        is_causal=is_causal,
        query_seq_lengths=query_seq_lengths,
        key_value_seq_lengths=key_value_seq_lengths,
        local_window_size=local_window_size,
    )
    if allowed is not None:
        allowed = _grouped(allowed, K, G)  # [Bx, K|1, G|1, Tx, Sx]
        s = jnp.where(allowed, s, floor)
    p = jnp.exp(s - jnp.max(s, axis=-1, keepdims=True))  # [B, K, G, T, S]
    if allowed is not None:
        p = jnp.where(allowed, p, 0.0)
    total = jnp.sum(p, axis=-1)  # [B, K, G, T]
    p_v = p.astype(value.dtype)
    out = jnp.einsum("BKGTS,BSKH->BTKGH", p_v, value, preferred_element_type=dtype)
    attended = (total > 0).transpose(0, 3, 1, 2)[..., None]  # [B, K, G, T] -> [B, T, K, G, 1]
    safe_total = jnp.where(attended, total.transpose(0, 3, 1, 2)[..., None], 1.0)
    out = jnp.where(attended, out / safe_total, 0.0)
    return out.reshape(B, T, N, value.shape[-1]).astype(query.dtype)


def _grouped(x: Array, K: int, G: int) -> Array:
    """Broadcastable [B, N, T, S] -> [Bx, K, G, Tx, Sx] (size-1 heads kept as [Bx, 1, 1, ...])."""
    x = jnp.asarray(x)
    x = x.reshape((1,) * (4 - x.ndim) + x.shape)
    Bx, Nx, Tx, Sx = x.shape
    if Nx == 1:
        return x.reshape(Bx, 1, 1, Tx, Sx)
    return x.reshape(Bx, K, G, Tx, Sx)  # [Bx, N, T, S] -> [Bx, K, G, T, S]
