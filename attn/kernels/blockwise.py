"""Memory-efficient attention: an online softmax over key blocks, O(T + S) memory forward and back.

Rabe & Staats 2021, "Self-attention does not need O(n²) memory"; the loop order and the backward
pass of Dao et al. 2022/2023 (FlashAttention, FlashAttention-2). For each block of queries,

    m ← max(m, rowmax(s_j)),   l ← l·e^(m_old − m) + Σ e^(s_j − m),
    acc ← acc·e^(m_old − m) + e^(s_j − m) V_j

over the key blocks j it may see, then out = acc / l. The backward pass is a custom VJP that keeps
only out and the log-sum-exp L = m + log l and recomputes each block's probabilities
p = e^(s − L): dV_j += pᵀ dO,  dS = p ⊙ (dO V_jᵀ − rowsum(dO ⊙ O)),  dQ += dS K_j,  dK_j += dSᵀ Q.

Blocks that the causal triangle, the local window, the sequence lengths or the mask hide entirely
are never computed, so causal attention does about half the work of full attention (under
`jax.vmap` the skip turns into a select and every block is computed, with the same result). Sequence
lengths need not be multiples of the block sizes. Numerics follow `attn.kernels.attention`:
float32 logits and softmax, a bias's -inf clamped to a finite large negative value, output 0 and
gradient 0 for a query that may attend to no key. Inside a block, masked logits are set to -inf
before the exponential (the running max starts at a finite floor, so e^(s − m) is exactly 0 for
them): one pass over the [block_q, block_k] scores fewer than zeroing the probabilities after it,
which XLA's CPU code repeated for each of their two consumers (the row sum and the product with V).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from attn.kernels import masks as masks_lib
from attn.kernels.attention import mask_value
from attn.kernels.scores import accumulation_dtype
from attn.kernels.validation import multihead_inputs
from attn.typing import Array, ArrayLike

BLOCK_K = 256  # keys per block, whatever the shapes (the rule below)
SHORT_BLOCK_Q = 256  # queries per block below LONG_QUERIES queries, or with a wide head
LONG_BLOCK_Q = 512  # queries per block from LONG_QUERIES queries on, with a head of <= WIDE_HEAD
LONG_QUERIES = 4 * LONG_BLOCK_Q  # at least four query blocks of LONG_BLOCK_Q
WIDE_HEAD = 64


def default_block_shape(T: int, S: int, H: int) -> tuple[int, int]:
    """(block_q, block_k) for T queries, S keys and head dim H when the caller gives none.

    Measured on a 2-core CPU, causal, float32, N = 8 (benchmarks/README.md, "Block shapes"; the
    H > 64 row only on a heavily loaded machine):

        | T (queries)        | H (head dim) | block_q | block_k |
        | ------------------ | ------------ | ------: | ------: |
        | >= 2048            | <= 64        |     512 |     256 |
        | >= 2048            | > 64         |     256 |     256 |
        | < 2048             | any          |     256 |     256 |

    then each clipped to T and S. Why: the per-block score product [N, bq, H] x [N, H, bk] runs
    at about half the matmul peak at 256 x 256 and near it from 512 x 256 up, so larger blocks pay;
    but with causal masking each query block also computes the part of its diagonal key blocks
    above the diagonal, about 1 / (number of query blocks) of the useful work, so 512-query blocks
    pay only from four of them (T >= 2048) on. A wider head makes the 256-query product
    efficient already and the larger blocks' working set ([bq, H] queries and accumulator, [bk, H]
    keys and values) outgrows the cache. Key blocks stay at 256: 512 was slower in the backward
    pass. The number of cores does not enter: the query blocks run one after another and XLA
    splits each block's products and softmax passes across the cores.
    """
    block_q = LONG_BLOCK_Q if T >= LONG_QUERIES and H <= WIDE_HEAD else SHORT_BLOCK_Q
    return min(block_q, T), min(BLOCK_K, S)


def block_shape(T: int, S: int, H: int, block_q: int | None, block_k: int | None):
    """The (block_q, block_k) a call runs with: each one given wins over `default_block_shape`,
    and both are clipped to T and S."""
    if block_q is None or block_k is None:
        default_q, default_k = default_block_shape(T, S, H)
        block_q = default_q if block_q is None else block_q
        block_k = default_k if block_k is None else block_k
    return min(block_q, T), min(block_k, S)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Static description of one blockwise call (hashable: a jit/custom_vjp static argument)."""

    T: int  # real query length
    S: int  # real key length
    block_q: int
    block_k: int
    num_q_blocks: int
    num_k_blocks: int
    scale: float
    is_causal: bool
    window: tuple[int, int] | None
    has_bias: bool
    has_mask: bool
    has_q_lengths: bool
    has_kv_lengths: bool
    compute_dtype: str  # "float32", or "float64" for float64 inputs

    @property
    def needs_element_mask(self) -> bool:
        padded_keys = self.num_k_blocks * self.block_k != self.S
        return (
            self.is_causal
            or self.window is not None
            or self.has_mask
            or self.has_q_lengths
            or self.has_kv_lengths
            or padded_keys
        )


