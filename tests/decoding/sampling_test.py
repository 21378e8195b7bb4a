"""`attn.decoding.greedy` and `sample`: the argmax of the full forward pass, EOS and padding,
reproducible draws that never leave the top-k / top-p set."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from attn import decoding
from tests.decoding.peaked_models import T0, B, M, V, ids, source_batch
from tests.decoding.references import full_logits, numpy_filter


def test_greedy_chooses_the_argmax_of_the_full_forward_pass(lm, transformer):
    prompt = ids(0, (B, T0))
    tokens = decoding.greedy(lm, prompt, max_new_tokens=M)
    assert tokens.shape == (B, T0 + M) and tokens.dtype == jnp.int32
    np.testing.assert_array_equal(tokens[:, :T0], prompt)
    logits = full_logits(lm, tokens)[:, T0 - 1 : -1]  # [B, M, V]
    np.testing.assert_array_equal(tokens[:, T0:], np.argmax(logits, axis=-1))
    src, src_mask = source_batch()
    bos = jnp.ones((B, 1), jnp.int32)
    tokens = decoding.greedy(transformer, bos, source=src, source_mask=src_mask, max_new_tokens=M)
    logits = full_logits(transformer, src, tokens[:, :-1], src_mask)  # teacher-forced
    np.testing.assert_array_equal(tokens[:, 1:], np.argmax(logits, axis=-1))
    # The source padding matters: the same ids without the mask decode differently.
    everything = jnp.ones_like(src_mask)
    unmasked = decoding.greedy(
        transformer, bos, source=src, source_mask=everything, max_new_tokens=M
    )
    assert not np.array_equal(unmasked, tokens)


# ---------------------------------------------------------------------------------------------
# EOS and padding.


def test_greedy_pads_after_eos(lm):
    prompt = ids(0, (B, T0))
    free = np.asarray(decoding.greedy(lm, prompt, max_new_tokens=M))
    eos_id = int(free[0, T0 + 1])  # row 0 emits it second
    tokens = np.asarray(decoding.greedy(lm, prompt, max_new_tokens=M, eos_id=eos_id, pad_id=9))
    for row in range(B):
        ended = np.flatnonzero(free[row, T0:] == eos_id)
        cut = T0 + (ended[0] + 1 if ended.size else M)
        np.testing.assert_array_equal(tokens[row, :cut], free[row, :cut])
        assert np.all(tokens[row, cut:] == 9)
    assert np.all(tokens[0, T0 + 2 :] == 9)


def test_sampling_pads_after_eos(lm):
    prompt = ids(6, (B, T0))
    options = dict(key=jax.random.key(3), max_new_tokens=M, top_k=V, top_p=1.0)
    free = np.asarray(decoding.sample(lm, prompt, **options))
    eos_id = int(free[1, T0])  # row 1 emits it first
    tokens = np.asarray(decoding.sample(lm, prompt, eos_id=eos_id, **options))
    np.testing.assert_array_equal(tokens[1, : T0 + 1], free[1, : T0 + 1])
    assert np.all(tokens[1, T0 + 1 :] == 0)


# ---------------------------------------------------------------------------------------------
# Sampling.


def test_sampling_is_reproducible_and_never_emits_an_excluded_token(lm):
    prompt = ids(6, (B, T0))
    key = jax.random.key(0)
    options = dict(max_new_tokens=M, temperature=1.3, top_k=4, top_p=0.7)
    tokens = decoding.sample(lm, prompt, key=key, **options)
    np.testing.assert_array_equal(decoding.sample(lm, prompt, key=key, **options), tokens)
    other = decoding.sample(lm, prompt, key=jax.random.key(1), **options)
    assert not np.array_equal(other, tokens)

    def excluded(tokens):  # [B * M]: whether the filters exclude each new token
        logits = full_logits(lm, tokens)[:, T0 - 1 : -1].reshape(B * M, V)  # full forward pass
        allowed = numpy_filter(logits, 1.3, 4, 0.7)
        return ~np.take_along_axis(allowed, np.asarray(tokens[:, T0:]).reshape(-1, 1), 1)[:, 0]

    assert not excluded(tokens).any()
    # The test can tell: sampling without the filters draws excluded tokens.
    free = decoding.sample(
        lm, prompt, key=key, max_new_tokens=M, temperature=1.3, top_k=V, top_p=1.0
    )
    assert excluded(free).any()


def test_top_k_one_is_greedy(lm):
    prompt = ids(0, (B, T0))
    tokens = decoding.sample(
        lm, prompt, key=jax.random.key(5), max_new_tokens=M, top_k=1, top_p=1.0
    )
    np.testing.assert_array_equal(tokens, decoding.greedy(lm, prompt, max_new_tokens=M))
