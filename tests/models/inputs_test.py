"""Token ids outside the vocabulary are a clear error wherever their values are known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.models import (
    Bert,
    BertConfig,
    Transformer,
    TransformerConfig,
    TransformerLM,
    TransformerLMConfig,
)
from attn.models.inputs import check_token_ids


def test_check_token_ids():
    ids = jnp.array([[0, 3, 9]])
    assert check_token_ids("M", "ids", ids, 10) is not None
    with pytest.raises(
        ValueError, match=r"M: ids must lie in \[0, vocab_size=9\), got ids from 0 to 9"
    ):
        check_token_ids("M", "ids", ids, 9)
    with pytest.raises(ValueError, match="from -1 to 3"):
        check_token_ids("M", "ids", jnp.array([[-1, 3]]), 9)
    with pytest.raises(ValueError, match=r"integer token ids \[B, S\], got float32"):
        check_token_ids("M", "src", jnp.zeros((1, 3)), 9, "S")
    # Under jit the values are unknown: no check, no error.
    jax.jit(lambda x: check_token_ids("M", "ids", x, 9))(ids)


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


def test_ids_closed_over_inside_jit_are_checked_once_at_trace_time():
    ids = np.array([[0, 3, 6]])

    @jax.jit
    def run():
        return check_token_ids("Model", "ids", ids, vocab_size=7)

    np.testing.assert_array_equal(run(), ids)

    @jax.jit
    def out_of_range():
        return check_token_ids("Model", "ids", ids, vocab_size=6)

    with pytest.raises(ValueError, match=r"ids must lie in \[0, vocab_size=6\), got ids from 0"):
        out_of_range()
