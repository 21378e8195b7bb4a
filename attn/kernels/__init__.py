"""Pure-JAX attention kernels: masks, score functions, the reference kernel, its multi-head lift,
the memory-efficient blockwise kernel, hard attention and positional encodings. No Flax, no owned
parameters."""

from attn.kernels import blockwise, hard, hard_training, masks, positions, scores
from attn.kernels.attention import attention, masked_softmax
from attn.kernels.blockwise import blockwise_attention
from attn.kernels.masks import causal_mask, combine_masks, padding_mask, window_mask
from attn.kernels.multihead import dot_product_attention
from attn.kernels.scores import SCORES

__all__ = [
    "SCORES",
    "attention",
    "blockwise",
    "blockwise_attention",
    "causal_mask",
    "combine_masks",
    "dot_product_attention",
    "hard",
    "hard_training",
    "masked_softmax",
    "masks",
    "padding_mask",
    "positions",
    "scores",
    "window_mask",
]
