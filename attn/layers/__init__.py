"""`flax.nnx` modules that own parameters and call `attn.kernels`."""

from attn.layers.attention import (
    AttentionWeights,
    HardSelection,
    MultiHeadAttention,
    collect_attention_weights,
)
from attn.layers.blocks import TransformerBlock
from attn.layers.feedforward import MLP, GatedMLP
from attn.layers.gating import GatedLinearUnit, SqueezeExcitation
from attn.layers.position import LearnedPositions, RelativePositionBias, SinusoidalPositions
from attn.layers.recurrent import RNN, GRUCell, LSTMCell
from attn.layers.rnn_attention import (
    BahdanauAttention,
    BahdanauDecoderCell,
    BottleneckDecoderCell,
    LuongAttention,
    LuongDecoderCell,
)

__all__ = [
    "MLP",
    "RNN",
    "AttentionWeights",
    "BahdanauAttention",
    "BahdanauDecoderCell",
    "BottleneckDecoderCell",
    "GRUCell",
    "GatedLinearUnit",
    "GatedMLP",
    "HardSelection",
    "LSTMCell",
    "LearnedPositions",
    "LuongAttention",
    "LuongDecoderCell",
    "MultiHeadAttention",
    "RelativePositionBias",
    "SinusoidalPositions",
    "SqueezeExcitation",
    "TransformerBlock",
    "collect_attention_weights",
]
