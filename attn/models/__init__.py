"""Model families, each a `flax.nnx` module with a frozen `*Config` and named variants."""

from attn.models.bert import Bert, BertConfig
from attn.models.conv import ConvS2S, ConvS2SConfig, DilatedCausalConvStack
from attn.models.lm import TransformerLM, TransformerLMConfig
from attn.models.path_length import max_path_length, receptive_field
from attn.models.seq2seq_rnn import Seq2SeqRNN, Seq2SeqRNNConfig
from attn.models.transformer import Transformer, TransformerConfig
from attn.models.vit import ViT, ViTConfig, resize_position_embeddings

__all__ = [
    "Bert",
    "BertConfig",
    "ConvS2S",
    "ConvS2SConfig",
    "DilatedCausalConvStack",
    "Seq2SeqRNN",
    "Seq2SeqRNNConfig",
    "Transformer",
    "TransformerConfig",
    "TransformerLM",
    "TransformerLMConfig",
    "ViT",
    "ViTConfig",
    "max_path_length",
    "receptive_field",
    "resize_position_embeddings",
]