def blockwise_attention(
    query: ArrayLike,
    key: ArrayLike,
    value: ArrayLike,
    bias: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    *,
    scale: float | None = None,
    is_causal: bool = False,
    query_seq_lengths: ArrayLike | None = None,
    key_value_seq_lengths: ArrayLike | None = None,
    local_window_size: int | tuple[int, int] | None = None,
    block_q: int | None = None,
    block_k: int | None = None,
) -> Array:
    """Blockwise (flash) attention with the arguments of `dot_product_attention`.

    Memory: O(B·N·(T + S)·H) for the forward and the backward pass (plus O(T·S) only for a
    full-size `bias` or `mask` the caller already holds, and the gradient of such a bias).

    Args:
      query: [B, T, N, H], or unbatched [T, N, H] (then key and value are too).
      key: [B, S, K, H], K divides N.
      value: [B, S, K, Hv].
      bias: float, broadcastable to [B, N, T, S]; differentiable.
      mask: bool, broadcastable to [B, N, T, S], True = attend.
      scale: logit multiplier, default 1 / sqrt(H).
      is_causal: query i sees keys j <= i.
      query_seq_lengths: int[B]; later queries attend to nothing (output 0).
      key_value_seq_lengths: int[B]; later keys are masked.
      local_window_size: w or (left, right): query i sees keys i - left .. i + right.
      block_q: queries per block (clipped to T); default from `default_block_shape`.
      block_k: keys per block (clipped to S); default from `default_block_shape`.

    Returns:
      out[B, T, N, Hv] (or [T, N, Hv]) in the dtype of `query`.

    The gradient is a custom VJP: reverse mode (any order) works, forward mode (`jax.jvp`,
    `jax.jacfwd`) does not; use implementation="reference" for those.
    """
    inputs = multihead_inputs(
        "blockwise_attention",
        query,
        key,
        value,
        bias=bias,
        mask=mask,
        query_seq_lengths=query_seq_lengths,
        key_value_seq_lengths=key_value_seq_lengths,
        implementation="blockwise",
    )
    if not all(b is None or (isinstance(b, int) and b >= 1) for b in (block_q, block_k)):
        raise ValueError(f"block_q and block_k must be ints >= 1, got {block_q!r} and {block_k!r}")
    out = _blockwise(
        *inputs[:7],
        scale=scale,
        is_causal=is_causal,
        local_window_size=local_window_size,
        block_q=block_q,
        block_k=block_k,
    )
    return out if inputs.batched else out[0]


