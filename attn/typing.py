"""Array aliases and the dimension key used in every docstring and einsum string.

The letters follow `jax.nn.dot_product_attention`:

    B  batch                        D  model width
    T  query (target) length        F  MLP hidden width
    S  key/value (source) length    V  vocabulary
    N  query heads                  P  patches
    K  key/value heads (K | N)      C  channels
    G  N // K query heads per K/V   H  head dim

Shapes in docstrings are written with these letters, e.g. `query[B, T, N, H]`.
"""

from __future__ import annotations

from typing import TypeAlias

import jax
import numpy as np

Array: TypeAlias = jax.Array
ArrayLike: TypeAlias = jax.Array | np.ndarray
DType: TypeAlias = jax.typing.DTypeLike
PRNGKey: TypeAlias = jax.Array

__all__ = ["Array", "ArrayLike", "DType", "PRNGKey"]
