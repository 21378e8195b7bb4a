"""The transformer's residual block: attention and an MLP, each wrapped in a residual connection
and a layer norm, placed before (pre-LN) or after (post-LN) the sublayer.

    post-LN (Vaswani et al. 2017; BERT):   x ← LN(x + Dropout(Sublayer(x)))
    pre-LN  (Xiong et al. 2020; GPT-2, ViT): x ← x + Dropout(Sublayer(LN(x)))

A decoder block of an encoder-decoder model has a third sublayer, cross-attention to the encoder
output, between self-attention and the MLP.
"""

from __future__ import annotations

from typing import Any, Self

import jax.numpy as jnp
from flax import nnx

from attn.layers.attention import MultiHeadAttention
from attn.layers.feedforward import MLP
from attn.typing import Array, DType


class TransformerBlock(nnx.Module):
    """Self-attention (+ optional cross-attention) + MLP with residuals and layer norms.

    Sublayers: `self_attention`, `self_attention_norm`, [`cross_attention`,
    `cross_attention_norm`], `mlp`, `mlp_norm`.
    """

    def __init__(
        self,
        model_dim: int,
        num_heads: int,
        mlp_dim: int,
        *,
        num_kv_heads: int | None = None,
        cross_attention: bool = False,
        norm_first: bool = True,
        layer_norm_eps: float = 1e-6,
        activation: str = "gelu",
        dropout_rate: float = 0.0,
        attention_dropout_rate: float = 0.0,
        use_bias: bool = True,
        rotary_base: float | None = None,
        implementation: str | None = None,
        dtype: DType | None = None,
        param_dtype: DType = jnp.float32,
        rngs: nnx.Rngs,
    ):
        common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        attention = dict(
            use_bias=use_bias,
            dropout_rate=attention_dropout_rate,
            implementation=implementation,
            **common,
        )

        def norm():
            return nnx.LayerNorm(model_dim, epsilon=layer_norm_eps, **common)

        self.norm_first = norm_first
        self.self_attention = MultiHeadAttention(
            num_heads, model_dim, num_kv_heads=num_kv_heads, rotary_base=rotary_base, **attention
        )
        self.self_attention_norm = norm()
        self.cross_attention = nnx.data(
            MultiHeadAttention(num_heads, model_dim, num_kv_heads=num_kv_heads, **attention)
            if cross_attention
            else None
        )
        self.cross_attention_norm = nnx.data(norm() if cross_attention else None)
        self.mlp = MLP(
            model_dim,
            mlp_dim,
            activation=activation,
            dropout_rate=dropout_rate,
            use_bias=use_bias,
            **common,
        )
        self.mlp_norm = norm()
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    @classmethod
    def from_config(
        cls,
        config: Any,
        *,
        norm_first: bool,
        cross_attention: bool = False,
        rotary_base: float | None = None,
        rngs: nnx.Rngs,
    ) -> Self:
        """One block of a model family, built from its config's shared field vocabulary.

        Reads `model_dim`, `num_heads`, `mlp_dim`, `layer_norm_eps`, `activation`, `dropout_rate`,
        `attention_dropout_rate`, `implementation`, `dtype` and `param_dtype` (dtype names or
        dtypes), and, where the config has them, `num_kv_heads` (default: N) and `use_bias`
        (default True). What differs between families is a keyword: pre- or post-LN, a
        cross-attention sublayer (the decoder of an encoder-decoder), rotary positions.
        """
        dtype = None if config.dtype is None else jnp.dtype(config.dtype)
        return cls(
            config.model_dim,
            config.num_heads,
            config.mlp_dim,
            num_kv_heads=getattr(config, "num_kv_heads", None),
            cross_attention=cross_attention,
            norm_first=norm_first,
            layer_norm_eps=config.layer_norm_eps,
            activation=config.activation,
            dropout_rate=config.dropout_rate,
            attention_dropout_rate=config.attention_dropout_rate,
            use_bias=getattr(config, "use_bias", True),
            rotary_base=rotary_base,
            implementation=config.implementation,
            dtype=dtype,
            param_dtype=jnp.dtype(config.param_dtype),
            rngs=rngs,
        )

    def __call__(
        self,
        x: Array,
        context: Array | None = None,
        *,
        mask: Array | None = None,
        bias: Array | None = None,
        is_causal: bool = False,
        context_mask: Array | None = None,
        positions: Array | None = None,
        decode: bool = False,
        deterministic: bool | None = None,
    ) -> Array:
        """x [B, T, D] (and the encoder output `context` [B, S, D]) -> [B, T, D].

        `mask`/`bias`/`is_causal` apply to self-attention, `context_mask` [B, 1, 1|T, S] to
        cross-attention; `decode` uses the attention caches.
        """

        def self_attention(h):
            return self.self_attention(
                h,
                mask=mask,
                bias=bias,
                is_causal=is_causal,
                positions=positions,
                decode=decode,
                deterministic=deterministic,
            )

        x = self._residual(x, self_attention, self.self_attention_norm, deterministic)
        if self.cross_attention is not None:
            cached = decode and self.cross_attention.cross_key is not None
            if context is None and not cached:
                raise ValueError(
                    "TransformerBlock: this block has cross-attention; pass the encoder output as "
                    "context [B, S, D], or init_cross_cache(context) before decoding"
                )

            def cross_attention(h):
                return self.cross_attention(
                    h,
                    None if cached else context,
                    mask=context_mask,
                    decode=cached,
                    deterministic=deterministic,
                )

            x = self._residual(x, cross_attention, self.cross_attention_norm, deterministic)

        def mlp(h):
            return self.mlp(h, deterministic=deterministic)

        return self._residual(x, mlp, self.mlp_norm, deterministic, dropout=False)

    def _residual(self, x, sublayer, norm, deterministic, dropout=True):
        """Pre-LN: x + Dropout(f(LN(x))); post-LN: LN(x + Dropout(f(x))).

        The MLP applies its own output dropout, so `dropout=False` for it.
        """
        if self.norm_first:
            y = sublayer(norm(x))
            return x + (self.dropout(y, deterministic=deterministic) if dropout else y)
        y = sublayer(x)
        return norm(x + (self.dropout(y, deterministic=deterministic) if dropout else y))
