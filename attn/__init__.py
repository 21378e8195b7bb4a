"""attn: attention mechanisms and the models built on them, in JAX and Flax.

Packages: `attn.kernels` (pure JAX attention functions), `attn.layers` (flax.nnx modules),
`attn.models` (model families with configs and named variants), `attn.pretrained` (Hugging Face
checkpoint import).
"""

from attn import decoding, kernels, layers, models, pretrained
from attn.kernels import attention, dot_product_attention

__all__ = [
    "attention",
    "decoding",
    "dot_product_attention",
    "kernels",
    "layers",
    "models",
    "pretrained",
]
__version__ = "0.1.0"
