"""Decoder-only transformer language model, the GPT family (Radford et al. 2018, 2019).

    h_0 = E[ids] + P[positions],   h_l = Block_l(h_{l-1}) (pre-LN, causal),   logits = LN(h_L) Eᵀ

Token embeddings E are tied to the output projection by default (GPT-2). Positions (`position`)
are a learned table (GPT-2), sinusoids, rotary embeddings inside attention (RoPE, Su et al. 2021),
ALiBi or T5 logit biases, or none (see `attn.models.position_kinds`). Cached decoding:
`init_cache(batch, max_length)`, then `model(ids, decode=True)` for a prompt of any length and
for each new token; `stepper()` packages that for `attn.decoding`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
from flax import nnx

from attn.kernels.masks import key_mask
from attn.kernels.validation import check_positive, check_token_ids
from attn.layers.blocks import TransformerBlock
from attn.models.inputs import check_fits
from attn.models.lm_stepper import TransformerLMStepper
from attn.models.position_kinds import (
    absolute_positions,
    check_position,
    position_bias,
    relative_bias_module,
)
from attn.models.variants import NamedVariants, check_transformer_fields, dtype_of
from attn.typing import Array

_GPT2 = dict(vocab_size=50257, max_length=1024, activation="gelu_tanh", layer_norm_eps=1e-5)


@dataclasses.dataclass(frozen=True)
class TransformerLMConfig(NamedVariants):
    """Configuration of `TransformerLM`; `TransformerLMConfig.named("gpt2")` for GPT-2 small."""

    vocab_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int | None = None
    model_dim: int = 128
    mlp_dim: int = 512
    max_length: int = 256
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    position: str = "learned"  # one of attn.models.position_kinds.POSITION_KINDS
    rotary_base: float = 10000.0
    activation: str = "gelu_tanh"
    layer_norm_eps: float = 1e-5
    tie_embeddings: bool = True
    use_bias: bool = True
    implementation: str | None = None
    dtype: str | None = None
    param_dtype: str = "float32"

    VARIANTS: ClassVar[dict[str, dict]] = {
        "tiny": dict(num_layers=2, num_heads=2, model_dim=64, mlp_dim=256, max_length=128),
        "small": dict(num_layers=6, num_heads=8, model_dim=512, mlp_dim=2048, max_length=2048),
        "gpt2": dict(num_layers=12, num_heads=12, model_dim=768, mlp_dim=3072, **_GPT2),
        "gpt2-medium": dict(num_layers=24, num_heads=16, model_dim=1024, mlp_dim=4096, **_GPT2),
        "gpt2-large": dict(num_layers=36, num_heads=20, model_dim=1280, mlp_dim=5120, **_GPT2),
        "gpt2-xl": dict(num_layers=48, num_heads=25, model_dim=1600, mlp_dim=6400, **_GPT2),
    }

    def __post_init__(self):
        owner = "TransformerLMConfig"
        for name in ("vocab_size", "num_layers", "max_length"):
            check_positive(owner, name, getattr(self, name))
        check_transformer_fields(owner, self)
        check_position(owner, self.position, self.model_dim, self.num_heads)


class TransformerLM(nnx.Module):
    """GPT-style language model: `TransformerLM(ids[B, T], attention_mask=None) -> logits[B, T, V]`.

    Submodules: `token_embedding` (`nnx.Embed`), `position_embedding` (`LearnedPositions` or
    `SinusoidalPositions`, absent for the other position kinds), `relative_bias`
    (`RelativePositionBias`, causal buckets, for position="t5" only), `blocks` (list of pre-LN
    `TransformerBlock`s), `final_norm`, and `lm_head` (`nnx.Linear` without bias, absent when the
    embeddings are tied).
    """

    def __init__(self, config: TransformerLMConfig, *, rngs: nnx.Rngs):
        self.config = config
        dtype, param_dtype = dtype_of(config.dtype), dtype_of(config.param_dtype)
        common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        init = nnx.initializers.normal(0.02)
        self.token_embedding = nnx.Embed(
            config.vocab_size, config.model_dim, embedding_init=init, **common
        )
        self.position_embedding = nnx.data(
            absolute_positions(
                config.position,
                config.max_length,
                config.model_dim,
                rngs=rngs,
                param_dtype=param_dtype,
                dtype=dtype or jnp.float32,
            )
        )
        self.relative_bias = nnx.data(
            relative_bias_module(
                config.position, config.num_heads, causal=True, rngs=rngs, param_dtype=param_dtype
            )
        )
        self.dropout = nnx.Dropout(config.dropout_rate, rngs=rngs)
        rotary_base = config.rotary_base if config.position == "rotary" else None
        self.blocks = nnx.List(
            [
                TransformerBlock.from_config(
                    config, norm_first=True, rotary_base=rotary_base, rngs=rngs
                )
                for _ in range(config.num_layers)
            ]
        )
        self.final_norm = nnx.LayerNorm(config.model_dim, epsilon=config.layer_norm_eps, **common)
        self.lm_head = nnx.data(
            None
            if config.tie_embeddings
            else nnx.Linear(config.model_dim, config.vocab_size, use_bias=False, **common)
        )

    def init_cache(self, batch: int, max_length: int | None = None) -> None:
        """Allocate the key/value caches of every block for decoding up to `max_length` tokens."""
        max_length = max_length or self.config.max_length
        if self.config.position == "learned":
            check_fits(
                "TransformerLM.init_cache", "cache length", max_length, self.config.max_length
            )
        for block in self.blocks:
            block.self_attention.init_cache(batch, max_length)

    def clear_cache(self) -> None:
        """Drop the decoding caches."""
        for block in self.blocks:
            block.self_attention.clear_cache()

    def stepper(self) -> TransformerLMStepper:
        """The decoding step of this model for `attn.decoding` (`greedy`, `sample`,
        `beam_search`): prefill the prompt into the caches, then one token per step."""
        return TransformerLMStepper(self)

    def __call__(
        self,
        ids: Array,
        attention_mask: Array | None = None,
        *,
        decode: bool = False,
        deterministic: bool | None = None,
    ) -> Array:
        """Next-token logits.

        Args:
          ids: int [B, T] token ids.
          attention_mask: [B, T] (or [B, cache length] when decoding), 1/True = real token,
            0/False = padding; padded keys are never attended to.
          decode: use the caches (`init_cache` first): `ids` continue the cached sequence.
          deterministic: no dropout when True, dropout when False; None: the mode that
            `.train()` / `.eval()` set.

        Returns:
          logits [B, T, V] (float32 for a float32 model; the compute dtype otherwise).
        """
        ids = check_token_ids("TransformerLM", "ids", ids, self.config.vocab_size)
        T = ids.shape[1]
        if decode and self.blocks[0].self_attention.cache_index is None:
            raise ValueError("TransformerLM: decode=True needs init_cache(batch, max_length) first")
        offset = self.blocks[0].self_attention.cache_index[...] if decode else 0
        h = self.token_embedding(ids)
        if self.position_embedding is not None:
            if not decode and self.config.position == "learned":
                check_fits("TransformerLM", "sequence length T", T, self.config.max_length)
            h = h + self.position_embedding(T, offset=offset).astype(h.dtype)
        h = self.dropout(h, deterministic=deterministic)
        S = self.blocks[0].self_attention.cached_key.shape[1] if decode else T
        letter = "cache length" if decode else "T"
        mask = key_mask("TransformerLM", attention_mask, (ids.shape[0], S), letter=letter)
        bias = position_bias(
            self.config.position,
            self.relative_bias,
            self.config.num_heads,
            T,
            S,
            offset=offset,
            causal=True,
        )
        for block in self.blocks:
            h = block(
                h,
                mask=mask,
                bias=bias,
                is_causal=not decode,
                decode=decode,
                deterministic=deterministic,
            )
        h = self.final_norm(h)
        if self.lm_head is not None:
            return self.lm_head(h)
        return self.token_embedding.attend(h)
