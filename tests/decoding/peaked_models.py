"""Small models for the decoding tests, with every weight re-drawn with a wide spread: peaked
next-token distributions, so that a wrong position, beam or mask changes the chosen tokens.

The decoding loops compile once per model structure, shape and static setting; the tests share
these few models and shapes so that the compiled loops are reused.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from attn.layers.position import LearnedPositions
from attn.models import Transformer, TransformerConfig, TransformerLM, TransformerLMConfig

V, D, N, F = 23, 24, 4, 40
B, T0, M = 3, 4, 6  # batch, prompt length, new tokens
S = 7  # source length
SMALL_V, SMALL_M = 5, 4  # the model searched exhaustively: 5^4 sequences
SMALL_SEED = 0
SMALL_PROMPT = jnp.asarray([[1, 4, 0], [2, 3, 4]], jnp.int32)


def build(cls, config, seed: int):
    """`cls(config)` with every weight drawn with a wide spread (the default inits make attention
    nearly uniform), built abstractly and filled in, without running the initialisers (eagerly,
    each initialiser compiles anew for every parameter shape: seconds per model on CPU).

    Embeddings N(0, 0.5²) (they are also the output projection), learned positions N(0, 1),
    kernels N(0, gain² / fan_in) with gain 1.6 for queries and keys, biases N(0, 0.1²),
    layer-norm scales N(1, 0.3²) and biases N(0, 0.2²); any other parameter (recurrent cells,
    attention scores) N(0, 2² / fan_in) for a matrix, N(0, 0.5²) for a vector.
    """
    abstract = nnx.eval_shape(lambda: cls(config, rngs=nnx.Rngs(seed)))
    rng = np.random.default_rng(seed + 1000)
    drawn = set()

    def draw(variable, std, mean=0.0):
        value = variable.get_value()
        variable.set_value(jnp.asarray(mean + std * rng.standard_normal(value.shape), value.dtype))
        drawn.add(id(variable))

    for path, node in nnx.iter_graph(abstract):
        if isinstance(node, nnx.Linear):
            gain = 1.6 if path and path[-1] in ("query", "key") else 1.0
            draw(node.kernel, gain / math.sqrt(node.kernel.get_value().shape[0]))
            if node.bias is not None:
                draw(node.bias, 0.1)
        elif isinstance(node, nnx.LayerNorm):
            draw(node.scale, 0.3, 1.0)
            draw(node.bias, 0.2)
        elif isinstance(node, nnx.Embed | LearnedPositions):
            draw(node.embedding, 0.5 if isinstance(node, nnx.Embed) else 1.0)
    for _, node in nnx.iter_graph(abstract):
        if isinstance(node, nnx.Param) and id(node) not in drawn:
            shape = node.get_value().shape
            draw(node, 2.0 / math.sqrt(shape[0]) if len(shape) > 1 else 0.5)
    graphdef, state = nnx.split(abstract)

    def fill(leaf):  # what is still abstract: the random streams' keys and counters
        if not isinstance(leaf, jax.ShapeDtypeStruct):
            return leaf
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.key(seed)
        return jnp.zeros(leaf.shape, leaf.dtype)

    return nnx.merge(graphdef, jax.tree.map(fill, state))


def make_lm(seed: int = 0, **overrides) -> TransformerLM:
    fields = dict(vocab_size=V, num_layers=2, num_heads=N, num_kv_heads=2, model_dim=D, mlp_dim=F)
    return build(
        TransformerLM, TransformerLMConfig(**{**fields, "max_length": 16, **overrides}), seed
    )


def make_transformer(seed: int = 0, **overrides) -> Transformer:
    """Post-LN with a separate output matrix (tied, the argmax tends to repeat the input)."""
    fields = dict(
        vocab_size=V,
        num_encoder_layers=1,
        num_decoder_layers=1,
        num_heads=N,
        num_kv_heads=2,
        model_dim=D,
        mlp_dim=F,
        max_length=16,
        position="learned",
        tie_output=False,
    )
    return build(Transformer, TransformerConfig(**{**fields, **overrides}), seed)


def ids(seed: int, shape: tuple[int, int], vocab: int = V) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).integers(1, vocab, shape), jnp.int32)


def source_batch() -> tuple[jax.Array, jax.Array]:
    """Source ids [B, S] and their mask: the rows have 7, 5 and 3 real tokens."""
    lengths = np.array([S, 5, 3])
    mask = np.arange(S)[None, :] < lengths[:, None]
    return jnp.where(mask, ids(5, (B, S)), 0), jnp.asarray(mask)
