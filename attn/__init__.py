"""attn: attention mechanisms and the models built on them, in JAX and Flax.

The public API is re-exported here; see `attn.kernels` for the pure-JAX attention functions.
"""

from attn import kernels
from attn.kernels import attention, dot_product_attention

__all__ = ["attention", "dot_product_attention", "kernels"]
__version__ = "0.1.0"
