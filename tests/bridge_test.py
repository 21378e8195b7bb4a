"""attn's nnx modules used from Linen code through `flax.nnx.bridge`."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen, nnx
from flax.nnx import bridge

from attn.layers import MultiHeadAttention
from attn.models import TransformerLM, TransformerLMConfig


def test_multi_head_attention_inside_a_linen_module():
    class Encoder(linen.Module):
        @linen.compact
        def __call__(self, x):
            attention = bridge.to_linen(MultiHeadAttention, 4, 16, num_kv_heads=2)
            return linen.Dense(3)(x + attention(x, is_causal=True))

    x = jax.random.normal(jax.random.key(0), (2, 5, 16))
    model = Encoder()
    variables = model.init({"params": jax.random.key(1), "dropout": jax.random.key(2)}, x)
    out = model.apply(variables, x)
    assert out.shape == (2, 5, 3)

    # The Linen parameters are the nnx module's: rebuilding it from them gives the same output.
    params = variables["params"]["ToLinen_0"]
    layer = MultiHeadAttention(4, 16, num_kv_heads=2, rngs=nnx.Rngs(0))
    graph, state = nnx.split(layer)
    nnx.replace_by_pure_dict(state, params)
    layer = nnx.merge(graph, state)
    dense = variables["params"]["Dense_0"]
    want = (x + layer(x, is_causal=True)) @ dense["kernel"] + dense["bias"]
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)

    # And Linen can train through it.
    grads = jax.grad(lambda v: jnp.sum(model.apply(v, x) ** 2))(variables)
    assert np.any(np.asarray(grads["params"]["ToLinen_0"]["query"]["kernel"]) != 0)


def test_transformer_lm_as_a_linen_module():
    config = TransformerLMConfig.named("tiny", vocab_size=50, num_layers=1)
    lm = bridge.to_linen(TransformerLM, config)
    ids = jnp.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    variables = lm.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, ids)
    logits = lm.apply(variables, ids)
    assert logits.shape == (2, 4, 50)
    # Causal: changing the last token leaves earlier logits unchanged.
    changed = lm.apply(variables, ids.at[:, -1].set(9))
    np.testing.assert_array_equal(changed[:, :-1], logits[:, :-1])
    assert not np.allclose(changed[:, -1], logits[:, -1])
