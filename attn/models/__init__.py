"""Model families, each a `flax.nnx` module with a frozen `*Config` and named variants.

Every model is built in training mode, as `nnx.Dropout` is: `model.eval()` / `model.train()` switch
it (dropout, hard-attention estimators, `Seq2SeqRNN`'s teacher forcing), and a call's
`deterministic=` argument overrides it for that call.

Token ids outside [0, V) raise a ValueError where their values are known; under `jax.jit` every
logit of a sequence that holds one is NaN, or, with the call wrapped in
`jax.experimental.checkify.checkify`, `error.throw()` raises (see
`attn.kernels.validation.check_token_ids`).
"""

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
