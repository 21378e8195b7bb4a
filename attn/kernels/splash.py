"""Splash attention: JAX's Pallas TPU flash kernel behind the `dot_product_attention` contract.

`jax.experimental.pallas.ops.tpu.splash_attention` (the "sparse flash" kernel of MaxText) computes

    out = softmax(Q Kᵀ, masked) V

block by block, with the online softmax of FlashAttention (Dao et al. 2022), and skips every
(query block, key block) pair that its *static* mask hides. Off a TPU it runs in Pallas interpret
mode (slow, exact: for tests).

What the wrapper does for the kernel:
- batch: `jax.vmap` of the per-example kernel over B; grouped K/V heads (K | N) are native.
- scale: folded into the queries (the kernel takes none), so a traced scale works.
- `is_causal` and `local_window_size` become the kernel's static `CausalMask` / `LocalMask`
  (causal ∧ window (left, right) = window (left, min(right, 0))), so hidden blocks are skipped.
- lengths: T and S are padded to whole blocks (multiples of 128); padded keys and keys at or
  beyond `key_value_seq_lengths` get segment id 0 against the queries' 1; queries at or beyond
  `query_seq_lengths` (and padded ones) are computed and then set to 0.
- the fully-masked-row contract: the kernel divides by the row sum at the end (0 for a row whose
  blocks are all skipped) and spreads a row masked inside a computed block over its masked keys;
  the wrapper sets every row that may attend to no key to 0, output and gradient.

What is an error (naming an implementation that can): a run-time boolean `mask` or a `bias`
("blockwise" or "xla"), a value head dim that differs from the query's, float64 inputs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from attn.kernels import masks as masks_lib
from attn.kernels.validation import check_pallas_kernel_inputs
from attn.typing import Array

LANES = 128  # the kernel's block sizes are multiples of the TPU lane count
LONG_BLOCK = 512  # MaxText's default splash blocks on TPU v5, for sequences above 1024


def splash_attention(
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
    """`dot_product_attention(..., implementation="splash")` on checked, batched inputs.

    Args:
      query: [B, T, N, H].
      key: [B, S, K, H], K divides N.
      value: [B, S, K, H].
      bias: must be None.
      mask: must be None (static masks only: `is_causal`, `local_window_size`, lengths).
      scale: logit multiplier, default 1 / sqrt(H).
      is_causal: query i sees keys j <= i (top-left aligned).
      query_seq_lengths: int[B] or None; later queries give 0.
      key_value_seq_lengths: int[B] or None; later keys are masked.
      local_window_size: (left, right) or None.

    Returns:
      out[B, T, N, H] in the dtype of `query`.
    """
    check_pallas_kernel_inputs("splash", query, value, bias, mask)
    # Imported here, not at the top: Pallas adds half a second to `import attn`.
    from jax.experimental.pallas.ops.tpu import splash_attention as splash

    B, T, N, H = query.shape
    S = key.shape[1]
    if T == 0 or S == 0:
        return jnp.zeros(query.shape, query.dtype)
    block_q, block_k = _block_size(T), _block_size(S)
    T_pad, S_pad = _round_up(T, block_q), _round_up(S, block_k)
    kernel = _kernel(
        N, T_pad, S_pad, block_q, block_k, bool(is_causal), local_window_size, _interpret()
    )
    scale = 1.0 / H**0.5 if scale is None else scale
    # [B, T, N, H] -> [B, N, T_pad, H]; [B, S, K, H] -> [B, K, S_pad, H]
    q = _pad(query * jnp.asarray(scale, query.dtype), 1, T_pad).transpose(0, 2, 1, 3)
    k = _pad(key, 1, S_pad).transpose(0, 2, 1, 3)
    v = _pad(value, 1, S_pad).transpose(0, 2, 1, 3)
    real_keys = masks_lib.real_keys(S_pad, S, key_value_seq_lengths)  # [B or 1, S_pad]
    segments = splash.SegmentIds(
        q=jnp.ones((B, T_pad), jnp.int32),
        kv=jnp.broadcast_to(real_keys, (B, S_pad)).astype(jnp.int32),
    )
    out = jax.vmap(kernel)(q, k, v, segments)  # [B, N, T_pad, H]
    out = out[:, :, :T].transpose(0, 2, 1, 3)  # -> [B, T, N, H]
    out = masks_lib.zero_queries_without_keys(
        out,
        S,
        is_causal=is_causal,
        local_window_size=local_window_size,
        query_seq_lengths=query_seq_lengths,
        key_value_seq_lengths=key_value_seq_lengths,
    )
    return out.astype(query.dtype)


def _block_size(length: int) -> int:
    """128 rows up to 1024 (finer blocks skip more of a mask), 512 above (fewer grid steps)."""
    return LANES if length <= 1024 else LONG_BLOCK


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _pad(x: Array, axis: int, size: int) -> Array:
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, size - x.shape[axis])
    return jnp.pad(x, widths)


def _interpret() -> bool:
    """Pallas interpret mode off a TPU (the kernel compiles for TPUs only)."""
    return jax.default_backend() != "tpu"


@functools.lru_cache(maxsize=64)
def _kernel(
    N: int,
    T_pad: int,
    S_pad: int,
    block_q: int,
    block_k: int,
    is_causal: bool,
    window: tuple[int, int] | None,
    interpret: bool,
):
    """The splash kernel for one static mask and shape (building it analyses the mask)."""
    from jax.experimental.pallas.ops.tpu import splash_attention as splash

    shape = (T_pad, S_pad)
    if window is not None:
        left, right = window
        static_mask = splash.LocalMask(shape, (left, min(right, 0) if is_causal else right), 0)
    elif is_causal:
        static_mask = splash.CausalMask(shape)
    else:
        static_mask = splash.FullMask(shape)
    blocks = splash.BlockSizes(
        block_q=block_q,
        block_kv=block_k,
        block_kv_compute=block_k,
        block_q_dkv=block_q,
        block_kv_dkv=block_k,
        block_kv_dkv_compute=block_k,
        block_q_dq=block_q,
        block_kv_dq=block_k,
    )
    with jax.ensure_compile_time_eval():
        return splash.make_splash_mha(
            splash.MultiHeadMask([static_mask] * N),
            block_sizes=blocks,
            head_shards=1,
            q_seq_shards=1,
            interpret=interpret,
        )
