"""The convolutional contrast to attention: a dilated causal convolution stack (WaveNet) and a
convolutional encoder-decoder with attention in the decoder (ConvS2S).

    WaveNet layer (van den Oord et al. 2016):
      z = tanh(W_f *_d x) ⊙ σ(W_g *_d x),   x' = x + W_r z,   skip_l = W_s z,   out = Σ_l skip_l
    ConvS2S block (Gehring et al. 2017):
      h' = (GLU(W * h) [+ attention] + h) √½,   GLU([a, b]) = a ⊙ σ(b)

A convolution of width k with dilation d sees k positions spaced d apart, so L stacked layers see
`receptive_field(k, dilations)` positions: a path between positions n apart needs ⌈log_k n⌉
dilated layers, ⌈(n - 1)/(k - 1)⌉ plain ones, and one self-attention layer (see
`attn.models.path_length`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from attn.kernels.attention import masked_softmax
from attn.kernels.validation import check_dropout_rate, check_positive, check_token_ids
from attn.models.path_length import receptive_field
from attn.models.variants import NamedVariants, dtype_of
from attn.typing import Array, ArrayLike, DType

# Sums of two branches are scaled by √0.5 to keep their variance (Gehring et al. 2017).
_RESIDUAL_SCALE = math.sqrt(0.5)


def _glu(x: Array) -> Array:
    """GLU([a, b]) = a ⊙ σ(b) over the last axis (Dauphin et al. 2017): [..., 2D] -> [..., D]."""
    a, b = jnp.split(x, 2, axis=-1)
    return a * jax.nn.sigmoid(b)


class DilatedCausalConvStack(nnx.Module):
    """WaveNet's stack of gated, dilated, causal 1-D convolutions (van den Oord et al. 2016).

        x_0 = x W_in,   z_l = tanh(W_f,l *_{d_l} x_l) ⊙ σ(W_g,l *_{d_l} x_l)
        x_{l+1} = x_l + z_l W_r,l,   out = Σ_l z_l W_s,l

    `*_d` is a causal convolution of width k and dilation d: output t sees inputs t, t - d, ...,
    t - (k - 1) d (zeros before the start), so output t depends on the inputs
    t - r + 1 .. t only, r = `receptive_field` = 1 + Σ_l (k - 1) d_l. The default dilations
    1, k, k², ... (WaveNet's 1, 2, 4, ... for k = 2) reach k^L positions with L layers. The input
    and output projections are 1×1, so they do not widen the receptive field.

    Submodules: `input_proj` (`nnx.Linear` [C, R]), `convs` (list of `nnx.Conv` [k, R, 2R], the
    filter and gate halves), `residual_projs` ([R, R], none after the last layer, whose residual
    output is unused) and `skip_projs` ([R, C_skip]).
    """

    def __init__(
        self,
        in_channels: int,
        *,
        residual_channels: int = 32,
        skip_channels: int = 32,
        kernel_size: int = 2,
        num_layers: int | None = None,
        dilations: Sequence[int] | None = None,
        dtype: DType | None = None,
        param_dtype: DType = jnp.float32,
        rngs: nnx.Rngs,
    ):
        """
        Args:
          in_channels: C, channels of the input.
          residual_channels: R, channels of the residual stream.
          skip_channels: C_skip, channels of the output (the sum of the skip connections).
          kernel_size: k >= 1, width of every dilated convolution.
          num_layers: L, with the dilations 1, k, ..., k^(L-1); give this or `dilations`.
          dilations: d_l >= 1 of each layer (e.g. WaveNet's 1, 2, ..., 512 repeated).
          dtype: compute dtype; default: that of the inputs and parameters.
          param_dtype: parameter dtype.
          rngs: parameter random stream.
        """
        owner = "DilatedCausalConvStack"
        if (num_layers is None) == (dilations is None):
            raise ValueError(
                f"{owner}: give exactly one of num_layers and dilations, got "
                f"num_layers={num_layers!r}, dilations={dilations!r}"
            )
        if dilations is None:
            check_positive(owner, "num_layers", num_layers)
            dilations = [kernel_size**layer for layer in range(num_layers)]
        if len(dilations) == 0:
            raise ValueError(f"{owner}: dilations must name at least one layer, got {dilations!r}")
        check_positive(owner, "in_channels", in_channels)
        check_positive(owner, "residual_channels", residual_channels)
        check_positive(owner, "skip_channels", skip_channels)
        check_positive(owner, "kernel_size", kernel_size)
        self.receptive_field = receptive_field(kernel_size, list(dilations))  # validates them
        self.in_channels, self.kernel_size = in_channels, kernel_size
        self.dilations = tuple(dilations)
        common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        R = residual_channels
        self.input_proj = nnx.Linear(in_channels, R, **common)
        self.convs = nnx.List(
            [
                nnx.Conv(
                    R,
                    2 * R,
                    kernel_size=(kernel_size,),
                    padding=[((kernel_size - 1) * d, 0)],  # all padding on the left: causal
                    kernel_dilation=(d,),
                    **common,
                )
                for d in self.dilations
            ]
        )
        self.residual_projs = nnx.List([nnx.Linear(R, R, **common) for _ in self.dilations[:-1]])
        self.skip_projs = nnx.List([nnx.Linear(R, skip_channels, **common) for _ in self.dilations])

    def __call__(self, x: ArrayLike) -> Array:
        """The sum of the skip connections.

        Args:
          x: [B, T, C] float inputs.

        Returns:
          [B, T, C_skip], output t depending on inputs t - receptive_field + 1 .. t only.
        """
        x = jnp.asarray(x)
        if x.ndim != 3 or x.shape[-1] != self.in_channels or x.shape[1] < 1:
            raise ValueError(
                f"DilatedCausalConvStack: x must have shape [B, T, C] with T >= 1 and "
                f"C={self.in_channels}, got shape {x.shape}"
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"DilatedCausalConvStack: x must be floating-point, got {x.dtype}")
        hidden = self.input_proj(x)
        out = None
        for layer, conv in enumerate(self.convs):
            filtered, gate = jnp.split(conv(hidden), 2, axis=-1)
            z = jnp.tanh(filtered) * jax.nn.sigmoid(gate)
            skip = self.skip_projs[layer](z)
            out = skip if out is None else out + skip
            if layer < len(self.residual_projs):
                hidden = hidden + self.residual_projs[layer](z)
        return out


@dataclasses.dataclass(frozen=True)
class ConvS2SConfig(NamedVariants):
    """Configuration of `ConvS2S`; `ConvS2SConfig.named("wmt16-en-ro")` for the paper's 20-layer
    En-Ro model (Gehring et al. 2017: 20 encoder and 20 decoder layers, width 512, kernel 3,
    embeddings 512; `vocab_size` follows the tokenizer)."""

    vocab_size: int = 256
    num_encoder_layers: int = 4
    num_decoder_layers: int = 4
    model_dim: int = 128  # D, channels of the convolutions
    embed_dim: int = 128  # E, embeddings, attention and the decoder output
    kernel_size: int = 3
    max_length: int = 256
    dropout_rate: float = 0.0
    dtype: str | None = None
    param_dtype: str = "float32"

    VARIANTS: ClassVar[dict[str, dict]] = {
        "tiny": dict(num_encoder_layers=2, num_decoder_layers=2, model_dim=64, embed_dim=32),
        "wmt16-en-ro": dict(
            num_encoder_layers=20,
            num_decoder_layers=20,
            model_dim=512,
            embed_dim=512,
            kernel_size=3,
            max_length=1024,
        ),
    }

    def __post_init__(self):
        owner = "ConvS2SConfig"
        for name in (
            "vocab_size",
            "num_encoder_layers",
            "num_decoder_layers",
            "model_dim",
            "embed_dim",
            "kernel_size",
            "max_length",
        ):
            check_positive(owner, name, getattr(self, name))
        check_dropout_rate(owner, "dropout_rate", self.dropout_rate)


class ConvS2S(nnx.Module):
    """Convolutional sequence to sequence model (Gehring et al. 2017):
    `ConvS2S(src[B, S], tgt[B, T]) -> logits[B, T, V]`.

        encoder: e = E_src[src] + P_src,   h_0 = e W_in,   h_l = (GLU(W_l * h_{l-1}) + h_{l-1}) √½,
                 z = h_L W_out   (convolutions centred: every position sees both sides)
        decoder: g = E_tgt[tgt] + P_tgt,   h_0 = g W_in,   per layer l:
                 y = GLU(W_l * h_{l-1}) (causal),   d = (y W_d + g) √½,
                 a = softmax_j(d · z_j),   c = √m Σ_j a_j (z_j + e_j)   (m source tokens),
                 h_l = ((c W_c + y) √½ + h_{l-1}) √½,
        logits = (h_L W_out) W_V

    Every decoder layer attends to the encoder output z with values z + e (the source embeddings
    add point information). Padded source positions are zeroed before each encoder convolution,
    so they change no real position, and get no attention.

    Submodules: `source_embedding`, `target_embedding` ([V, E]), `source_positions`,
    `target_positions` ([max_length, E], `nnx.Embed`), `encoder_in` / `decoder_in` ([E, D]),
    `encoder_convs` / `decoder_convs` (lists of `nnx.Conv` [k, D, 2D]), `encoder_out` /
    `decoder_out` ([D, E]), `attention_in` ([D, E]) and `attention_out` ([E, D]) per decoder
    layer, `output_proj` ([E, V]).

    Looking inside: with `sow_weights` on, `decode` sows the attention weights [B, T, S] of decoder
    layer l as "alignment" on `attention_in[l]` (read them with
    `attn.layers.collect_intermediates`).
    """

    def __init__(self, config: ConvS2SConfig, *, sow_weights: bool = False, rngs: nnx.Rngs):
        self.config = config
        self.sow_weights = sow_weights
        dtype, param_dtype = dtype_of(config.dtype), dtype_of(config.param_dtype)
        common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        V, E, D, k = config.vocab_size, config.embed_dim, config.model_dim, config.kernel_size
        embed = dict(embedding_init=nnx.initializers.normal(0.1), **common)  # as in the paper
        self.source_embedding = nnx.Embed(V, E, **embed)
        self.target_embedding = nnx.Embed(V, E, **embed)
        self.source_positions = nnx.Embed(config.max_length, E, **embed)
        self.target_positions = nnx.Embed(config.max_length, E, **embed)
        self.dropout = nnx.Dropout(config.dropout_rate, rngs=rngs)

        def convs(count: int, padding: tuple[int, int]) -> nnx.List:
            return nnx.List(
                [nnx.Conv(D, 2 * D, (k,), padding=[padding], **common) for _ in range(count)]
            )

        self.encoder_in = nnx.Linear(E, D, **common)
        self.encoder_convs = convs(config.num_encoder_layers, ((k - 1) // 2, k // 2))
        self.encoder_out = nnx.Linear(D, E, **common)
        self.decoder_in = nnx.Linear(E, D, **common)
        self.decoder_convs = convs(config.num_decoder_layers, (k - 1, 0))  # causal
        layers = range(config.num_decoder_layers)
        self.attention_in = nnx.List([nnx.Linear(D, E, **common) for _ in layers])
        self.attention_out = nnx.List([nnx.Linear(E, D, **common) for _ in layers])
        self.decoder_out = nnx.Linear(D, E, **common)
        self.output_proj = nnx.Linear(E, V, **common)

    # ------------------------------------------------------------------ checks

    def _check_ids(self, name: str, ids: ArrayLike, letter: str) -> Array:
        ids = check_token_ids("ConvS2S", name, ids, self.config.vocab_size, letter)
        if not 1 <= ids.shape[1] <= self.config.max_length:
            raise ValueError(
                f"ConvS2S: {name} [B, {letter}] must have 1 <= {letter} <= max_length="
                f"{self.config.max_length}, got shape {ids.shape}"
            )
        return ids

    def _check_src_mask(self, src_mask: ArrayLike | None, shape: tuple[int, int]) -> Array | None:
        if src_mask is None:
            return None
        if tuple(jnp.shape(src_mask)) != shape:
            raise ValueError(
                f"ConvS2S: src_mask must have shape [B, S] = {list(shape)} (1 = real token, "
                f"0 = padding), got shape {jnp.shape(src_mask)}"
            )
        return jnp.asarray(src_mask).astype(jnp.bool_)

    # ------------------------------------------------------------------ encoder / decoder

    def encode(
        self,
        src: ArrayLike,
        src_mask: ArrayLike | None = None,
        *,
        deterministic: bool | None = None,
    ) -> tuple[Array, Array]:
        """Encode the source.

        Args:
          src: int [B, S] source token ids.
          src_mask: [B, S], 1/True = real token, 0/False = padding; None = no padding.
          deterministic: no dropout when True, dropout when False; None: the mode that
            `.train()` / `.eval()` set.

        Returns:
          (z [B, S, E], z + e [B, S, E]): the attention keys and values of every decoder layer.
        """
        src = self._check_ids("src", src, "S")
        mask = self._check_src_mask(src_mask, src.shape)
        e = self.source_embedding(src) + self.source_positions(jnp.arange(src.shape[1]))
        e = self.dropout(e, deterministic=deterministic)
        hidden = self.encoder_in(e)
        for conv in self.encoder_convs:
            if mask is not None:
                hidden = jnp.where(mask[..., None], hidden, 0.0)
            residual = hidden
            hidden = self.dropout(hidden, deterministic=deterministic)
            hidden = (_glu(conv(hidden)) + residual) * _RESIDUAL_SCALE
        z = self.encoder_out(hidden)
        return z, z + e

    def set_view(self, sow_weights: bool | None = None) -> None:
        """Used by `nnx.view(model, sow_weights=...)` to switch sowing in every such layer."""
        if sow_weights is not None:
            self.sow_weights = sow_weights

    def decode(
        self,
        tgt: ArrayLike,
        encoded: tuple[Array, Array],
        src_mask: ArrayLike | None = None,
        *,
        deterministic: bool | None = None,
    ) -> Array:
        """Decode the target (teacher forcing): logits for the token after each position.

        Args:
          tgt: int [B, T] target token ids (shifted right).
          encoded: (z, z + e) from `encode`, each [B, S, E].
          src_mask: [B, S], 1/True = real source token; None = no padding.
          deterministic: no dropout when True, dropout when False; None: the mode that
            `.train()` / `.eval()` set.

        Returns:
          logits [B, T, V], position t depending on tgt[:, :t + 1] only.
        """
        tgt = self._check_ids("tgt", tgt, "T")
        keys, values = encoded
        E = self.config.embed_dim
        for name, x in (("encoded keys z", keys), ("encoded values z + e", values)):
            if jnp.ndim(x) != 3 or x.shape[0] != tgt.shape[0] or x.shape[2] != E:
                raise ValueError(
                    f"ConvS2S.decode: {name} must have shape [B, S, E] = "
                    f"[{tgt.shape[0]}, ?, {E}], got shape {jnp.shape(x)}"
                )
        if values.shape != keys.shape:
            raise ValueError(
                f"ConvS2S.decode: encoded keys {keys.shape} and values {values.shape} differ"
            )
        mask = self._check_src_mask(src_mask, keys.shape[:2])
        if mask is None:
            mask = jnp.ones(keys.shape[:2], jnp.bool_)
        source_count = jnp.sum(mask, axis=-1).astype(jnp.float32)[:, None, None]  # m [B, 1, 1]
        g = self.target_embedding(tgt) + self.target_positions(jnp.arange(tgt.shape[1]))
        g = self.dropout(g, deterministic=deterministic)
        hidden = self.decoder_in(g)
        for layer, conv in enumerate(self.decoder_convs):
            residual = hidden
            hidden = self.dropout(hidden, deterministic=deterministic)
            y = _glu(conv(hidden))
            d = (self.attention_in[layer](y) + g) * _RESIDUAL_SCALE
            logits = jnp.einsum("BTE,BSE->BTS", d, keys, preferred_element_type=jnp.float32)
            weights = masked_softmax(logits, mask[:, None, :])
            context = jnp.einsum("BTS,BSE->BTE", weights.astype(values.dtype), values)
            context = context * jnp.sqrt(source_count).astype(context.dtype)  # m √(1/m)
            y = (self.attention_out[layer](context) + y) * _RESIDUAL_SCALE
            hidden = (y + residual) * _RESIDUAL_SCALE
            if self.sow_weights:
                self.attention_in[layer].sow(nnx.Intermediate, "alignment", weights)
        logits = self.output_proj(
            self.dropout(self.decoder_out(hidden), deterministic=deterministic)
        )
        return logits

    def __call__(
        self,
        src: ArrayLike,
        tgt: ArrayLike,
        src_mask: ArrayLike | None = None,
        *,
        deterministic: bool | None = None,
    ) -> Array:
        """logits [B, T, V] of `decode(tgt, encode(src, src_mask), src_mask)`."""
        encoded = self.encode(src, src_mask, deterministic=deterministic)
        return self.decode(tgt, encoded, src_mask, deterministic=deterministic)
