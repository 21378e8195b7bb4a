"""Multi-head scaled dot-product attention with the layout and arguments of
`jax.nn.dot_product_attention`, and a choice of implementations.

    out[b, t, n] = Σ_s softmax_s(scale · q[b, t, n] · k[b, s, g] + bias[b, n, t, s]) v[b, s, g],
    g = n // G

"reference" lifts the single-head kernel `attn.kernels.attention` with `jax.vmap` over query heads,
key/value head groups and batch; "blockwise" is the memory-efficient online-softmax kernel of
`attn.kernels.blockwise`; "direct" forms the scores of a few queries whole, in the layout of a
key/value cache (`attn.kernels.direct`, the decoding step's kernel); "xla" and "cudnn" call
`jax.nn.dot_product_attention`; "splash" and "triton" wrap JAX's Pallas flash kernels for TPU
and GPU (`attn.kernels.splash`, `attn.kernels.triton`; interpret mode elsewhere). All follow one
masking rule: a query that may attend to no key gets output 0 (and gradient 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from attn.kernels import masks as masks_lib
from attn.kernels.attention import attention, mask_value
from attn.kernels.blockwise import _blockwise
from attn.kernels.direct import FEW_QUERIES, direct_attention
from attn.kernels.splash import splash_attention
from attn.kernels.triton import triton_attention
from attn.kernels.validation import multihead_inputs
from attn.typing import Array, ArrayLike

LONG_SEQUENCE = 1024  # from this key length up the Pallas kernels are picked over "xla"


def choose_implementation(
    query: Array,
    key: Array,
    value: Array,
    *,
    return_weights: bool,
    has_bias: bool = False,
    has_mask: bool = False,
    local_window_size: tuple[int, int] | None = None,
    platform: str | None = None,
) -> str:
    """The implementation `implementation=None` resolves to, for batched query[B, T, N, H].

    First rule that applies, top to bottom ("16-bit": float16 or bfloat16; S: key length):

    | platform | inputs                                                        | choice      |
    |----------|---------------------------------------------------------------|-------------|
    | any      | `return_weights=True` (only it forms the weights)             | "reference" |
    | CPU      | T <= 16 (a decoding step or a short chunk)                    | "direct"    |
    | any      | float64, or value head dim != H (`jax.nn` takes neither)      | "blockwise" |
    | CPU      | everything else                                               | "blockwise" |
    | GPU      | 16-bit, H % 8 == 0, H <= 128, no bias, no window              | "cudnn"     |
    | GPU      | 16-bit, S >= 1024, no bias, no mask, no window                | "triton"    |
    | TPU      | S >= 1024, no bias, no mask                                   | "splash"    |
    | GPU, TPU | everything else (short sequences, a bias or a run-time mask)  | "xla"       |

    CPU: "direct" for a few queries, where the blockwise kernel's transposed and padded copies of
    the whole key/value cache cost more than the scores (a cached decoding step ran about 3x faster;
    benchmarks/README.md, "Cached decoding"); "blockwise" measured faster than "xla" from T = S = 32
    up (it stays in cache and skips masked blocks; benchmarks/README.md). GPU: cuDNN's fused flash
    kernel where it applies; the Pallas Triton kernel for the long 16-bit sequences it does not take
    (H > 128 or not a multiple of 8), where "xla" would materialise the [B, N, T, S] scores. TPU:
    "xla" materialises the scores too, so splash from S = 1024 up, where that matrix stops fitting
    on-chip memory per head (MaxText's default TPU attention is splash). The TPU rows and the 1024
    crossover rest on the interpret-mode tests of tests/kernels/splash_test.py and published
    figures, not on a TPU measurement here (no TPU was at hand); benchmarks/accelerator.py measures
    the GPU rows on the device.
    """
    if return_weights:
        return "reference"
    platform = platform or jax.default_backend()
    head_dim, value_dim = query.shape[-1], value.shape[-1]
    if platform == "cpu" and query.shape[1] <= FEW_QUERIES:
        return "direct"
    if platform == "cpu" or query.dtype == jnp.float64 or head_dim != value_dim:
        return "blockwise"
    sixteen_bit = query.dtype in (jnp.float16, jnp.bfloat16)
    long_keys = key.shape[1] >= LONG_SEQUENCE
    if platform in ("gpu", "cuda"):
        fits_cudnn = sixteen_bit and head_dim % 8 == 0 and head_dim <= 128
        if fits_cudnn and not has_bias and local_window_size is None:
            return "cudnn"
        if sixteen_bit and long_keys and not (has_bias or has_mask or local_window_size):
            return "triton"
    if platform == "tpu" and long_keys and not (has_bias or has_mask):
        return "splash"
    return "xla"


def dot_product_attention(
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
    implementation: str | None = None,
    return_weights: bool = False,
) -> Array | tuple[Array, Array]:
    """Scaled dot-product attention over many heads (Vaswani et al. 2017), grouped K/V heads for
    grouped-query and multi-query attention (Ainslie et al. 2023; Shazeer 2019).

        out = softmax(scale · Q Kᵀ + bias, masked) V,   per batch element and query head

    Query head n uses key/value head n // G, G = N // K. Logits and softmax run in float32; the
    output has the dtype of the inputs. Masking is the AND of `mask`, the causal triangle
    (`is_causal`: query i sees keys j <= i, top-left aligned as in `jax.nn`; for a cached chunk
    starting at position p pass `mask=causal_mask(T, S, offset=p)` instead), the sequence lengths
    and the local window. A query that may attend to no key gets output 0 and gradient 0 in every
    implementation (`jax.nn` would return mean(V) there).

    Args:
      query: [B, T, N, H], or unbatched [T, N, H] as in `jax.nn` (then key and value are
        unbatched too, masks and bias broadcast to [1, N, T, S] and lengths are int[1] or
        scalars: what `jax.vmap` over the batch hands each call).
      key: [B, S, K, H], K divides N.
      value: [B, S, K, Hv] (Hv = H for "xla", "cudnn", "splash" and "triton").
      bias: float, broadcastable to [B, N, T, S], added to the logits.
      mask: bool, broadcastable to [B, N, T, S], True = attend.
      scale: logit multiplier, default 1 / sqrt(H).
      is_causal: apply the causal mask.
      query_seq_lengths: int[B]; queries at or beyond the length attend to nothing (output 0).
      key_value_seq_lengths: int[B]; keys at or beyond the length are masked.
      local_window_size: w or (left, right): query i sees keys i - left .. i + right.
      implementation: None (choose by the table of `choose_implementation`), "reference",
        "blockwise", "direct" (`attn.kernels.direct`), "xla", "cudnn", "splash"
        (`attn.kernels.splash`) or "triton" (`attn.kernels.triton`).
      return_weights: also return the attention weights (implies "reference").

    Returns:
      out[B, T, N, Hv], or (out, weights[B, N, T, S] float32) when `return_weights`; without the
      leading B for unbatched inputs.
    """
    inputs = multihead_inputs(
        "dot_product_attention",
        query,
        key,
        value,
        bias=bias,
        mask=mask,
        query_seq_lengths=query_seq_lengths,
        key_value_seq_lengths=key_value_seq_lengths,
        implementation=implementation,
    )
    if local_window_size is not None:
        local_window_size = masks_lib.normalize_window(local_window_size)
    if implementation is None:
        implementation = choose_implementation(
            inputs.query,
            inputs.key,
            inputs.value,
            return_weights=return_weights,
            has_bias=bias is not None,
            has_mask=mask is not None,
            local_window_size=local_window_size,
        )
    if return_weights and implementation != "reference":
        raise ValueError(
            f"dot_product_attention: return_weights=True needs implementation='reference' "
            f"(or None), got implementation={implementation!r}, which never forms the weights"
        )
    result = _batched(inputs, scale, is_causal, local_window_size, implementation, return_weights)
    if inputs.batched:
        return result
    if return_weights:  # drop the batch axis of 1 that unbatched inputs were given
        return result[0][0], result[1][0]
    return result[0]


def _batched(inputs, scale, is_causal, local_window_size, implementation, return_weights):
    """`dot_product_attention` on checked, batched inputs, by the chosen implementation."""
    query, key, value, bias, mask, query_seq_lengths, key_value_seq_lengths, _ = inputs
    structure = dict(
        is_causal=is_causal,
        query_seq_lengths=query_seq_lengths,
        key_value_seq_lengths=key_value_seq_lengths,
        local_window_size=local_window_size,
    )
    if implementation == "blockwise":
        return _blockwise(query, key, value, bias, mask, scale=scale, **structure)
    if implementation == "direct":
        return direct_attention(query, key, value, bias, mask, scale=scale, **structure)
    if implementation == "splash":
        return splash_attention(query, key, value, bias, mask, scale=scale, **structure)
    if implementation == "triton":
        return triton_attention(query, key, value, bias, mask, scale=scale, **structure)
    T, S = query.shape[1], key.shape[1]
    combined = masks_lib.build_mask(T, S, mask=mask, **structure)
    if implementation == "reference":
        out, weights = _vmapped_reference(query, key, value, bias, combined, scale)
        return (out, weights) if return_weights else out
    return _jax_nn(query, key, value, bias, mask, combined, scale, implementation, **structure)


def _vmapped_reference(query, key, value, bias, mask, scale):
    """`attention` lifted with jax.vmap over G (query heads sharing a K/V head), K and B."""
    B, T, N, H = query.shape
    S, K = key.shape[1], key.shape[2]
    G = N // K
    q = query.reshape(B, T, K, G, H)  # [B, T, N, H] -> [B, T, K, G, H]

    def per_head(q, k, v, mask, bias):  # q[T, H], k[S, H], v[S, Hv], mask/bias[T, S]
        return attention(
            q, k, v, mask=mask, bias=bias, score="scaled_dot", score_params={"scale": scale}
        )

    def grouped(x):  # broadcastable [B, N, T, S] -> [B, K, G, T, S]
        if x is None:
            return None
        x = jnp.broadcast_to(x, (B, N, T, S))
        return x.reshape(B, K, G, T, S)  # [B, N, T, S] -> [B, K, G, T, S]

    over_groups = jax.vmap(per_head, in_axes=(1, None, None, 0, 0))  # q[T, G, H]
    over_kv_heads = jax.vmap(over_groups, in_axes=(1, 1, 1, 0, 0))  # q[T, K, G, H]
    over_batch = jax.vmap(over_kv_heads, in_axes=(0, 0, 0, 0, 0))
    out, weights = over_batch(q, key, value, grouped(mask), grouped(bias))
    # out[B, K, G, T, Hv] -> [B, T, N, Hv]; weights[B, K, G, T, S] -> [B, N, T, S]
    out = out.transpose(0, 3, 1, 2, 4).reshape(B, T, N, value.shape[-1])
    return out, weights.reshape(B, N, T, S)


def _jax_nn(query, key, value, bias, mask, combined, scale, implementation, **structure):
    """`jax.nn.dot_product_attention`, with fully masked query rows set to 0 (not mean(V)).

    The bias is clamped to half the mask value, so that a key `jax.nn` masks (at 0.7 × the most
    negative float32) always loses to an allowed key with a very negative bias; it stays float32
    for "xla" and takes the query dtype only for "cudnn", which requires it.
    """
    if implementation == "cudnn" and jax.default_backend() != "gpu":
        raise ValueError(
            "dot_product_attention: implementation='cudnn' needs an NVIDIA GPU, and this process "
            f"runs on {jax.default_backend()!r}; use implementation=None (the fastest correct "
            "one for the platform), 'blockwise' or 'xla'"
        )
    if value.shape[-1] != query.shape[-1]:
        raise ValueError(
            f"dot_product_attention: implementation={implementation!r} needs value[B, S, K, H] "
            f"with the head dim H={query.shape[-1]} of query, got value shape {value.shape}; "
            "use 'reference' or 'blockwise'"
        )
    if bias is not None:
        bias = jnp.maximum(jnp.asarray(bias, jnp.float32), 0.5 * mask_value(jnp.float32))
        if implementation == "cudnn":
            bias = bias.astype(query.dtype)
    for name in ("query_seq_lengths", "key_value_seq_lengths"):
        if structure[name] is not None:
            structure[name] = structure[name].astype(jnp.int32)
    out = jax.nn.dot_product_attention(
        query, key, value, bias, mask, scale=scale, implementation=implementation, **structure
    )
    if combined is None:
        return out
    B, T, N = query.shape[:3]
    attends = jnp.broadcast_to(jnp.any(combined, axis=-1), (B, N, T))  # [B, N, T]
    return jnp.where(attends.transpose(0, 2, 1)[..., None], out, jnp.zeros_like(out))
