"""TransformerBlock: pre-LN and post-LN residual wiring, cross-attention, cached decoding."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.layers.blocks import TransformerBlock

B, T, D = 2, 6, 16


def _x(seed, shape=(B, T, D)):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@pytest.mark.parametrize("norm_first", [True, False], ids=["pre-LN", "post-LN"])
def test_residual_wiring(norm_first):
    block = TransformerBlock(D, 4, 32, norm_first=norm_first, rngs=nnx.Rngs(0))
    x = _x(0)
    attend = lambda h: block.self_attention(h, is_causal=True)  # noqa: E731
    if norm_first:
        h = x + attend(block.self_attention_norm(x))
        want = h + block.mlp(block.mlp_norm(h))
    else:
        h = block.self_attention_norm(x + attend(x))
        want = block.mlp_norm(h + block.mlp(h))
    np.testing.assert_allclose(block(x, is_causal=True), want, rtol=1e-5, atol=1e-5)


def test_decoder_block_cross_attends_and_decodes_with_caches():
    block = TransformerBlock(D, 4, 32, cross_attention=True, rngs=nnx.Rngs(1))
    x, memory = _x(1), _x(2, shape=(B, 9, D))
    full = block(x, memory, is_causal=True)
    block.self_attention.init_cache(B, 8)
    block.cross_attention.init_cross_cache(memory)
    steps = [
        block(x[:, :3], decode=True),
        block(x[:, 3:4], decode=True),
        block(x[:, 4:], decode=True),
    ]
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, rtol=1e-5, atol=1e-5)


def test_decoder_block_needs_the_encoder_output():
    block = TransformerBlock(D, 4, 32, cross_attention=True, rngs=nnx.Rngs(1))
    with pytest.raises(ValueError, match="pass the encoder output"):
        block(_x(3))
