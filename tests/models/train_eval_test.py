"""Every layer and model with dropout (or another training-only behaviour) follows flax.nnx's
convention: built in training mode, `.eval()` / `.train()` (and `nnx.view(deterministic=...)`)
switch it, and a call's `deterministic=` argument overrides the mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.layers import BahdanauAttention, HardMultiHeadAttention, MultiHeadAttention
from attn.models import (
    Bert,
    BertConfig,
    Seq2SeqRNN,
    Seq2SeqRNNConfig,
    Transformer,
    TransformerConfig,
    TransformerLM,
    TransformerLMConfig,
    ViT,
    ViTConfig,
)

B, T, S, D = 2, 5, 7, 16
IDS = jnp.array([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]])
SRC = jnp.array([[3, 4, 5, 6, 7, 8, 9], [9, 8, 7, 6, 5, 4, 3]])
X = jax.random.normal(jax.random.key(0), (B, T, D))


def _mha():
    layer = MultiHeadAttention(4, D, dropout_rate=0.5, rngs=nnx.Rngs(0))
    return layer, lambda m, **kw: m(X, **kw)


def _hard_mha():  # no dropout: in training the estimator samples, in evaluation the argmax
    layer = HardMultiHeadAttention(4, D, estimator="straight_through_sample", rngs=nnx.Rngs(0))
    return layer, lambda m, **kw: m(X, **kw)


def _lm():
    config = TransformerLMConfig.named("tiny", vocab_size=32, num_layers=1, dropout_rate=0.3)
    return TransformerLM(config, rngs=nnx.Rngs(0)), lambda m, **kw: m(IDS, **kw)


def _transformer():
    config = TransformerConfig.named(
        "tiny",
        vocab_size=32,
        num_encoder_layers=1,
        num_decoder_layers=1,
        attention_dropout_rate=0.3,
    )
    return Transformer(config, rngs=nnx.Rngs(0)), lambda m, **kw: m(SRC, IDS, **kw)


def _bert():
    config = BertConfig.named("tiny", vocab_size=32, num_layers=1, dropout_rate=0.3)
    return Bert(config, rngs=nnx.Rngs(0)), lambda m, **kw: m.encode(IDS, **kw)


def _vit():
    config = ViTConfig.named("digits", num_layers=1, dropout_rate=0.3)
    images = jax.random.normal(jax.random.key(1), (B, 8, 8, 1))
    return ViT(config, rngs=nnx.Rngs(0)), lambda m, **kw: m(images, **kw)


def _seq2seq_rnn():  # dropout, and hard attention whose samples come from the sampling stream
    config = Seq2SeqRNNConfig.named(
        "bahdanau", vocab_size=32, dropout_rate=0.3, estimator="straight_through_sample"
    )
    return Seq2SeqRNN(config, rngs=nnx.Rngs(0)), lambda m, **kw: m(SRC, IDS, **kw)


BUILDERS = {
    "MultiHeadAttention": _mha,
    "HardMultiHeadAttention": _hard_mha,
    "TransformerLM": _lm,
    "Transformer": _transformer,
    "Bert": _bert,
    "ViT": _vit,
    "Seq2SeqRNN": _seq2seq_rnn,
}


def _twice(model, call, **kwargs):
    """The outputs of two calls whose random streams are reseeded with different keys."""
    outputs = []
    for seed in (1, 2):
        nnx.reseed(model, dropout=jax.random.key(seed), sampling=jax.random.key(seed))
        outputs.append(np.asarray(call(model, **kwargs)))
    return outputs


@pytest.mark.parametrize("name", list(BUILDERS))
def test_train_and_eval_switch_the_mode_and_a_call_argument_overrides_it(name):
    model, call = BUILDERS[name]()
    first, second = _twice(model, call)  # built in training mode, as nnx.Dropout
    assert not np.allclose(first, second), "training mode: different random draws differ"

    model.eval()
    evaluated, again = _twice(model, call)
    np.testing.assert_array_equal(evaluated, again)
    assert not np.allclose(evaluated, first)
    first, second = _twice(model, call, deterministic=False)  # the argument wins over eval()
    assert not np.allclose(first, second)

    model.train()
    first, second = _twice(model, call)
    assert not np.allclose(first, second)
    forced, again = _twice(model, call, deterministic=True)  # the argument wins over train()
    np.testing.assert_array_equal(forced, evaluated)
    np.testing.assert_array_equal(again, evaluated)

    view = nnx.view(model, deterministic=True)  # an evaluation view; the model stays in training
    np.testing.assert_array_equal(_twice(view, call)[0], evaluated)
    first, second = _twice(model, call)
    assert not np.allclose(first, second)


def test_the_mode_is_static_under_jit():
    model, call = _lm()
    forward = nnx.jit(lambda m: call(m))
    model.eval()
    evaluated = np.asarray(forward(model))
    np.testing.assert_array_equal(np.asarray(forward(model)), evaluated)
    model.train()  # a new mode retraces: dropout on
    assert not np.allclose(np.asarray(forward(model)), evaluated)
    model.eval()
    np.testing.assert_array_equal(np.asarray(forward(model)), evaluated)


def test_rnn_attention_follows_the_mode():
    layer = BahdanauAttention(6, 4, estimator="straight_through_sample", rngs=nnx.Rngs(0))
    query = jax.random.normal(jax.random.key(0), (3, 6))
    keys = jax.random.normal(jax.random.key(1), (3, 9, 4))
    with pytest.raises(ValueError, match=r"needs key=.*\.eval\(\) or deterministic=True"):
        layer(query, keys)  # training mode: sampling needs a key
    layer.eval()
    weights = layer(query, keys).weights  # the argmax, no key needed
    np.testing.assert_array_equal(weights.argmax(-1), layer.logits(query, keys).argmax(-1))
    draws = [layer(query, keys, key=jax.random.key(k), deterministic=False).weights for k in (0, 1)]
    assert not np.array_equal(draws[0], draws[1])


def test_decoding_runs_in_evaluation():
    from attn import decoding

    model, _ = _lm()  # training mode, dropout 0.3
    prompt = IDS[:, :2]
    tokens = [decoding.greedy(model, prompt, max_new_tokens=4) for _ in range(2)]
    np.testing.assert_array_equal(tokens[0], tokens[1])
    model.eval()
    np.testing.assert_array_equal(decoding.greedy(model, prompt, max_new_tokens=4), tokens[0])
