"""`flax.nnx` modules that own parameters and call `attn.kernels`."""

from attn.layers.attention import MultiHeadAttention
from attn.layers.blocks import TransformerBlock
from attn.layers.feedforward import MLP, GatedMLP
from attn.layers.gating import GatedLinearUnit, SqueezeExcitation
from attn.layers.hard_attention import HardMultiHeadAttention, HardSelection
from attn.layers.intermediates import collect_intermediates
from attn.layers.position import LearnedPositions, RelativePositionBias, SinusoidalPositions
from attn.layers.recurrent import RNN, GRUCell, LSTMCell
from attn.layers.rnn_attention import BahdanauAttention, LuongAttention
from attn.layers.rnn_decoder import BahdanauDecoderCell, BottleneckDecoderCell, LuongDecoderCell

__all__ = [
    "MLP",
    "RNN",
    "BahdanauAttention",
    "BahdanauDecoderCell",
    "BottleneckDecoderCell",
    "GRUCell",
    "GatedLinearUnit",
    "GatedMLP",
    "HardMultiHeadAttention",
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
    "collect_intermediates",
]
