"""Every text model rejects token ids outside its vocabulary and sequences longer than its
learned position table, with one message each."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.experimental import checkify

from attn.models import (
    Bert,
    BertConfig,
    Transformer,
    TransformerConfig,
    TransformerLM,
    TransformerLMConfig,
)
from attn.models.inputs import check_fits


def test_every_text_model_rejects_out_of_vocabulary_ids():
    too_big = jnp.array([[1, 2, 500]])
    lm = TransformerLM(TransformerLMConfig.named("tiny", vocab_size=100), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="TransformerLM: ids must lie in"):
        lm(too_big)
    bert = Bert(BertConfig.named("tiny", vocab_size=100), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="Bert: ids must lie in"):
        bert.encode(too_big)
    seq2seq = Transformer(TransformerConfig.named("tiny", vocab_size=100), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="Transformer: tgt must lie in"):
        seq2seq(jnp.array([[1, 2]]), too_big)


def test_out_of_vocabulary_ids_under_jit_give_nan_rows_or_a_checkify_error():
    lm = TransformerLM(TransformerLMConfig.named("tiny", vocab_size=100), rngs=nnx.Rngs(0))
    ids = jnp.array([[1, 2, 500, 4], [5, 6, 7, 8], [1, -3, 2, 2]])
    logits = nnx.jit(lambda model, ids: model(ids))(lm, ids)
    # The documented rule: every logit of a sequence holding an out-of-range id is NaN; the
    # other sequences are exact.
    assert bool(jnp.all(jnp.isnan(logits[0]))) and bool(jnp.all(jnp.isnan(logits[2])))
    np.testing.assert_allclose(logits[1], lm(ids[1:2])[0], rtol=1e-5, atol=1e-5)

    @nnx.jit
    def checked(model, ids):
        return checkify.checkify(model)(ids)

    error, _ = checked(lm, ids)
    with pytest.raises(
        checkify.JaxRuntimeError,
        match=r"TransformerLM: ids must lie in \[0, vocab_size=100\), got 500 at \[0, 2\]",
    ):
        error.throw()
    error, logits = checked(lm, ids.at[0, 2].set(3).at[2, 1].set(3))
    error.throw()  # every id in range: no error, finite logits
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_check_fits():
    check_fits("M", "sequence length T", 8, 8)  # exactly fills the table
    with pytest.raises(ValueError, match=r"M: sequence length T=9 exceeds max_length=8 of the"):
        check_fits("M", "sequence length T", 9, 8)


def test_every_model_with_a_learned_table_rejects_long_sequences():
    long = jnp.ones((1, 9), jnp.int32)
    lm = TransformerLM(TransformerLMConfig.named("tiny", max_length=8), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="TransformerLM: sequence length T=9 exceeds max_length=8"):
        lm(long)
    with pytest.raises(ValueError, match="TransformerLM.init_cache: cache length=9 exceeds"):
        lm.init_cache(1, 9)
    bert = Bert(BertConfig.named("tiny", max_length=8), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="Bert: sequence length T=9 exceeds max_length=8"):
        bert.encode(long)
    config = TransformerConfig.named("tiny", position="learned", max_length=8)
    seq2seq = Transformer(config, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="Transformer: src length S=9 exceeds max_length=8"):
        seq2seq.encode(long)