def _blockwise(
    query: Array,
    key: Array,
    value: Array,
    bias: Array | None,
    mask: Array | None,
    query_seq_lengths: Array | None,
    key_value_seq_lengths: Array | None,
    *,
    scale: float | None,
    is_causal: bool,
    local_window_size: int | tuple[int, int] | None,
    block_q: int | None = None,
    block_k: int | None = None,
) -> Array:
    """`blockwise_attention` on checked, batched arrays (see `validation.multihead_inputs`)."""
    B, T, N, H = query.shape
    S, K = key.shape[1], key.shape[2]
    G = N // K
    if T == 0 or S == 0:  # no query, or nothing to attend to: every output row is 0
        return jnp.zeros((B, T, N, value.shape[-1]), query.dtype)
    static_scale = _concrete_scale(scale, H)
    if static_scale is None:  # a traced scale (learned temperature): fold it into the queries
        query = query * jnp.asarray(scale, query.dtype)
    block_q, block_k = block_shape(T, S, H, block_q, block_k)
    plan = _Plan(
        T=T,
        S=S,
        block_q=block_q,
        block_k=block_k,
        num_q_blocks=-(-T // block_q),
        num_k_blocks=-(-S // block_k),
        scale=1.0 if static_scale is None else static_scale,
        is_causal=bool(is_causal),
        window=None if local_window_size is None else masks_lib.normalize_window(local_window_size),
        has_bias=bias is not None,
        has_mask=mask is not None,
        has_q_lengths=query_seq_lengths is not None,
        has_kv_lengths=key_value_seq_lengths is not None,
        compute_dtype=accumulation_dtype(query).name,
    )
    T_pad, S_pad = plan.num_q_blocks * block_q, plan.num_k_blocks * block_k

    # [B, T, N, H] -> [B, T, K, G, H] -> [B, K, G, T_pad, H]
    q = query.reshape(B, T, K, G, H).transpose(0, 2, 3, 1, 4)
    q = _pad_axis(q, 3, T_pad)
    # [B, S, K, H] -> [B, K, S_pad, H]
    k = _pad_axis(key.transpose(0, 2, 1, 3), 2, S_pad)
    v = _pad_axis(value.transpose(0, 2, 1, 3), 2, S_pad)
    # bias and mask grouped like q: broadcastable [B, N, T, S] -> [Bx, Kx, Gx, T_pad, S_pad]
    bias_grouped = None if bias is None else _grouped(bias, B, N, K, T_pad, S_pad, 0.0)
    mask_grouped = None if mask is None else _grouped(mask, B, N, K, T_pad, S_pad, False)
    q_lengths = None if query_seq_lengths is None else jnp.asarray(query_seq_lengths, jnp.int32)
    kv_lengths = (
        None if key_value_seq_lengths is None else jnp.asarray(key_value_seq_lengths, jnp.int32)
    )
    visible = _visible_blocks(plan, mask_grouped, q_lengths, kv_lengths)

    out = _flash_compiled(q, k, v, bias_grouped, mask_grouped, q_lengths, kv_lengths, visible, plan)
    # [B, K, G, T_pad, Hv] -> [B, T, N, Hv]
    out = out[:, :, :, :T].transpose(0, 3, 1, 2, 4).reshape(B, T, N, value.shape[-1])
    return out.astype(query.dtype)


def block_schedule(
    T: int,
    S: int,
    *,
    block_q: int,
    block_k: int,
    is_causal: bool = False,
    local_window_size: int | tuple[int, int] | None = None,
) -> np.ndarray:
    """Which (query block, key block) pairs the causal triangle and the window leave visible.

    Returns:
      bool[ceil(T / block_q), ceil(S / block_k)]; the kernel computes exactly the True pairs
      (further thinned at run time by the sequence lengths and the mask).
    """
    num_q, num_k = -(-T // block_q), -(-S // block_k)
    q_first = np.arange(num_q)[:, None] * block_q
    q_last = np.minimum(q_first + block_q, T) - 1
    k_first = np.arange(num_k)[None, :] * block_k
    k_last = np.minimum(k_first + block_k, S) - 1
    visible = np.ones((num_q, num_k), dtype=bool)
    if is_causal:
        visible &= k_first <= q_last
    if local_window_size is not None:
        left, right = masks_lib.normalize_window(local_window_size)
        visible &= (k_first - q_last <= right) & (k_last - q_first >= -left)
    return visible


def _concrete_scale(scale, head_dim: int) -> float | None:
    """The scale as a Python float (1/sqrt(H) by default), or None when it is traced."""
    if scale is None:
        return float(1.0 / np.sqrt(head_dim))
    try:
        return float(scale)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return None


def _pad_axis(x: Array, axis: int, size: int, value=0) -> Array:
    if x.shape[axis] == size:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, size - x.shape[axis])
    return jnp.pad(x, widths, constant_values=value)


def _grouped(x: Array, B: int, N: int, K: int, T_pad: int, S_pad: int, pad_value) -> Array:
    """Broadcastable [B, N, T, S] -> [Bx, Kx, Gx, Tx, Sx], size-1 dims kept, T and S padded."""
    x = x.reshape((1,) * (4 - x.ndim) + x.shape)
    Bx, Nx, Tx, Sx = x.shape
    if Nx == N:
        x = x.reshape(Bx, K, N // K, Tx, Sx)  # [Bx, N, T, S] -> [Bx, K, G, T, S]
    else:
        x = x.reshape(Bx, 1, 1, Tx, Sx)
    if Tx != 1:
        x = _pad_axis(x, 3, T_pad, pad_value)
    if Sx != 1:
        x = _pad_axis(x, 4, S_pad, pad_value)
    return x


def _visible_blocks(plan: _Plan, mask_grouped, q_lengths, kv_lengths) -> Array:
    """bool[num_q_blocks, num_k_blocks]: pairs holding at least one attendable (query, key)."""
    visible = jnp.asarray(
        block_schedule(
            plan.T,
            plan.S,
            block_q=plan.block_q,
            block_k=plan.block_k,
            is_causal=plan.is_causal,
            local_window_size=plan.window,
        )
    )
    nq, nk, bq, bk = plan.num_q_blocks, plan.num_k_blocks, plan.block_q, plan.block_k
    if q_lengths is not None:
        visible &= (jnp.arange(nq) * bq < jnp.max(q_lengths))[:, None]
    if kv_lengths is not None:
        visible &= (jnp.arange(nk) * bk < jnp.max(kv_lengths))[None, :]
    if mask_grouped is not None:
        Tx, Sx = mask_grouped.shape[3], mask_grouped.shape[4]
        any_mask = jnp.any(mask_grouped, axis=(0, 1, 2))  # [Tx, Sx]
        if Tx != 1:
            any_mask = any_mask.reshape(nq, bq, Sx).any(axis=1)  # [T_pad, Sx] -> [nq, Sx]
        if Sx != 1:
            any_mask = any_mask.reshape(any_mask.shape[0], nk, bk).any(axis=2)  # -> [., nk]
        visible &= any_mask
    return visible


def _block(x, i, j, plan: _Plan):
    """The (query block i, key block j) slice of a [.., .., .., Tx, Sx] bias or mask."""
    if x.shape[3] != 1:
        x = lax.dynamic_slice_in_dim(x, i * plan.block_q, plan.block_q, axis=3)
    if x.shape[4] != 1:
        x = lax.dynamic_slice_in_dim(x, j * plan.block_k, plan.block_k, axis=4)
    return x


def _element_mask(i, j, mask_grouped, q_lengths, kv_lengths, plan: _Plan):
    """bool broadcastable to [B, K, G, bq, bk] for block (i, j), or None if nothing is masked."""
    if not plan.needs_element_mask:
        return None
    q_pos = i * plan.block_q + jnp.arange(plan.block_q)  # [bq]
    k_pos = j * plan.block_k + jnp.arange(plan.block_k)  # [bk]
    offset = k_pos[None, :] - q_pos[:, None]  # [bq, bk]
    allowed = jnp.broadcast_to(k_pos[None, :] < plan.S, offset.shape)
    if plan.is_causal:
        allowed &= offset <= 0
    if plan.window is not None:
        left, right = plan.window
        allowed &= (offset >= -left) & (offset <= right)
    allowed = allowed[None, None, None]  # [1, 1, 1, bq, bk]
    if q_lengths is not None:
        allowed = allowed & (q_pos[None, :, None] < q_lengths[:, None, None])[:, None, None]
    if kv_lengths is not None:
        allowed = allowed & (k_pos[None, None, :] < kv_lengths[:, None, None])[:, None, None]
    if mask_grouped is not None:
        allowed = allowed & _block(mask_grouped, i, j, plan)
    return allowed


def _logits(q_i, k_j, bias_grouped, i, j, plan: _Plan):
    """scale · q_i k_jᵀ (+ bias) in the compute dtype: [B, K, G, bq, bk]."""
    dtype = plan.compute_dtype
    s = jnp.einsum("BKGqH,BKkH->BKGqk", q_i, k_j, preferred_element_type=dtype)
    s = s * plan.scale
    if bias_grouped is not None:
        s = s + _block(bias_grouped, i, j, plan).astype(dtype)
        s = jnp.maximum(s, mask_value(dtype))  # an additive -inf bias stays finite
    return s


def _forward(q, k, v, bias_grouped, mask_grouped, q_lengths, kv_lengths, visible, plan: _Plan):
    """Returns out[B, K, G, T_pad, Hv] and the log-sum-exp L[B, K, G, T_pad], compute dtype."""
    B, K, G = q.shape[:3]
    Hv = v.shape[-1]
    bq, bk = plan.block_q, plan.block_k
    dtype = plan.compute_dtype
    floor = mask_value(dtype)

    def query_block(i):
        q_i = lax.dynamic_slice_in_dim(q, i * bq, bq, axis=3)  # [B, K, G, bq, H]

        def key_block(j, state):
            m, l, acc = state
            k_j = lax.dynamic_slice_in_dim(k, j * bk, bk, axis=2)  # [B, K, bk, H]
            v_j = lax.dynamic_slice_in_dim(v, j * bk, bk, axis=2)
            s = _logits(q_i, k_j, bias_grouped, i, j, plan)
            allowed = _element_mask(i, j, mask_grouped, q_lengths, kv_lengths, plan)
            if allowed is not None:  # e^(-inf - m) = 0 exactly: m starts at the finite floor
                s = jnp.where(allowed, s, -jnp.inf)
            m_new = jnp.maximum(m, jnp.max(s, axis=-1))
            p = jnp.exp(s - m_new[..., None])
            correction = jnp.exp(m - m_new)
            l = l * correction + jnp.sum(p, axis=-1)
            pv = jnp.einsum(
                "BKGqk,BKkH->BKGqH", p.astype(v.dtype), v_j, preferred_element_type=dtype
            )
            return m_new, l, acc * correction[..., None] + pv

        def maybe_key_block(j, state):
            return lax.cond(visible[i, j], key_block, lambda _, s: s, j, state)

        state = (
            jnp.full((B, K, G, bq), floor, dtype),
            jnp.zeros((B, K, G, bq), dtype),
            jnp.zeros((B, K, G, bq, Hv), dtype),
        )
        m, l, acc = lax.fori_loop(0, plan.num_k_blocks, maybe_key_block, state)
        attended = l > 0
        safe_l = jnp.where(attended, l, 1.0)
        out = jnp.where(attended[..., None], acc / safe_l[..., None], 0.0)
        lse = jnp.where(attended, m + jnp.log(safe_l), 0.0)
        return out, lse

    out, lse = lax.map(query_block, jnp.arange(plan.num_q_blocks))
    # [nq, B, K, G, bq, Hv] -> [B, K, G, nq * bq, Hv]
    out = jnp.moveaxis(out, 0, 3).reshape(B, K, G, -1, Hv)
    lse = jnp.moveaxis(lse, 0, 3).reshape(B, K, G, -1)  # [nq, B, K, G, bq] -> [B, K, G, T_pad]
    return out, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(8,))
def _flash(q, k, v, bias_grouped, mask_grouped, q_lengths, kv_lengths, visible, plan):
    return _forward(q, k, v, bias_grouped, mask_grouped, q_lengths, kv_lengths, visible, plan)[0]


def _flash_forward(q, k, v, bias_grouped, mask_grouped, q_lengths, kv_lengths, visible, plan):
    out, lse = _forward(q, k, v, bias_grouped, mask_grouped, q_lengths, kv_lengths, visible, plan)
    return out, (q, k, v, bias_grouped, mask_grouped, q_lengths, kv_lengths, visible, out, lse)


def _flash_backward(plan: _Plan, residuals, d_out):
    q, k, v, bias_grouped, mask_grouped, q_lengths, kv_lengths, visible, out, lse = residuals
    bq, bk = plan.block_q, plan.block_k
    dtype = plan.compute_dtype
    d_out = d_out.astype(dtype)
    delta = jnp.sum(d_out * out, axis=-1)  # rowsum(dO ⊙ O): [B, K, G, T_pad]
    d_bias_shape = None if bias_grouped is None else bias_grouped.shape

    def key_block(carry, j):
        dq, d_bias = carry
        k_j = lax.dynamic_slice_in_dim(k, j * bk, bk, axis=2)  # [B, K, bk, H]
        v_j = lax.dynamic_slice_in_dim(v, j * bk, bk, axis=2)  # [B, K, bk, Hv]

        def query_block(i, state):
            dq, d_bias, dk_j, dv_j = state
            q_i = lax.dynamic_slice_in_dim(q, i * bq, bq, axis=3)  # [B, K, G, bq, H]
            do_i = lax.dynamic_slice_in_dim(d_out, i * bq, bq, axis=3)  # [B, K, G, bq, Hv]
            lse_i = lax.dynamic_slice_in_dim(lse, i * bq, bq, axis=3)  # [B, K, G, bq]
            delta_i = lax.dynamic_slice_in_dim(delta, i * bq, bq, axis=3)
            s = _logits(q_i, k_j, bias_grouped, i, j, plan)
            allowed = _element_mask(i, j, mask_grouped, q_lengths, kv_lengths, plan)
            if allowed is not None:  # e^(-inf - L) = 0 exactly (L = 0 for a row that sees no key)
                s = jnp.where(allowed, s, -jnp.inf)
            p = jnp.exp(s - lse_i[..., None])  # [B, K, G, bq, bk]
            dv_j = dv_j + jnp.einsum("BKGqk,BKGqH->BKkH", p, do_i)
            dp = jnp.einsum("BKGqH,BKkH->BKGqk", do_i, v_j, preferred_element_type=dtype)
            ds = p * (dp - delta_i[..., None])  # d logits
            dq_i = jnp.einsum("BKGqk,BKkH->BKGqH", ds, k_j, preferred_element_type=dtype)
            dq = lax.dynamic_update_slice_in_dim(
                dq,
                lax.dynamic_slice_in_dim(dq, i * bq, bq, axis=3) + dq_i * plan.scale,
                i * bq,
                axis=3,
            )
            dk_j = dk_j + plan.scale * jnp.einsum(
                "BKGqk,BKGqH->BKkH", ds, q_i, preferred_element_type=dtype
            )
            if d_bias is not None:
                d_bias = _accumulate_bias_grad(d_bias, ds, i, j, plan)
            return dq, d_bias, dk_j, dv_j

        def maybe_query_block(i, state):
            return lax.cond(visible[i, j], query_block, lambda _, s: s, i, state)

        B, K = k.shape[:2]
        state = (
            dq,
            d_bias,
            jnp.zeros((B, K, bk, k.shape[-1]), dtype),
            jnp.zeros((B, K, bk, v.shape[-1]), dtype),
        )
        dq, d_bias, dk_j, dv_j = lax.fori_loop(0, plan.num_q_blocks, maybe_query_block, state)
        return (dq, d_bias), (dk_j, dv_j)

    dq0 = jnp.zeros(q.shape, dtype)
    d_bias0 = None if d_bias_shape is None else jnp.zeros(d_bias_shape, dtype)
    (dq, d_bias), (dk, dv) = lax.scan(key_block, (dq0, d_bias0), jnp.arange(plan.num_k_blocks))
    B, K = k.shape[:2]
    # [nk, B, K, bk, H] -> [B, K, nk * bk, H]
    dk = jnp.moveaxis(dk, 0, 2).reshape(B, K, -1, k.shape[-1])
    dv = jnp.moveaxis(dv, 0, 2).reshape(B, K, -1, v.shape[-1])
    return (
        dq.astype(q.dtype),
        dk.astype(k.dtype),
        dv.astype(v.dtype),
        None if d_bias is None else d_bias.astype(bias_grouped.dtype),
        None,
        None,
        None,
        None,
    )


def _accumulate_bias_grad(d_bias, ds, i, j, plan: _Plan):
    """Add d logits [B, K, G, bq, bk] of block (i, j) into the gradient of a broadcast bias."""
    summed_axes = tuple(a for a in range(5) if d_bias.shape[a] == 1 and ds.shape[a] != 1)
    ds = jnp.sum(ds, axis=summed_axes, keepdims=True)
    starts = [0, 0, 0, 0, 0]
    if d_bias.shape[3] != 1:
        starts[3] = i * plan.block_q
    if d_bias.shape[4] != 1:
        starts[4] = j * plan.block_k
    current = lax.dynamic_slice(d_bias, starts, ds.shape)
    return lax.dynamic_update_slice(d_bias, current + ds, starts)


_flash.defvjp(_flash_forward, _flash_backward)

# Compiled once per plan and shapes, so that calls outside `jax.jit` do not re-trace the loops.
_flash_compiled = jax.jit(_flash, static_argnums=(8,))
