"""`TransformerConfig`: the fields and named variants of the encoder-decoder `Transformer`."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from attn.kernels.validation import check_positive
from attn.models.position_kinds import check_position
from attn.models.variants import NamedVariants, check_transformer_fields

# The paper's WMT 2014 English-German models: a shared source-target BPE vocabulary of about
# 37000 tokens, shared and tied embeddings, sinusoidal positions, post-LN, ReLU.
_PAPER = dict(vocab_size=37000, max_length=512)


def _variant(layers: int, num_heads: int, model_dim: int, mlp_dim: int, **fields) -> dict:
    """The fields of a named variant with `layers` blocks in each stack."""
    stacks = dict(num_encoder_layers=layers, num_decoder_layers=layers)
    return dict(stacks, num_heads=num_heads, model_dim=model_dim, mlp_dim=mlp_dim, **fields)


@dataclasses.dataclass(frozen=True)
class TransformerConfig(NamedVariants):
    """Configuration of `Transformer`; `TransformerConfig.named("base")` for the paper's base model.

    Vocabularies: `vocab_size` is the source vocabulary, and the target one too unless
    `target_vocab_size` is given. `share_embeddings` uses one table for source and target (the
    vocabularies must then be equal); `tie_output` computes the logits with the target embedding
    table instead of a separate output matrix.

    Fields:
      vocab_size: source vocabulary size (and target, unless `target_vocab_size`).
      target_vocab_size: target vocabulary size V, when it differs from the source one.
      num_encoder_layers, num_decoder_layers: blocks in each stack.
      num_heads: N query heads; num_kv_heads: K key/value heads (K divides N; default N).
      model_dim: D; mlp_dim: F.
      max_length: rows of a learned position table, and the default cache length.
      dropout_rate: on the embeddings and on every sublayer output (residual dropout).
      attention_dropout_rate: on the attention weights.
      activation: MLP activation, a name in `attn.layers.feedforward.ACTIVATIONS`.
      norm_first: pre-LN when True; post-LN (the paper) when False.
      final_norm: a LayerNorm after the last encoder and the last decoder block; default (None):
        True for pre-LN, False for post-LN. Pre-LN needs it.
      layer_norm_eps: epsilon of every LayerNorm (1e-5 as in torch).
      position: the self-attention positions of both stacks, one of
        `attn.models.position_kinds.POSITION_KINDS`: "sinusoidal" (the paper), "learned"
        (separate tables for encoder and decoder), "rotary", "alibi" (symmetric in the
        encoder, causal in the decoder), "t5" (a bias table per stack) or "none".
      rotary_base: the wavelength base of rotary positions.
      share_embeddings: one token embedding table for source and target.
      tie_output: logits = h E_tgtᵀ; otherwise a separate output matrix [D, V] (no bias).
      scale_embeddings: multiply the token embeddings by √D (the paper).
      use_bias: biases in the attention projections and MLPs.
      implementation: attention implementation (see `attn.kernels.dot_product_attention`).
      dtype: compute dtype name (None: that of the parameters); param_dtype: parameter dtype name.
    """

    vocab_size: int = 256
    target_vocab_size: int | None = None
    num_encoder_layers: int = 2
    num_decoder_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int | None = None
    model_dim: int = 128
    mlp_dim: int = 512
    max_length: int = 256
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    activation: str = "relu"
    norm_first: bool = False
    final_norm: bool | None = None
    layer_norm_eps: float = 1e-5
    position: str = "sinusoidal"
    rotary_base: float = 10000.0
    share_embeddings: bool = True
    tie_output: bool = True
    scale_embeddings: bool = True
    use_bias: bool = True
    implementation: str | None = None
    dtype: str | None = None
    param_dtype: str = "float32"

    VARIANTS: ClassVar[dict[str, dict]] = {
        "tiny": _variant(2, 4, 64, 128, max_length=128),
        "small": _variant(3, 4, 256, 1024, max_length=256, dropout_rate=0.1),
        "base": _variant(6, 8, 512, 2048, dropout_rate=0.1, **_PAPER),
        "big": _variant(6, 16, 1024, 4096, dropout_rate=0.3, **_PAPER),
    }

    def __post_init__(self):
        owner = "TransformerConfig"
        for name in ("vocab_size", "num_encoder_layers", "num_decoder_layers", "max_length"):
            check_positive(owner, name, getattr(self, name))
        if self.target_vocab_size is not None:
            check_positive(owner, "target_vocab_size", self.target_vocab_size)
        check_transformer_fields(owner, self)
        check_position(owner, self.position, self.model_dim, self.num_heads)
        if self.norm_first and self.final_norm is False:
            raise ValueError(
                f"{owner}: pre-LN (norm_first=True) needs final_norm=True: without it the output "
                "of each stack is an unnormalised residual stream"
            )
        if self.share_embeddings and self.output_vocab_size != self.vocab_size:
            raise ValueError(
                f"{owner}: share_embeddings=True needs one vocabulary, but vocab_size="
                f"{self.vocab_size} and target_vocab_size={self.target_vocab_size}; pass "
                "share_embeddings=False for separate source and target vocabularies"
            )

    @property
    def output_vocab_size(self) -> int:
        """V, the target vocabulary: the last axis of the logits."""
        return self.vocab_size if self.target_vocab_size is None else self.target_vocab_size

    @property
    def has_final_norm(self) -> bool:
        """Whether each stack ends with a LayerNorm (`final_norm`, default: `norm_first`)."""
        return self.norm_first if self.final_norm is None else self.final_norm
