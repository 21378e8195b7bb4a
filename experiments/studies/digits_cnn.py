"""A small CNN for scikit-learn's 8×8 digits, with or without squeeze-and-excitation (S11, S12).

    block l:  h_l = pool_l(SE_l(relu(conv3x3_l(h_{l-1}))))      SE_l optional (Hu et al. 2018)
    logits  = mean_{H, W}(h_3) W_out + b_out

Three blocks of `nnx.Conv` (3×3, "SAME"): 1 → 32 channels at 8×8, max-pool to 4×4; 32 → 64 at
4×4, max-pool to 2×2; 64 → 86 at 2×2; global average pooling and a linear head. Without SE it has
69,308 parameters, the size of the `digits` ViT (`ViTConfig.named("digits")`, 69,194). With SE
(`attn.layers.SqueezeExcitation`, r = 4, after each block's ReLU and before its pooling) it has
75,707 (+9.2%): the channels are few, so even r = 4 adds about C²/2 per block.

Each SE layer sows its channel weights s [B, C] as "channel_weights" when asked:
`collect_intermediates(cnn, images, names=("channel_weights",))` returns them under the paths
("excitations", l, "channel_weights").
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from flax import nnx

from attn.layers import SqueezeExcitation

CHANNELS = (32, 64, 86)
POOLED = (True, True, False)  # 8×8 -> 4×4 -> 2×2; the last block stays at 2×2
REDUCTION = 4
CLASSES = 10


class DigitsCNN(nnx.Module):
    """images [B, 8, 8, 1] -> logits [B, 10]; `se=True` puts a `SqueezeExcitation` in each block."""

    def __init__(self, *, se: bool, rngs: nnx.Rngs, channels: tuple[int, ...] = CHANNELS):
        widths = (1, *channels)
        self.convs = nnx.List(
            [
                nnx.Conv(c_in, c_out, kernel_size=(3, 3), padding="SAME", rngs=rngs)
                for c_in, c_out in itertools.pairwise(widths)
            ]
        )
        self.excitations = nnx.data(
            nnx.List([SqueezeExcitation(c, reduction=REDUCTION, rngs=rngs) for c in channels])
            if se
            else None
        )
        self.head = nnx.Linear(channels[-1], CLASSES, rngs=rngs)

    def __call__(self, images: jax.Array) -> jax.Array:
        h = images  # [B, 8, 8, 1]
        for l, conv in enumerate(self.convs):
            h = jax.nn.relu(conv(h))  # [B, H, W, C_l]
            if self.excitations is not None:
                h = self.excitations[l](h)  # channels re-weighted by s [B, C_l]
            if POOLED[l]:
                h = max_pool_2x2(h)  # [B, H/2, W/2, C_l]
        return self.head(jnp.mean(h, axis=(1, 2)))  # [B, C_last] -> [B, 10]


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """Max over non-overlapping 2×2 windows, [B, H, W, C] -> [B, H/2, W/2, C], as a reshape
    (the same values as `nnx.max_pool(x, (2, 2), strides=(2, 2))`, whose select-and-scatter
    gradient is several times slower on CPU)."""
    B, H, W, C = x.shape
    return x.reshape(B, H // 2, 2, W // 2, 2, C).max(axis=(2, 4))


def parameter_count(model: nnx.Module) -> int:
    """The number of trainable scalars of `model`."""
    return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def flops_per_image(model: nnx.Module) -> float:
    """Floating-point operations of one forward pass on one 8×8 image, from XLA's cost analysis
    of the compiled call (a multiply-add counts as 2)."""
    graphdef, state = nnx.split(model)

    def forward(state, images):
        return nnx.merge(graphdef, state)(images)

    compiled = jax.jit(forward).lower(state, jnp.zeros((1, 8, 8, 1), jnp.float32)).compile()
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):  # older jax: one dict per computation
        analysis = analysis[0]
    return float(analysis["flops"])
