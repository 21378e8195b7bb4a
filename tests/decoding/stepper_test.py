"""`attn.decoding.Stepper`: a stepper written by hand, the default `reorder`, the trace-time
checks of what a stepper returns, and every model family plugging in through `stepper()`."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn import decoding
from attn.models.seq2seq_rnn import Seq2SeqRNN, Seq2SeqRNNConfig
from tests.decoding.peaked_models import B, M, V, build, ids, source_batch
from tests.decoding.references import gnmt


class Bigram(decoding.Stepper):
    """A plain-object `Stepper`: the next token depends on the last one, logits = table[token].
    It subclasses the protocol, so `reorder` is the default, `gather_rows`."""

    def __init__(self, table: np.ndarray):
        self.table = jnp.asarray(table, jnp.float32)
        self.vocab_size = table.shape[1]

    def start(self, prompt, source, source_mask, max_length):
        return self.table[prompt[:, -1]], {"last": prompt[:, -1]}

    def step(self, state, tokens):
        return self.table[tokens], {"last": tokens}


def test_a_hand_written_stepper_follows_its_table():
    table = np.full((4, 4), -5.0)
    table[0, 2] = table[2, 3] = table[3, 1] = table[1, 1] = 0.0  # 0 -> 2 -> 3 -> 1 -> 1 ...
    stepper = Bigram(table)
    assert isinstance(stepper, decoding.Stepper)
    prompt = jnp.asarray([[1, 0], [0, 2]], jnp.int32)
    expected = [[1, 0, 2, 3, 1], [0, 2, 3, 1, 1]]
    np.testing.assert_array_equal(decoding.greedy(stepper, prompt, max_new_tokens=3), expected)
    np.testing.assert_array_equal(
        decoding.decode(
            stepper, prompt, method="beam_search", beam_size=2, max_new_tokens=3
        ).tokens,
        expected,
    )
    np.testing.assert_array_equal(
        decoding.greedy(stepper, prompt, max_new_tokens=3, eos_id=3),
        [[1, 0, 2, 3, 0], [0, 2, 3, 0, 0]],
    )


def test_gather_rows_keeps_scalar_leaves():
    state = {"rows": jnp.arange(6).reshape(3, 2), "index": jnp.asarray(4)}
    gathered = decoding.gather_rows(state, jnp.asarray([2, 2, 0, 1]))
    np.testing.assert_array_equal(gathered["rows"], [[4, 5], [4, 5], [0, 1], [2, 3]])
    assert int(gathered["index"]) == 4


def test_every_model_family_gives_its_stepper(lm, transformer):
    rnn = build(Seq2SeqRNN, Seq2SeqRNNConfig(vocab_size=V, embed_dim=8, hidden_dim=12), 0)
    for model in (lm, transformer, rnn):
        assert not isinstance(model, decoding.Stepper)
        stepper = decoding.as_stepper(model)
        assert isinstance(stepper, decoding.Stepper) and stepper.vocab_size == V
        assert stepper.model is model


# ---------------------------------------------------------------------------------------------
# A recurrent encoder-decoder: the state is the decoder carry and the encoder memory.


@functools.partial(jax.jit, static_argnums=0)
def _rnn_forward(graphdef, params, source, tgt_in, source_mask):
    return nnx.merge(graphdef, params)(source, tgt_in, source_mask)


def test_seq2seq_rnn_decodes_through_its_recurrent_state():
    config = Seq2SeqRNNConfig(
        vocab_size=V,
        cell="gru",
        embed_dim=8,
        hidden_dim=12,
        bidirectional=True,
        attention="bahdanau",
    )
    model = build(Seq2SeqRNN, config, 0)
    source, source_mask = source_batch()
    bos = jnp.ones((B, 1), jnp.int32)
    inputs = dict(source=source, source_mask=source_mask, max_new_tokens=M)
    tokens = decoding.greedy(model, bos, **inputs)
    forced = _rnn_forward(*nnx.split(model), source, tokens[:, :-1], source_mask)
    np.testing.assert_array_equal(tokens[:, 1:], np.argmax(forced, axis=-1))
    # Beam search follows the beams through `Seq2SeqRNNStepper.reorder`: the n-best
    # log-probabilities are those of the teacher-forced model on the hypotheses.
    result = decoding.beam_search(model, bos, beam_size=3, **inputs)
    sequences = np.asarray(result.sequences).reshape(B * 3, 1 + M)
    rows = np.repeat(np.arange(B), 3)
    logits = _rnn_forward(*nnx.split(model), source[rows], sequences[:, :-1], source_mask[rows])
    token_log_probs = np.take_along_axis(
        jax.nn.log_softmax(logits, axis=-1), sequences[:, 1:, None], axis=-1
    )[..., 0]
    expected = np.sum(token_log_probs, axis=1).reshape(B, 3)
    np.testing.assert_allclose(result.log_probs, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(result.scores, expected / gnmt(M, 0.6), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Steppers that break the contract.


class WrongState(Bigram):
    """Its step returns a state that grows: not a loop carry."""

    def step(self, state, tokens):
        return self.table[tokens], {"last": jnp.stack([tokens, tokens], 1)}


class WrongBatch(Bigram):
    """Its start ignores the prompt's batch."""

    def start(self, prompt, source, source_mask, max_length):
        return self.table[:1], {"last": prompt[:1, -1]}


class WrongReorder(Bigram):
    """Its reorder ignores the indices (so the beams never get their rows)."""

    def reorder(self, state, indices):
        return state


def test_a_stepper_that_breaks_the_contract_raises_a_clear_error():
    table, small = np.zeros((4, 4)), ids(0, (B, 4)) % 4
    cases = [
        (
            lambda: decoding.greedy(WrongState(table), small, max_new_tokens=M),
            "WrongState.step must return a state of the structure, shapes",
        ),
        (
            lambda: decoding.greedy(WrongBatch(table), small, max_new_tokens=M),
            r"WrongBatch.start must return logits \[B, V\] = \[3, 4\], got shape \(1, 4\)",
        ),
        (
            lambda: decoding.beam_search(WrongReorder(table), small, beam_size=2, max_new_tokens=M),
            r"WrongReorder.reorder must return a state .* 6 rows on axis 0, got shape \(3,\)",
        ),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_a_model_without_a_stepper_raises_a_type_error():
    with pytest.raises(TypeError, match=r"model: expected an attn.decoding.Stepper .*got str"):
        decoding.greedy("gpt2", jnp.ones((1, 1), jnp.int32), max_new_tokens=2)
