"""The Pallas GPU (Triton) flash kernel behind the `dot_product_attention` contract.

`jax.experimental.pallas.ops.gpu.attention.mha` is FlashAttention (Dao et al. 2022) written in
Pallas for Triton: per (query block, batch, head) it runs the online softmax

    m ← max(m, rowmax(s_j)),  l ← l·2^(m_old − m) + Σ 2^(s_j − m),  acc ← acc·2^(m_old − m) + … V_j

over the key blocks (up to the diagonal when causal), and a fused backward kernel. Off a GPU it
runs in Pallas interpret mode (slow, exact: for tests).

The kernel takes equal query and key/value head counts, query and key lengths that are whole
blocks, one `segment_ids` array for queries and keys together, no window, bias or mask. What the
wrapper emulates:
- grouped K/V heads (K | N): K/V heads are repeated G = N // K times (their gradients summed).
- lengths that are not whole blocks: T and S are padded to one length L, a multiple of a block
  of 16..128 rows (a power of two, as Triton needs; equal lengths, as the fused backward needs).
- masked keys (the padding, and keys at or beyond `key_value_seq_lengths`): one extra head-dim
  coordinate, 1 on the queries and −30000 on a masked key (0 on a real one), gives masked keys a
  logit 30000 below any real one. One segment-id array cannot do this: query p and key p share
  an id, so a real query at or beyond its example's key length would see padding. The cost is
  the kernel's head dim padded to the next power of two above H + 1 (2× at H = 64 or 128), paid
  only where keys are masked.
- the scale: folded into the queries (a traced scale works).
- `query_seq_lengths` and the fully-masked-row contract: rows that may attend to no key (later
  queries, an example with no keys) are computed, then set to 0 (output and gradient).
What is an error (naming an implementation that can): `local_window_size`, a run-time boolean
`mask`, a `bias`, a value head dim that differs from the query's, float64 inputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from attn.kernels import masks as masks_lib
from attn.kernels.validation import check_pallas_kernel_inputs
from attn.typing import Array

MAX_BLOCK = 128  # the kernel's default forward block
BACKWARD_BLOCK = 32  # its default backward blocks
MASKED_LOGIT = -30000.0  # exact in bfloat16 and float16; far below any real logit


def triton_attention(
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
    """`dot_product_attention(..., implementation="triton")` on checked, batched inputs.

    Args:
      query: [B, T, N, H].
      key: [B, S, K, H], K divides N.
      value: [B, S, K, H].
      bias, mask, local_window_size: must be None.
      scale: logit multiplier, default 1 / sqrt(H).
      is_causal: query i sees keys j <= i (top-left aligned).
      query_seq_lengths: int[B] or None; later queries give 0.
      key_value_seq_lengths: int[B] or None; later keys are masked.

    Returns:
      out[B, T, N, H] in the dtype of `query`.
    """
    check_pallas_kernel_inputs("triton", query, value, bias, mask)
    if local_window_size is not None:
        raise ValueError(
            "dot_product_attention(implementation='triton'): the kernel has no local window, got "
            f"local_window_size={local_window_size}; use implementation='blockwise' or 'xla'"
        )
    # Imported here, not at the top: Pallas adds half a second to `import attn`.
    from jax.experimental.pallas.ops.gpu import attention as pallas_gpu

    B, T, N, H = query.shape
    S, K = key.shape[1], key.shape[2]
    if T == 0 or S == 0:
        return jnp.zeros(query.shape, query.dtype)
    block = min(MAX_BLOCK, _next_power_of_2(max(T, S, 16)))
    L = -(-max(T, S) // block) * block
    scale = 1.0 / H**0.5 if scale is None else scale
    q = _pad(query * jnp.asarray(scale, query.dtype), L)
    # [B, S, K, H] -> [B, S, N, H]: query head n uses key/value head n // G
    k = _pad(jnp.repeat(key, N // K, axis=2), L)
    v = _pad(jnp.repeat(value, N // K, axis=2), L)
    if L != S or key_value_seq_lengths is not None:
        real_keys = masks_lib.real_keys(L, S, key_value_seq_lengths)  # [B or 1, L]
        extra_k = jnp.where(real_keys, 0.0, MASKED_LOGIT)  # [B or 1, L]
        q = jnp.concatenate([q, jnp.ones((B, L, N, 1), q.dtype)], axis=-1)
        extra_k = jnp.broadcast_to(extra_k[:, :, None, None], (B, L, N, 1)).astype(k.dtype)
        k = jnp.concatenate([k, extra_k], axis=-1)
        v = jnp.concatenate([v, jnp.zeros((B, L, N, 1), v.dtype)], axis=-1)
    backward = min(BACKWARD_BLOCK, block)
    blocks = pallas_gpu.BlockSizes(
        block_q=block,
        block_k=block,
        block_q_dkv=backward,
        block_kv_dkv=backward,
        block_q_dq=backward,
        block_kv_dq=backward,
    )
    out = pallas_gpu.mha(
        q,
        k,
        v,
        None,
        sm_scale=1.0,
        causal=bool(is_causal),
        block_sizes=blocks,
        interpret=jax.default_backend() != "gpu",
    )
    out = out[:, :T, :, :H]
    out = masks_lib.zero_queries_without_keys(
        out,
        S,
        is_causal=is_causal,
        query_seq_lengths=query_seq_lengths,
        key_value_seq_lengths=key_value_seq_lengths,
    )
    return out.astype(query.dtype)


def _next_power_of_2(n: int) -> int:
    return 1 << (n - 1).bit_length()


def _pad(x: Array, length: int) -> Array:
    """[B, T, N, H] -> [B, length, N, H] with zeros."""
    return jnp.pad(x, ((0, 0), (0, length - x.shape[1]), (0, 0), (0, 0)))
