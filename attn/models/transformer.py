"""The encoder-decoder transformer (Vaswani et al. 2017, "Attention Is All You Need").

    x_0 = Dropout(√D · E_src[src] + PE),   x_l = EncoderBlock_l(x_{l-1}),   m = [LN](x_L)
    y_0 = Dropout(√D · E_tgt[tgt] + PE),   y_l = DecoderBlock_l(y_{l-1}, m),  h = [LN](y_L)
    logits = h E_tgtᵀ   (tied output, the paper's choice)   or   h W_out

Encoder blocks: self-attention over the source (padded positions masked) and an MLP. Decoder
blocks: causal self-attention, cross-attention to the encoder output m, and an MLP. Each sublayer
sits in a residual connection with a LayerNorm after it (post-LN, the paper) or before it
(pre-LN, Xiong et al. 2020); the optional final LayerNorms [LN] after each stack are what
`torch.nn.Transformer` always adds and what pre-LN needs. PE is the sinusoidal encoding of the
paper or a learned table; `position` also offers none, rotary, ALiBi and T5 relative biases in
the self-attention of both stacks (cross-attention has no positions; see
`attn.models.position_kinds`). In the paper's models one embedding matrix serves the source, the
target and the output projection (a shared BPE vocabulary), and the embeddings are multiplied
by √D.

Cached decoding: `init_cache(batch, max_length, encoded, src_mask)` allocates the self-attention
caches of every decoder block and projects the encoder output to the cross-attention keys and
values once; then `decode(tgt_chunk, None, decode=True)` for a prompt of any length and for each
new token; `stepper()` packages that for `attn.decoding`.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from attn.kernels.masks import key_mask
from attn.kernels.validation import (
    check_float,
    check_int,
    check_rank,
    check_token_ids,
)
from attn.layers.blocks import TransformerBlock
from attn.models.inputs import check_fits
from attn.models.position_kinds import (
    absolute_positions,
    position_bias,
    relative_bias_module,
)
from attn.models.transformer_config import TransformerConfig
from attn.models.transformer_stepper import TransformerStepper
from attn.models.variants import dtype_of
from attn.typing import Array, ArrayLike


class Transformer(nnx.Module):
    """Encoder-decoder transformer (Vaswani et al. 2017): `Transformer(src[B, S], tgt[B, T]) ->
    logits[B, T, V]`.

    Submodules: `source_embedding` (`nnx.Embed`), `target_embedding` (absent when the embeddings
    are shared: `source_embedding` serves both), `encoder_positions`, `decoder_positions`
    (`SinusoidalPositions` or `LearnedPositions`, absent for the other position kinds),
    `encoder_relative_bias`, `decoder_relative_bias` (`RelativePositionBias`, position="t5"
    only), `encoder_blocks` and `decoder_blocks` (lists of
    `TransformerBlock`, the decoder's with cross-attention), `encoder_norm` and `decoder_norm`
    (final LayerNorms, absent without `final_norm`), `output_proj` (`nnx.Linear` [D, V] without
    bias, absent when the output is tied to the target embedding).

    The stacks run on embeddings too (`encode_embeddings`, `decode_embeddings`), which is what
    `torch.nn.Transformer` computes.
    """

    def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
        self.config = config
        dtype, param_dtype = dtype_of(config.dtype), dtype_of(config.param_dtype)
        common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        D = config.model_dim
        # Unit-variance embeddings after the √D scale (tensor2tensor); N(0, 1) without it.
        init = nnx.initializers.normal(D**-0.5 if config.scale_embeddings else 1.0)
        self.source_embedding = nnx.Embed(config.vocab_size, D, embedding_init=init, **common)
        self.target_embedding = nnx.data(
            None
            if config.share_embeddings
            else nnx.Embed(config.output_vocab_size, D, embedding_init=init, **common)
        )

        kind, tables = config.position, dict(rngs=rngs, param_dtype=param_dtype)
        absolute = functools.partial(
            absolute_positions, kind, config.max_length, D, dtype=dtype or jnp.float32, **tables
        )
        relative = functools.partial(relative_bias_module, kind, config.num_heads, **tables)
        self.encoder_positions = nnx.data(absolute())
        self.decoder_positions = nnx.data(absolute())
        self.encoder_relative_bias = nnx.data(relative(causal=False))
        self.decoder_relative_bias = nnx.data(relative(causal=True))
        self.dropout = nnx.Dropout(config.dropout_rate, rngs=rngs)
        rotary_base = config.rotary_base if config.position == "rotary" else None

        def block(cross_attention: bool) -> TransformerBlock:
            return TransformerBlock.from_config(
                config,
                norm_first=config.norm_first,
                cross_attention=cross_attention,
                rotary_base=rotary_base,
                rngs=rngs,
            )

        norm = functools.partial(nnx.LayerNorm, D, epsilon=config.layer_norm_eps, **common)
        self.encoder_blocks = nnx.List([block(False) for _ in range(config.num_encoder_layers)])
        self.encoder_norm = nnx.data(norm() if config.has_final_norm else None)
        self.decoder_blocks = nnx.List([block(True) for _ in range(config.num_decoder_layers)])
        self.decoder_norm = nnx.data(norm() if config.has_final_norm else None)
        self.output_proj = nnx.data(
            None
            if config.tie_output
            else nnx.Linear(D, config.output_vocab_size, use_bias=False, **common)
        )
        self.cached_src_mask: nnx.Cache | None = nnx.data(None)

    # ------------------------------------------------------------------ embeddings

    @property
    def target_table(self) -> nnx.Embed:
        """The target token embedding (the source one when the embeddings are shared)."""
        return self.source_embedding if self.target_embedding is None else self.target_embedding

    def embed_source(self, src: ArrayLike, *, deterministic: bool | None = None) -> Array:
        """Dropout(√D · E_src[src] + PE): src int [B, S] -> [B, S, D]."""
        src = self._check_ids("src", src, "S")
        return self._embed(self.source_embedding, self.encoder_positions, src, 0, deterministic)

    def embed_target(
        self, tgt: ArrayLike, *, offset: int | Array = 0, deterministic: bool | None = None
    ) -> Array:
        """Dropout(√D · E_tgt[tgt] + PE(offset + t)): tgt int [B, T] -> [B, T, D]."""
        tgt = self._check_ids("tgt", tgt, "T")
        return self._embed(self.target_table, self.decoder_positions, tgt, offset, deterministic)

    def _embed(self, table, positions, ids, offset, deterministic) -> Array:
        h = table(ids)  # [B, T] -> [B, T, D]
        if self.config.scale_embeddings:
            h = h * jnp.asarray(math.sqrt(self.config.model_dim), h.dtype)
        if positions is not None:
            h = h + positions(ids.shape[1], offset=offset).astype(h.dtype)
        return self.dropout(h, deterministic=deterministic)

    # ------------------------------------------------------------------ encoder

    def encode(
        self,
        src: ArrayLike,
        src_mask: ArrayLike | None = None,
        *,
        deterministic: bool | None = None,
    ) -> Array:
        """Encode source ids.

        Args:
          src: int [B, S] source token ids.
          src_mask: [B, S], 1/True = real token, 0/False = padding (never attended to).
          deterministic: no dropout when True, dropout when False; None: the mode that
            `.train()` / `.eval()` set.

        Returns:
          encoded [B, S, D], after the final encoder norm where there is one.
        """
        x = self.embed_source(src, deterministic=deterministic)
        return self.encode_embeddings(x, src_mask, deterministic=deterministic)

    def encode_embeddings(
        self, x: ArrayLike, src_mask: ArrayLike | None = None, *, deterministic: bool | None = None
    ) -> Array:
        """The encoder stack on embeddings: m = [LN](Block_L(... Block_1(x))), as
        `torch.nn.Transformer.encoder(x, src_key_padding_mask=~src_mask)`.

        Args:
          x: float [B, S, D] source embeddings (positions already added).
          src_mask: [B, S], 1/True = real token.
          deterministic: no dropout when True, dropout when False; None: the mode that
            `.train()` / `.eval()` set.

        Returns:
          [B, S, D].
        """
        x = self._check_hidden("Transformer.encode_embeddings", "x", x, "S")
        mask = key_mask("Transformer", src_mask, x.shape[:2], name="src_mask", letter="S")
        S = x.shape[1]
        bias = self._position_bias(self.encoder_relative_bias, S, S, 0, causal=False)
        for block in self.encoder_blocks:
            x = block(x, mask=mask, bias=bias, deterministic=deterministic)
        return x if self.encoder_norm is None else self.encoder_norm(x)

    # ------------------------------------------------------------------ decoder

    def decode(
        self,
        tgt: ArrayLike,
        encoded: ArrayLike | None = None,
        src_mask: ArrayLike | None = None,
        tgt_mask: ArrayLike | None = None,
        *,
        decode: bool = False,
        deterministic: bool | None = None,
    ) -> Array:
        """Next-token logits of target ids given the encoder output.

        Args:
          tgt: int [B, T] target ids (shifted right: position t predicts token t + 1).
          encoded: [B, S, D] encoder output; may be None when decoding from the caches of
            `init_cache` (which hold its cross-attention keys and values).
          src_mask: [B, S], 1/True = real source token; when decoding, default: the mask given
            to `init_cache`.
          tgt_mask: [B, T] target padding, 1/True = real token ([B, cache length] when decoding).
          decode: continue the cached sequence (`init_cache` first); `tgt` may hold several
            tokens (a prompt) or one.
          deterministic: no dropout when True, dropout when False; None: the mode that
            `.train()` / `.eval()` set.

        Returns:
          logits [B, T, V] in the compute dtype.
        """
        offset = self._check_cache("Transformer.decode")[2] if decode else 0
        y = self.embed_target(tgt, offset=offset, deterministic=deterministic)
        h = self.decode_embeddings(
            y, encoded, src_mask, tgt_mask, decode=decode, deterministic=deterministic
        )
        return self.logits(h)

    def decode_embeddings(
        self,
        y: ArrayLike,
        encoded: ArrayLike | None = None,
        src_mask: ArrayLike | None = None,
        tgt_mask: ArrayLike | None = None,
        *,
        decode: bool = False,
        deterministic: bool | None = None,
    ) -> Array:
        """The decoder stack on embeddings: h = [LN](Block_L(... Block_1(y, m), m)), as
        `torch.nn.Transformer.decoder(y, m, tgt_mask=causal, tgt_key_padding_mask=~tgt_mask,
        memory_key_padding_mask=~src_mask)`.

        Args:
          y: float [B, T, D] target embeddings (positions already added).
          encoded: [B, S, D] encoder output m (None when decoding from the caches).
          src_mask: [B, S], 1/True = real source token.
          tgt_mask: [B, T] ([B, cache length] when decoding), 1/True = real target token.
          decode: use the caches of `init_cache`.
          deterministic: no dropout when True, dropout when False; None: the mode that
            `.train()` / `.eval()` set.

        Returns:
          hidden [B, T, D], after the final decoder norm where there is one.
        """
        fn = "Transformer.decode_embeddings"
        y = self._check_hidden(fn, "y", y, "T")
        B, T = y.shape[:2]
        if decode:
            cache_length, S, index = self._check_cache(fn, B, T)
            if encoded is not None:
                self._check_encoded(fn, encoded, B, S)
            encoded = None  # the cross-attention keys and values come from the cache
            self_mask = key_mask(
                "Transformer", tgt_mask, (B, cache_length), name="tgt_mask", letter="cache length"
            )
            bias = self._position_bias(
                self.decoder_relative_bias, T, cache_length, index, causal=True
            )
        else:
            if encoded is None:
                raise ValueError(
                    f"{fn}: encoded [B, S, D] is required unless decoding from the caches "
                    "(init_cache(batch, max_length, encoded, src_mask), then decode=True)"
                )
            encoded = self._check_encoded(fn, encoded, B)
            S = encoded.shape[1]
            self_mask = key_mask("Transformer", tgt_mask, (B, T), name="tgt_mask", letter="T")
            bias = self._position_bias(self.decoder_relative_bias, T, T, 0, causal=True)
        context_mask = key_mask("Transformer", src_mask, (B, S), name="src_mask", letter="S")
        if context_mask is None and decode and self.cached_src_mask is not None:
            context_mask = self.cached_src_mask[...]
        for block in self.decoder_blocks:
            y = block(
                y,
                encoded,
                mask=self_mask,
                bias=bias,
                is_causal=not decode,  # a self-attention cache applies its own causal offset
                context_mask=context_mask,
                decode=decode,
                deterministic=deterministic,
            )
        return y if self.decoder_norm is None else self.decoder_norm(y)

    def _position_bias(self, relative, T: int, S: int, offset, *, causal: bool) -> Array | None:
        """The self-attention logit bias [1, N, T, S] of ALiBi or T5 (None for other kinds)."""
        kind, N = self.config.position, self.config.num_heads
        return position_bias(kind, relative, N, T, S, offset=offset, causal=causal)

    def logits(self, hidden: ArrayLike) -> Array:
        """hidden [B, T, D] -> logits [B, T, V]: h E_tgtᵀ when tied, h W_out otherwise."""
        if self.output_proj is not None:
            return self.output_proj(hidden)
        return self.target_table.attend(hidden)

    # ------------------------------------------------------------------ full model

    def __call__(
        self,
        src: ArrayLike,
        tgt: ArrayLike,
        src_mask: ArrayLike | None = None,
        tgt_mask: ArrayLike | None = None,
        *,
        deterministic: bool | None = None,
    ) -> Array:
        """Teacher-forced logits: decode(tgt, encode(src, src_mask), src_mask, tgt_mask).

        Args:
          src: int [B, S] source ids.
          tgt: int [B, T] target ids, shifted right (position t predicts token t + 1).
          src_mask: [B, S], 1/True = real source token.
          tgt_mask: [B, T], 1/True = real target token.
          deterministic: no dropout when True, dropout when False; None: the mode that
            `.train()` / `.eval()` set.

        Returns:
          logits [B, T, V].
        """
        encoded = self.encode(src, src_mask, deterministic=deterministic)
        return self.decode(tgt, encoded, src_mask, tgt_mask, deterministic=deterministic)

    # ------------------------------------------------------------------ cache

    def init_cache(
        self,
        batch: int,
        max_length: int | None,
        encoded: ArrayLike,
        src_mask: ArrayLike | None = None,
    ) -> None:
        """Prepare cached decoding of up to `max_length` target tokens.

        Allocates the self-attention key/value caches [B, max_length, K, H] of every decoder
        block and projects `encoded` to each block's cross-attention keys and values [B, S, K, H]
        once (`MultiHeadAttention.init_cross_cache`); `src_mask` is kept for later `decode` calls.

        Args:
          batch: B.
          max_length: the longest target (prompt + generated tokens); None: `config.max_length`.
          encoded: [B, S, D] encoder output.
          src_mask: [B, S], 1/True = real source token.
        """
        fn = "Transformer.init_cache"
        max_length = self.config.max_length if max_length is None else max_length
        max_length = check_int(fn, "max_length", max_length, minimum=1)
        if self.config.position == "learned":
            check_fits(fn, "cache length", max_length, self.config.max_length)
        encoded = self._check_encoded(fn, encoded, batch)
        mask = key_mask(fn, src_mask, encoded.shape[:2], name="src_mask", letter="S")
        for block in self.decoder_blocks:
            block.self_attention.init_cache(batch, max_length)
            block.cross_attention.init_cross_cache(encoded)
        self.cached_src_mask = None if mask is None else nnx.Cache(mask)

    def clear_cache(self) -> None:
        """Drop the decoding caches."""
        for block in self.decoder_blocks:
            block.self_attention.clear_cache()
            block.cross_attention.clear_cache()
        self.cached_src_mask = None

    def stepper(self) -> TransformerStepper:
        """The decoding step of this model for `attn.decoding` (`greedy`, `sample`,
        `beam_search`): encode the source, prefill the prompt, then one token per step."""
        return TransformerStepper(self)

    def _check_cache(self, fn: str, B: int | None = None, T: int = 0) -> tuple[int, int, Array]:
        """(cache length, S, position of the next target token) of the decoding caches, after
        checking that `init_cache` ran and that they hold a batch of B and room for T more."""
        attention = self.decoder_blocks[0].self_attention
        source = self.decoder_blocks[0].cross_attention.cross_key
        if attention.cache_index is None or source is None:
            raise ValueError(
                f"{fn}: decode=True needs the caches; call "
                "init_cache(batch, max_length, encoded, src_mask) first"
            )
        cache_length, index = attention.cached_key.shape[1], attention.cache_index[...]
        if not isinstance(index, jax.core.Tracer) and int(index) + T > cache_length:
            raise ValueError(
                f"{fn}: {T} more tokens at position {int(index)} overrun the cache of "
                f"max_length={cache_length} given to init_cache"
            )
        if B is not None and source.shape[0] != B:
            raise ValueError(f"{fn}: the caches hold a batch of B={source.shape[0]}, got {B}")
        return cache_length, source.shape[1], index

    # ------------------------------------------------------------------ checks

    def _check_ids(self, name: str, ids: ArrayLike, letter: str) -> Array:
        vocab = self.config.vocab_size if name == "src" else self.config.output_vocab_size
        ids = check_token_ids("Transformer", name, ids, vocab, letter)
        if self.config.position == "learned":
            check_fits(
                "Transformer", f"{name} length {letter}", ids.shape[1], self.config.max_length
            )
        return ids

    def _check_hidden(self, fn: str, name: str, x: ArrayLike, letter: str) -> Array:
        """`x` as a float array of embeddings [B, letter, D]."""
        check_float(fn, name, x)
        check_rank(fn, name, x, ("B", letter, "D"), (None, None, self.config.model_dim))
        return jnp.asarray(x)

    def _check_encoded(self, fn: str, encoded: ArrayLike, B: int, S: int | None = None) -> Array:
        """`encoded` as an array [B, S, D]; S is its own length unless given."""
        encoded = jnp.asarray(encoded)
        if S is None and encoded.ndim == 3:
            S = encoded.shape[1]
        check_rank(fn, "encoded", encoded, ("B", "S", "D"), (B, S, self.config.model_dim))
        return encoded
