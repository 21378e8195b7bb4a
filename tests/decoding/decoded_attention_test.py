"""The attention behind a decoded sequence, read the documented way: run the model on the
sequence, teacher forced, under the collector. These tests check the claim that makes that
right: the teacher-forced weights equal the weights that the cached decoding steps computed
(every layer, every head), where the steps are replayed here one model call at a time, exactly
as greedy decoding made them (their argmax reproduces the decoded tokens)."""

from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn import decoding
from attn.layers import collect_intermediates
from attn.models.seq2seq_rnn import Seq2SeqRNN, Seq2SeqRNNConfig
from tests.decoding.peaked_models import T0, B, M, V, build, ids, source_batch


def _replay(call, tokens, prompt_length, *extra):
    """Feed `tokens` [B, L] to `call(ids, *extra, decode=True)`, the cached model, as decoding
    does: the prompt in one call, then one token per call (the last token is never fed).
    Returns the logits of each call's last position [B, L - T0, V] and, per attention layer,
    its weights of every call concatenated over the queries [B, N, L - 1, cache length]."""
    calls = [tokens[:, :prompt_length]]
    calls += [tokens[:, t : t + 1] for t in range(prompt_length, tokens.shape[1] - 1)]
    logits, weights = [], collections.defaultdict(list)
    for chunk in calls:
        out, found = collect_intermediates(
            call, chunk, *extra, names=("attention_weights",), decode=True
        )
        logits.append(out[:, -1])
        for path, value in found.items():
            weights[path].append(value)
    return jnp.stack(logits, 1), {path: jnp.concatenate(w, axis=2) for path, w in weights.items()}


@functools.partial(jax.jit, static_argnums=(0, 3))
def _lm_replay(graphdef, params, tokens, prompt_length):
    model = nnx.merge(graphdef, params)
    model.init_cache(tokens.shape[0], tokens.shape[1])
    return _replay(model, tokens, prompt_length)


@functools.partial(jax.jit, static_argnums=0)
def _transformer_replay(graphdef, params, source, source_mask, tokens):
    model = nnx.merge(graphdef, params)
    encoded = model.encode(source, source_mask)
    model.init_cache(tokens.shape[0], tokens.shape[1], encoded, source_mask)
    return _replay(model.decode, tokens, 1, None)  # decode(ids, encoded=None, decode=True)


@functools.partial(jax.jit, static_argnums=0)
def _teacher_forced(graphdef, params, *inputs):
    model = nnx.merge(graphdef, params)
    return collect_intermediates(model, *inputs, names=("attention_weights",))[1]


def _check_equal(teacher_forced: dict, replayed: dict, length: int):
    """Every replayed layer's weights [B, N, T, cache] equal the teacher-forced ones
    [B, N, T, S] on the first S cache positions; the positions never filled hold 0."""
    for path, stepped in replayed.items():
        forced = np.asarray(teacher_forced[path])
        S = forced.shape[-1]
        np.testing.assert_allclose(stepped[..., :S], forced, atol=1e-5, err_msg=str(path))
        np.testing.assert_array_equal(stepped[..., S:length], 0.0)


def test_lm_self_attention_of_the_decoded_sequence_is_what_the_cached_steps_saw(lm):
    prompt = ids(0, (B, T0))
    tokens = decoding.greedy(lm, prompt, max_new_tokens=M)
    logits, replayed = _lm_replay(*nnx.split(lm), tokens, T0)
    np.testing.assert_array_equal(np.argmax(logits, -1), tokens[:, T0:])  # the decoding's steps
    layers = [("blocks", i, "self_attention", "attention_weights") for i in (0, 1)]
    assert sorted(replayed) == layers
    assert replayed[layers[1]].shape == (B, 4, T0 + M - 1, T0 + M)
    teacher_forced = _teacher_forced(*nnx.split(lm), tokens[:, :-1])
    _check_equal(teacher_forced, replayed, T0 + M)


LAYERS = ("cross_attention", "self_attention")


def test_transformer_attention_of_the_decoded_sequence_is_what_the_cached_steps_saw(transformer):
    source, source_mask = source_batch()
    bos = jnp.ones((B, 1), jnp.int32)
    tokens = decoding.greedy(
        transformer, bos, source=source, source_mask=source_mask, max_new_tokens=M
    )
    logits, replayed = _transformer_replay(*nnx.split(transformer), source, source_mask, tokens)
    np.testing.assert_array_equal(np.argmax(logits, -1), tokens[:, 1:])
    cross, own = (("decoder_blocks", 0, name, "attention_weights") for name in LAYERS)
    assert set(replayed) == {cross, own}
    teacher_forced = _teacher_forced(*nnx.split(transformer), source, tokens[:, :-1], source_mask)
    _check_equal(teacher_forced, replayed, 1 + M)
    padding = np.broadcast_to(~np.asarray(source_mask)[:, None, None], replayed[cross].shape)
    np.testing.assert_array_equal(np.asarray(replayed[cross])[padding], 0.0)


@functools.partial(jax.jit, static_argnums=0)
def _rnn_replay(graphdef, params, source, source_mask, tokens):
    """The decoder cell run one token per call, as `Seq2SeqRNNStepper.step` runs it: the logits
    [B, L - 1, V] and the alignment over the original source positions [B, L - 1, S]."""
    model = nnx.merge(graphdef, params)
    memory, carry = model.encode(source, source_mask)
    logits, weights = [], []
    for t in range(tokens.shape[1] - 1):
        carry, out = model.decoder(carry, model.target_embedding(tokens[:, t]), memory)
        logits.append(model.output_proj(out.features))
        weights.append(jnp.take_along_axis(out.weights, memory["order"], axis=-1))
    return jnp.stack(logits, 1), jnp.stack(weights, 1)


@functools.partial(jax.jit, static_argnums=0)
def _rnn_teacher_forced(graphdef, params, source, tgt_in, source_mask):
    model = nnx.merge(graphdef, params)
    _, found = collect_intermediates(model, source, tgt_in, source_mask, names=("alignment",))
    return found[("alignment",)]


RNN_CONFIGS = {
    "bahdanau": dict(cell="gru", bidirectional=True, reverse_source=True),
    "luong": dict(cell="lstm", num_layers=2, score="general", input_feeding=True),
}


@pytest.mark.parametrize("attention", sorted(RNN_CONFIGS))
def test_rnn_alignment_of_the_decoded_sequence_is_what_the_steps_saw(attention):
    fields = dict(vocab_size=V, embed_dim=8, hidden_dim=12, attention=attention)
    model = build(Seq2SeqRNN, Seq2SeqRNNConfig(**fields, **RNN_CONFIGS[attention]), 0)
    source, source_mask = source_batch()
    bos = jnp.ones((B, 1), jnp.int32)
    tokens = decoding.greedy(model, bos, source=source, source_mask=source_mask, max_new_tokens=M)
    logits, stepped = _rnn_replay(*nnx.split(model), source, source_mask, tokens)
    np.testing.assert_array_equal(np.argmax(logits, -1), tokens[:, 1:])
    forced = _rnn_teacher_forced(*nnx.split(model), source, tokens[:, :-1], source_mask)
    assert forced.shape == (B, M, source.shape[1])
    np.testing.assert_allclose(stepped, forced, atol=1e-5)
    padding = np.broadcast_to(~np.asarray(source_mask)[:, None], forced.shape)
    np.testing.assert_array_equal(np.asarray(forced)[padding], 0.0)
