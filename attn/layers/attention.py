"""Multi-head attention as a `flax.nnx` module, with a key/value cache for autoregressive decoding.

    MultiHead(x, c) = Concat(head_1, ..., head_N) W_O
    head_n = Attention(x W_Q^n, c W_K^g, c W_V^g)

(Vaswani et al. 2017), g = n // G: N query heads share K key/value heads (grouped-query attention,
Ainslie et al. 2023; multi-query attention when K = 1, Shazeer 2019). Self-attention when the
context `c` is the input itself, cross-attention otherwise. The attention itself is
`attn.kernels.dot_product_attention` for the dot-product scores, and the reference kernel
`attn.kernels.attention` (vmapped over heads and batch) for the parametrised ones.

Hard attention, where each query head selects one position, is the subclass
`attn.layers.HardMultiHeadAttention`, which overrides the attention step.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from attn.kernels import attention as attention_kernel
from attn.kernels import dot_product_attention
from attn.kernels.masks import causal_mask, combine_masks
from attn.kernels.positions import rotary_embedding
from attn.kernels.scores import SCORES, unit
from attn.typing import Array, DType

DEFAULT_KERNEL_INIT = nnx.initializers.lecun_normal()


class MultiHeadAttention(nnx.Module):
    """Multi-head attention with grouped K/V heads, any score of `attn.kernels.scores.SCORES`,
    rotary positions and a key/value cache.

    Parameters: `query` [D, N·H], `key` [Dc, K·H], `value` [Dc, K·H], `out` [N·H, D] (`nnx.Linear`,
    kernels in the JAX (in, out) layout), plus the score's own parameters for "general"
    (`score_W` [N, H, H]) and "additive" (`score_W_q`, `score_W_k` [N, H, A], `score_v` [N, A]).

    Looking inside: with `sow_weights` on (at construction, or for a whole model with
    `nnx.view(model, sow_weights=True)` or `attn.layers.collect_intermediates`), every call sows
    its weights [B, N, T, S] (float32) as `nnx.Intermediate` "attention_weights".

    Cached decoding: `init_cache(batch, max_length)` allocates the cache; every later call with
    `decode=True` appends its T new keys/values at the cache index and attends causally over
    everything cached (query i of the chunk sits at position index + i), so a prompt of any length
    is prefilled in one call and then one or more tokens follow per step, with static shapes under
    `jax.jit`. Cross-attention layers use `init_cross_cache(context)` instead: the context's keys
    and values are projected once and reused by every decoding step.

    Training and evaluation: the `deterministic` attribute is the layer's mode, False (training:
    dropout on the attention weights) when built, as for `nnx.Dropout`; `.eval()` / `.train()`
    (on the layer or on any model that holds it) and `nnx.view(model, deterministic=...)` set it,
    and a call's `deterministic=` argument overrides it for that call.
    """

    def __init__(
        self,
        num_heads: int,
        model_dim: int,
        *,
        num_kv_heads: int | None = None,
        head_dim: int | None = None,
        context_dim: int | None = None,
        score: str = "scaled_dot",
        score_hidden_dim: int | None = None,
        cosine_temperature: float = 0.1,
        use_bias: bool = True,
        out_bias: bool | None = None,
        dropout_rate: float = 0.0,
        rotary_base: float | None = None,
        implementation: str | None = None,
        sow_weights: bool = False,
        deterministic: bool = False,
        dtype: DType | None = None,
        param_dtype: DType = jnp.float32,
        kernel_init: nnx.Initializer = DEFAULT_KERNEL_INIT,
        rngs: nnx.Rngs,
    ):
        """
        Args:
          num_heads: N query heads.
          model_dim: D, width of the input and the output.
          num_kv_heads: K key/value heads (K divides N); default N.
          head_dim: H; default D // N.
          context_dim: width of the cross-attention context; default D.
          score: "scaled_dot", "dot", "cosine", "general" or "additive".
          score_hidden_dim: A, the hidden width of the additive score; default H.
          cosine_temperature: divides the cosine score.
          use_bias: biases on the q/k/v projections.
          out_bias: bias on the output projection; default `use_bias`.
          dropout_rate: dropout on the attention weights (training only).
          rotary_base: apply rotary position embeddings (RoPE) to q and k with this base.
          implementation: passed to `attn.kernels.dot_product_attention`.
          sow_weights: sow the attention weights as "attention_weights" on every call.
          deterministic: the initial mode: False trains (dropout on), True evaluates.
          dtype: compute dtype; default: that of the inputs and parameters.
          param_dtype: parameter dtype.
          kernel_init: initializer of the projection kernels.
          rngs: parameter (and dropout) random streams.
        """
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if num_heads < 1 or num_kv_heads < 1 or num_heads % num_kv_heads:
            raise ValueError(
                f"num_heads ({num_heads}) must be a positive multiple of num_kv_heads "
                f"({num_kv_heads})"
            )
        if head_dim is None:
            if model_dim % num_heads:
                raise ValueError(
                    f"model_dim ({model_dim}) must be divisible by num_heads ({num_heads}) "
                    "unless head_dim is given"
                )
            head_dim = model_dim // num_heads
        if score not in SCORES:
            raise ValueError(f"unknown score {score!r}; expected one of {sorted(SCORES)}")
        if rotary_base is not None and head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head_dim, got {head_dim}")
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.model_dim = model_dim
        self.context_dim = model_dim if context_dim is None else context_dim
        self.score = score
        self.cosine_temperature = cosine_temperature
        self.dropout_rate = dropout_rate
        self.rotary_base = rotary_base
        self.implementation = implementation
        self.sow_weights = sow_weights
        self.deterministic = deterministic
        self.dtype = dtype
        linear = dict(dtype=dtype, param_dtype=param_dtype, kernel_init=kernel_init, rngs=rngs)
        kv_width = num_kv_heads * head_dim
        self.query = nnx.Linear(model_dim, num_heads * head_dim, use_bias=use_bias, **linear)
        self.key = nnx.Linear(self.context_dim, kv_width, use_bias=use_bias, **linear)
        self.value = nnx.Linear(self.context_dim, kv_width, use_bias=use_bias, **linear)
        out_bias = use_bias if out_bias is None else out_bias
        self.out = nnx.Linear(num_heads * head_dim, model_dim, use_bias=out_bias, **linear)
        init = nnx.initializers.normal(1.0 / head_dim**0.5)
        if score == "general":
            self.score_W = nnx.Param(
                init(rngs.params(), (num_heads, head_dim, head_dim), param_dtype)
            )
        if score == "additive":
            A = head_dim if score_hidden_dim is None else score_hidden_dim
            shape = (num_heads, head_dim, A)
            self.score_W_q = nnx.Param(init(rngs.params(), shape, param_dtype))
            self.score_W_k = nnx.Param(init(rngs.params(), shape, param_dtype))
            self.score_v = nnx.Param(init(rngs.params(), (num_heads, A), param_dtype))
        self.dropout = nnx.Dropout(dropout_rate, deterministic=deterministic, rngs=rngs)
        self.cached_key: nnx.Cache | None = nnx.data(None)
        self.cached_value: nnx.Cache | None = nnx.data(None)
        self.cache_index: nnx.Cache | None = nnx.data(None)
        self.cross_key: nnx.Cache | None = nnx.data(None)
        self.cross_value: nnx.Cache | None = nnx.data(None)

    def set_view(self, sow_weights: bool | None = None, deterministic: bool | None = None) -> None:
        """Used by `nnx.view(model, sow_weights=..., deterministic=...)` to switch sowing or the
        mode in every such layer."""
        if sow_weights is not None:
            self.sow_weights = sow_weights
        if deterministic is not None:
            self.deterministic = deterministic

    # ------------------------------------------------------------------ cache

    def init_cache(self, batch: int, max_length: int, dtype: DType | None = None) -> None:
        """Allocate an empty self-attention cache: keys, values [B, max_length, K, H]; index 0."""
        dtype = dtype or self.dtype or self.key.kernel[...].dtype
        shape = (batch, max_length, self.num_kv_heads, self.head_dim)
        self.cached_key = nnx.Cache(jnp.zeros(shape, dtype))
        self.cached_value = nnx.Cache(jnp.zeros(shape, dtype))
        self.cache_index = nnx.Cache(jnp.zeros((), jnp.int32))

    def init_cross_cache(self, context: Array) -> None:
        """Project a cross-attention context [B, S, Dc] to keys and values once, for decoding."""
        self._check_input("context", context, self.context_dim)
        self.cross_key = nnx.Cache(self._heads(self.key(context), self.num_kv_heads))
        self.cross_value = nnx.Cache(self._heads(self.value(context), self.num_kv_heads))

    def clear_cache(self) -> None:
        """Drop every cache, returning to plain (non-decoding) use."""
        self.cached_key = self.cached_value = self.cache_index = None
        self.cross_key = self.cross_value = None

    # ------------------------------------------------------------------ call

    def __call__(
        self,
        x: Array,
        context: Array | None = None,
        *,
        mask: Array | None = None,
        bias: Array | None = None,
        is_causal: bool = False,
        positions: Array | None = None,
        decode: bool = False,
        deterministic: bool | None = None,
    ) -> Array:
        """Attend from `x` [B, T, D] to `context` [B, S, Dc] (default: `x` itself).

        Args:
          x: [B, T, D] queries' input.
          context: [B, S, Dc] keys' and values' input; None for self-attention.
          mask: bool, broadcastable to [B, N, T, S] (S = cache length when decoding), True = attend.
          bias: float, broadcastable to [B, N, T, S], added to the logits (relative positions).
          is_causal: causal self-attention (implied when decoding with a self-attention cache).
          positions: int [T] or [B, T] positions for rotary embeddings; default 0..T-1, or
            index..index+T-1 when decoding.
          decode: use the cache (see the class docstring).
          deterministic: no dropout when True, dropout when False; None: the mode that
            `.train()` / `.eval()` set.

        Returns:
          out [B, T, D].
        """
        return self._run(x, context, mask, bias, is_causal, positions, decode, deterministic)

    def _run(self, x, context, mask, bias, is_causal, positions, decode, deterministic, **options):
        """Project, rotate and cache, then `_attend(..., **options)` and project out: [B, T, D]."""
        deterministic = self.deterministic if deterministic is None else deterministic
        self._check_input("x", x, self.model_dim)
        B, T = x.shape[:2]
        q = self._heads(self.query(x), self.num_heads)  # [B, T, N, H]
        if decode and self.cross_key is not None:  # cached cross-attention
            k, v = self.cross_key[...], self.cross_value[...]
        else:
            source = x if context is None else context
            self._check_input("context", source, self.context_dim)
            k = self._heads(self.key(source), self.num_kv_heads)  # [B, S, K, H]
            v = self._heads(self.value(source), self.num_kv_heads)
        if decode and self.cross_key is None:
            if self.cache_index is None:
                raise ValueError("decode=True needs init_cache(batch, max_length) first")
            if context is not None:
                raise ValueError("a self-attention cache takes no context; use init_cross_cache")
            index = self.cache_index[...]
            if positions is None:
                positions = index + jnp.arange(T)
            q, k = self._rotate(q, positions), self._rotate(k, positions)
            k, v = self._append_to_cache(k, v, index)
            mask = combine_masks(mask, causal_mask(T, k.shape[1], offset=index))
            is_causal = False
        else:
            if self.rotary_base is not None:
                if context is not None:
                    raise ValueError("rotary embeddings apply to self-attention only")
                positions = jnp.arange(T) if positions is None else positions
                q, k = self._rotate(q, positions), self._rotate(k, positions)
        out = self._attend(q, k, v, mask, bias, is_causal, deterministic, **options)
        return self.out(out.reshape(B, T, self.num_heads * self.head_dim))  # [B,T,N,H] -> [B,T,N*H]

    # ------------------------------------------------------------------ pieces

    def _check_input(self, name: str, x: Array, width: int) -> None:
        if x.ndim != 3 or x.shape[-1] != width:
            letter = "D" if name == "x" else "Dc"
            raise ValueError(
                f"MultiHeadAttention: {name} must have shape [B, T, {letter}] with "
                f"{letter}={width}, got shape {x.shape}"
            )

    def _heads(self, projected: Array, heads: int) -> Array:
        B, T = projected.shape[:2]
        return projected.reshape(B, T, heads, self.head_dim)  # [B, T, heads*H] -> [B, T, heads, H]

    def _rotate(self, x: Array, positions: Array) -> Array:
        if self.rotary_base is None:
            return x
        return rotary_embedding(x, positions, base=self.rotary_base).astype(x.dtype)

    def _append_to_cache(self, k: Array, v: Array, index: Array) -> tuple[Array, Array]:
        cached_key, cached_value = self.cached_key[...], self.cached_value[...]
        T = k.shape[1]
        if k.shape[0] != cached_key.shape[0] or cached_key.shape[1] < T:
            raise ValueError(
                f"MultiHeadAttention: a decoding chunk [B, T] = [{k.shape[0]}, {T}] does not fit "
                f"the cache [B, max_length] = [{cached_key.shape[0]}, {cached_key.shape[1]}]"
            )
        try:
            end = int(index) + T  # known outside jax.jit: check it
        except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError):
            end = None
        if end is not None and end > cached_key.shape[1]:
            raise ValueError(
                f"MultiHeadAttention: the cache holds max_length={cached_key.shape[1]} positions; "
                f"appending {T} at index {int(index)} would overrun it"
            )
        zero = jnp.zeros((), jnp.int32)
        start = (zero, index, zero, zero)
        self.cached_key[...] = jax.lax.dynamic_update_slice(
            cached_key, k.astype(cached_key.dtype), start
        )
        self.cached_value[...] = jax.lax.dynamic_update_slice(
            cached_value, v.astype(cached_value.dtype), start
        )
        self.cache_index[...] = index + T
        return self.cached_key[...], self.cached_value[...]

    def _attend(self, q, k, v, mask, bias, is_causal, deterministic):
        """The attention step: q [B, T, N, H] over k, v [B, S, K, H] -> out [B, T, N, H]."""
        dropout = self.dropout_rate > 0.0 and not deterministic
        need_weights = self.sow_weights or dropout
        if self.score in ("general", "additive"):
            out, weights = self._parametrised_attention(q, k, v, mask, bias, is_causal)
        else:
            scale = {"scaled_dot": None, "dot": 1.0, "cosine": 1.0 / self.cosine_temperature}
            if self.score == "cosine":
                q, k = unit(q), unit(k)
            result = dot_product_attention(
                q,
                k,
                v,
                bias,
                mask,
                scale=scale[self.score],
                is_causal=is_causal,
                implementation="reference" if need_weights else self.implementation,
                return_weights=need_weights,
            )
            out, weights = result if need_weights else (result, None)
        if dropout:
            dropped = self.dropout(weights, deterministic=False)
            out = weighted_values(dropped, v, self.num_heads).astype(out.dtype)
        if self.sow_weights:
            self.sow(nnx.Intermediate, "attention_weights", weights)
        return out

    def _parametrised_attention(self, q, k, v, mask, bias, is_causal):
        """The "general" and "additive" scores: the reference kernel, vmapped over heads, batch."""
        B, T, N = q.shape[:3]
        S = k.shape[1]
        full_mask = combine_masks(mask, causal_mask(T, S) if is_causal else None)
        full_mask = jnp.broadcast_to(True if full_mask is None else full_mask, (B, N, T, S))
        full_bias = jnp.broadcast_to(0.0 if bias is None else bias, (B, N, T, S))

        def one_head(q, k, v, mask, bias, params):  # q[T, H], k[S, H], v[S, H]
            return attention_kernel(
                q, k, v, mask=mask, bias=bias, score=self.score, score_params=params
            )

        return _per_head(
            one_head, q, (k, v), (full_mask, full_bias), self._score_params(), out_axes=(1, 0)
        )

    def _score_params(self) -> dict[str, Array]:
        """The per-head parameters [N, ...] of the "general" and "additive" scores; {} otherwise."""
        if self.score == "general":
            return {"W": self.score_W[...]}
        if self.score == "additive":
            return {
                "W_q": self.score_W_q[...],
                "W_k": self.score_W_k[...],
                "v": self.score_v[...],
            }
        return {}

    def _score_logits(self, q: Array, k: Array) -> Array:
        """The scores s [B, N, T, S] (float32 or wider) of q [B, T, N, H] and k [B, S, K, H]."""
        score = SCORES[self.score]
        shared = {"temperature": self.cosine_temperature} if self.score == "cosine" else {}

        def one_head(q, k, params):  # q [T, H], k [S, H] -> [T, S]
            return score(q, k, **params, **shared)

        return _per_head(one_head, q, (k,), (), self._score_params())


def _per_head(
    fn: Callable, q: Array, kv: tuple[Array, ...], per_head: tuple[Array, ...], params, out_axes=0
):
    """fn(q_n [T, H], *kv_n [S, H], *per_head_n, params_n) for every batch row b and query head n.

    Query head n reads key/value head n // G (G = N / K), so each of `kv` [B, S, K, H] is repeated
    G times along its head axis. `per_head` arrays are [B, N, ...], `params` leaves [N, ...];
    `out_axes` places the head axis in fn's outputs (the batch axis goes first).
    """
    G = q.shape[2] // kv[0].shape[2]
    kv = tuple(jnp.repeat(x, G, axis=2) for x in kv)  # query head n uses key/value head n // G
    axes = (1,) * (1 + len(kv)) + (0,) * len(per_head)
    over_heads = jax.vmap(fn, in_axes=(*axes, 0), out_axes=out_axes)
    over_batch = jax.vmap(over_heads, in_axes=(*(0,) * len(axes), None))
    return over_batch(q, *kv, *per_head, params)


def weighted_values(weights: Array, v: Array, num_heads: int) -> Array:
    """Σ_s weights[b, n, t, s] v[b, s, n // G]: [B, T, N, H]."""
    G = num_heads // v.shape[2]
    v = jnp.repeat(v, G, axis=2)
    return jnp.einsum("BNTS,BSNH->BTNH", weights.astype(v.dtype), v)
