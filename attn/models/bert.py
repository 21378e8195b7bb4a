"""Encoder-only transformer with masked-LM and classification heads: BERT (Devlin et al. 2019,
"BERT: Pre-training of Deep Bidirectional Transformers for Language Understanding").

    h_0 = Dropout(LN(E_tok[ids] + E_pos[0..T-1] + E_type[token_type_ids]))
    h_l = Block_l(h_{l-1})                       (post-LN, bidirectional: every token sees all)
    pooled = tanh(h_L[:, 0] W_p + b_p)           (the first, [CLS], token)
    MLM logits = LN(act(h_L W_t + b_t)) E_tokᵀ + b_V
    class logits = Dropout(pooled) W_c + b_c

The masked-LM decoder is tied to the token embeddings E_tok (as in BERT) unless
`tie_embeddings=False`. Padding: `attention_mask[B, T]` (1/True = real token) keeps every query
from attending to padded keys, so real tokens' hidden states do not depend on the padding.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax.numpy as jnp
from flax import nnx

from attn.kernels.masks import key_mask
from attn.kernels.validation import check_dropout_rate, check_positive, check_token_ids
from attn.layers.blocks import TransformerBlock
from attn.layers.feedforward import get_activation
from attn.layers.position import LearnedPositions
from attn.models.inputs import check_fits
from attn.models.variants import NamedVariants, check_transformer_fields, dtype_of
from attn.typing import Array, ArrayLike

_BERT = dict(vocab_size=30522, max_length=512, type_vocab_size=2)
_INIT = nnx.initializers.normal(0.02)  # BERT's initializer range


@dataclasses.dataclass(frozen=True)
class BertConfig(NamedVariants):
    """Configuration of `Bert`; `BertConfig.named("base")` for BERT-base (110M parameters).

    Variants: "tiny" (2 layers, width 64, vocabulary 512: for tests and quick experiments);
    "mini" (L=4, D=256), "small" (L=4, D=512) and "medium" (L=8, D=512), the compact BERTs of
    Turc et al. (2019), "Well-Read Students Learn Better"; "base" (L=12, D=768, N=12, F=3072)
    and "large" (L=24, D=1024, N=16, F=4096) of Devlin et al. (2019). The last four use BERT's
    WordPiece vocabulary (V=30522) and 512 positions.

    Heads: `use_pooler` adds the pooler (dense + tanh on the first token), `use_mlm_head` the
    masked-LM head, and `num_classes` a classifier on the pooled output (it needs the pooler).
    `classifier_dropout_rate` defaults to `dropout_rate`.
    """

    vocab_size: int = 512
    num_layers: int = 4
    num_heads: int = 4
    model_dim: int = 128
    mlp_dim: int = 512
    max_length: int = 128
    type_vocab_size: int = 2
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    classifier_dropout_rate: float | None = None
    layer_norm_eps: float = 1e-12
    activation: str = "gelu"
    num_classes: int | None = None
    use_pooler: bool = True
    use_mlm_head: bool = True
    tie_embeddings: bool = True
    implementation: str | None = None
    dtype: str | None = None
    param_dtype: str = "float32"

    VARIANTS: ClassVar[dict[str, dict]] = {
        "tiny": dict(
            vocab_size=512, num_layers=2, num_heads=4, model_dim=64, mlp_dim=256, max_length=128
        ),
        "mini": dict(num_layers=4, num_heads=4, model_dim=256, mlp_dim=1024, **_BERT),
        "small": dict(num_layers=4, num_heads=8, model_dim=512, mlp_dim=2048, **_BERT),
        "medium": dict(num_layers=8, num_heads=8, model_dim=512, mlp_dim=2048, **_BERT),
        "base": dict(num_layers=12, num_heads=12, model_dim=768, mlp_dim=3072, **_BERT),
        "large": dict(num_layers=24, num_heads=16, model_dim=1024, mlp_dim=4096, **_BERT),
    }

    def __post_init__(self):
        owner = "BertConfig"
        for name in ("vocab_size", "num_layers", "max_length", "type_vocab_size"):
            check_positive(owner, name, getattr(self, name))
        check_transformer_fields(owner, self)
        check_dropout_rate(owner, "classifier_dropout_rate", self.classifier_dropout)
        if self.num_classes is not None:
            check_positive(owner, "num_classes", self.num_classes)
            if not self.use_pooler:
                raise ValueError(
                    f"{owner}: the classifier (num_classes={self.num_classes}) reads the pooled "
                    "output; set use_pooler=True"
                )

    @property
    def classifier_dropout(self) -> float:
        """The dropout rate before the classifier."""
        if self.classifier_dropout_rate is None:
            return self.dropout_rate
        return self.classifier_dropout_rate


class BertEmbeddings(nnx.Module):
    """h_0 = Dropout(LN(E_tok[ids] + E_pos[0..T-1] + E_type[token_type_ids])) -> [B, T, D].

    Submodules: `word` (`nnx.Embed` [V, D]), `position` (`LearnedPositions` [max_length, D]),
    `token_type` (`nnx.Embed` [type_vocab_size, D]), `norm` (`nnx.LayerNorm`), `dropout`.
    """

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        dtype, param_dtype = dtype_of(config.dtype), dtype_of(config.param_dtype)
        common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        D = config.model_dim
        self.word = nnx.Embed(config.vocab_size, D, embedding_init=_INIT, **common)
        self.position = LearnedPositions(
            config.max_length, D, rngs=rngs, param_dtype=param_dtype, dtype=dtype or jnp.float32
        )
        self.token_type = nnx.Embed(config.type_vocab_size, D, embedding_init=_INIT, **common)
        self.norm = nnx.LayerNorm(D, epsilon=config.layer_norm_eps, **common)
        self.dropout = nnx.Dropout(config.dropout_rate, rngs=rngs)

    def __call__(
        self, ids: Array, token_type_ids: Array, *, deterministic: bool | None = None
    ) -> Array:
        """ids, token_type_ids int [B, T] -> [B, T, D] (shapes checked by `Bert`)."""
        T = ids.shape[1]
        h = self.word(ids) + self.position(T) + self.token_type(token_type_ids)
        return self.dropout(self.norm(h), deterministic=deterministic)


class MaskedLMHead(nnx.Module):
    """logits = LN(act(h W_t + b_t)) E_tokᵀ + b_V -> [B, T, V] (BERT's masked-LM head).

    Submodules: `transform` (`nnx.Linear` [D, D]), `norm` (`nnx.LayerNorm`), `decoder`
    (`nnx.Linear` [D, V] without bias, None when tied to the token embeddings), `bias` [V].
    """

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        dtype, param_dtype = dtype_of(config.dtype), dtype_of(config.param_dtype)
        common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        D, V = config.model_dim, config.vocab_size
        self.activation = config.activation
        self.dtype = dtype
        self.transform = nnx.Linear(D, D, kernel_init=_INIT, **common)
        self.norm = nnx.LayerNorm(D, epsilon=config.layer_norm_eps, **common)
        self.decoder = nnx.data(
            None
            if config.tie_embeddings
            else nnx.Linear(D, V, use_bias=False, kernel_init=_INIT, **common)
        )
        self.bias = nnx.Param(jnp.zeros((V,), param_dtype))

    def __call__(self, hidden: Array, embedding: nnx.Embed) -> Array:
        """hidden [B, T, D] -> logits [B, T, V]; `embedding` is the tied token table."""
        h = get_activation(self.activation)(self.transform(hidden))
        h = self.norm(h)
        logits = embedding.attend(h) if self.decoder is None else self.decoder(h)
        return logits + self.bias[...].astype(logits.dtype)


class Bert(nnx.Module):
    """BERT (Devlin et al. 2019): a post-LN bidirectional transformer encoder with heads.

    `encode(ids[B, T], token_type_ids=None, attention_mask=None) -> hidden[B, T, D]`,
    `Bert(ids, ...) -> masked-LM logits[B, T, V]`, `pool(hidden) -> [B, D]`,
    `classify(hidden) -> [B, num_classes]`.

    Submodules: `embeddings` (`BertEmbeddings`), `blocks` (list of post-LN `TransformerBlock`s),
    `pooler` (`nnx.Linear` [D, D], None without `use_pooler`), `mlm_head` (`MaskedLMHead`, None
    without `use_mlm_head`), `classifier` (`nnx.Linear` [D, num_classes], None without
    `num_classes`) and `classifier_dropout`.
    """

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        self.config = config
        dtype, param_dtype = dtype_of(config.dtype), dtype_of(config.param_dtype)
        common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        D = config.model_dim
        self.embeddings = BertEmbeddings(config, rngs=rngs)
        self.blocks = nnx.List(
            [
                TransformerBlock.from_config(config, norm_first=False, rngs=rngs)
                for _ in range(config.num_layers)
            ]
        )
        self.pooler = nnx.data(
            nnx.Linear(D, D, kernel_init=_INIT, **common) if config.use_pooler else None
        )
        self.mlm_head = nnx.data(MaskedLMHead(config, rngs=rngs) if config.use_mlm_head else None)
        self.classifier = nnx.data(
            None
            if config.num_classes is None
            else nnx.Linear(D, config.num_classes, kernel_init=_INIT, **common)
        )
        self.classifier_dropout = nnx.Dropout(config.classifier_dropout, rngs=rngs)

    # ------------------------------------------------------------------ encoder

    def encode(
        self,
        ids: ArrayLike,
        token_type_ids: ArrayLike | None = None,
        attention_mask: ArrayLike | None = None,
        *,
        deterministic: bool | None = None,
        return_hidden_states: bool = False,
    ) -> Array | tuple[Array, tuple[Array, ...]]:
        """The hidden states after the last block, h_L.

        Args:
          ids: int [B, T] token ids, T <= max_length.
          token_type_ids: int [B, T] segment ids in [0, type_vocab_size); default all 0.
          attention_mask: [B, T], 1/True = real token, 0/False = padding; no token attends to
            padded keys. Default: every token is real.
          deterministic: no dropout when True, dropout when False; None: the mode that
            `.train()` / `.eval()` set.
          return_hidden_states: also return the L + 1 hidden states [B, T, D]: the embedding
            output h_0 and the output of every block, as Hugging Face's `hidden_states`.

        Returns:
          hidden [B, T, D], or (hidden, (h_0, ..., h_L)) with `return_hidden_states`.
        """
        ids, token_type_ids, mask = self._check_inputs(ids, token_type_ids, attention_mask)
        h = self.embeddings(ids, token_type_ids, deterministic=deterministic)
        states = [h]
        for block in self.blocks:
            h = block(h, mask=mask, deterministic=deterministic)
            states.append(h)
        return (h, tuple(states)) if return_hidden_states else h

    def __call__(
        self,
        ids: ArrayLike,
        token_type_ids: ArrayLike | None = None,
        attention_mask: ArrayLike | None = None,
        *,
        deterministic: bool | None = None,
    ) -> Array:
        """Masked-LM logits: LN(act(h_L W_t + b_t)) E_tokᵀ + b_V.

        Args:
          ids, token_type_ids, attention_mask, deterministic: as in `encode`.

        Returns:
          logits [B, T, V] (float32 for a float32 model; the compute dtype otherwise).
        """
        if self.mlm_head is None:
            raise ValueError(
                "Bert: this model has no masked-LM head (use_mlm_head=False); call encode() "
                "for the hidden states"
            )
        hidden = self.encode(ids, token_type_ids, attention_mask, deterministic=deterministic)
        return self.mlm_head(hidden, self.embeddings.word)

    # ------------------------------------------------------------------ heads

    def pool(self, hidden: Array) -> Array:
        """pooled = tanh(h[:, 0] W_p + b_p): the first ([CLS]) token through a dense layer.

        Args:
          hidden: [B, T, D] output of `encode`.

        Returns:
          [B, D].
        """
        if self.pooler is None:
            raise ValueError("Bert.pool: this model has no pooler (use_pooler=False)")
        self._check_hidden("Bert.pool", hidden)
        return jnp.tanh(self.pooler(hidden[:, 0]))

    def classify(self, hidden: Array, *, deterministic: bool | None = None) -> Array:
        """Class logits = Dropout(pool(hidden)) W_c + b_c (sentence-level tasks, and BERT's
        next-sentence prediction with 2 classes).

        Args:
          hidden: [B, T, D] output of `encode`.
          deterministic: no dropout when True, dropout when False; None: the mode that
            `.train()` / `.eval()` set.

        Returns:
          [B, num_classes].
        """
        if self.classifier is None:
            raise ValueError(
                "Bert.classify: this model has no classifier; build it with "
                "BertConfig(num_classes=...)"
            )
        pooled = self.pool(hidden)
        return self.classifier(self.classifier_dropout(pooled, deterministic=deterministic))

    # ------------------------------------------------------------------ checks

    def _check_inputs(self, ids, token_type_ids, attention_mask):
        """Validated ids, token types [B, T] and the boolean key mask [B, 1, 1, T] (or None)."""
        ids = check_token_ids("Bert", "ids", ids, self.config.vocab_size)
        check_fits("Bert", "sequence length T", ids.shape[1], self.config.max_length)
        if token_type_ids is None:
            token_type_ids = jnp.zeros(ids.shape, jnp.int32)
        token_type_ids = jnp.asarray(token_type_ids)
        if token_type_ids.shape != ids.shape or not jnp.issubdtype(
            token_type_ids.dtype, jnp.integer
        ):
            raise ValueError(
                f"Bert: token_type_ids must be integers of the shape of ids [B, T] = "
                f"{list(ids.shape)}, got {token_type_ids.dtype} {list(token_type_ids.shape)}"
            )
        return ids, token_type_ids, key_mask("Bert", attention_mask, ids.shape)

    def _check_hidden(self, fn: str, hidden: Array) -> None:
        D = self.config.model_dim
        if jnp.ndim(hidden) != 3 or jnp.shape(hidden)[-1] != D:
            raise ValueError(
                f"{fn}: hidden must have shape [B, T, D] with D={D}, got {jnp.shape(hidden)}"
            )


__all__ = ["Bert", "BertConfig", "BertEmbeddings", "MaskedLMHead"]
