"""Model families, each a `flax.nnx` module with a frozen `*Config` and named variants."""

from attn.models.bert import Bert, BertConfig
from attn.models.lm import TransformerLM, TransformerLMConfig
from attn.models.transformer import Transformer, TransformerConfig
from attn.models.vit import ViT, ViTConfig, resize_position_embeddings

__all__ = [
    "Bert",
    "BertConfig",
    "Transformer",
    "TransformerConfig",
    "TransformerLM",
    "TransformerLMConfig",
    "ViT",
    "ViTConfig",
    "resize_position_embeddings",
]
