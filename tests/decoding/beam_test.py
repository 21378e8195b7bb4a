"""`attn.decoding.beam_search`: cached against uncached decoding, beam size 1 against greedy
search, the n-best list against exhaustive search over every sequence of a 5-token vocabulary,
the length penalty, and finished hypotheses."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn import decoding
from attn.models.position_kinds import POSITION_KINDS
from tests.decoding.peaked_models import (
    SMALL_M,
    SMALL_PROMPT,
    SMALL_V,
    T0,
    B,
    M,
    ids,
    make_lm,
    make_transformer,
    source_batch,
)
from tests.decoding.references import (
    UncachedLM,
    UncachedTransformer,
    full_logits,
    gnmt,
    sequence_log_probs,
)


def test_beam_search_with_the_cache_equals_the_uncached_reference(lm, transformer):
    prompt = ids(1, (B, T0))
    options = dict(beam_size=4, max_new_tokens=M, eos_id=2)
    cached = decoding.beam_search(lm, prompt, **options)
    uncached = decoding.beam_search(UncachedLM(lm), prompt, **options)
    assert cached.sequences.shape == (B, 4, T0 + M) and cached.scores.shape == (B, 4)
    np.testing.assert_array_equal(cached.sequences, uncached.sequences)
    np.testing.assert_allclose(cached.scores, uncached.scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cached.log_probs, uncached.log_probs, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(cached.tokens, cached.sequences[:, 0])
    # The encoder-decoder: the beams also reorder the cross-attention caches and source mask.
    source, source_mask = source_batch()
    bos = jnp.ones((B, 1), jnp.int32)
    options = dict(options, beam_size=3, source=source, source_mask=source_mask)
    cached = decoding.beam_search(transformer, bos, **options)
    uncached = decoding.beam_search(UncachedTransformer(transformer), bos, **options)
    np.testing.assert_array_equal(cached.sequences, uncached.sequences)
    np.testing.assert_allclose(cached.scores, uncached.scores, rtol=1e-5, atol=1e-5)
    # Both follow the beams (`reorder`): the log-probabilities are those of the teacher-forced
    # model on the hypotheses found, up to their EOS.
    sequences = np.asarray(cached.sequences).reshape(B * 3, 1 + M)
    assert len({tuple(s) for s in sequences}) > B
    rows = np.repeat(np.arange(B), 3)
    logits = full_logits(transformer, source[rows], sequences[:, :-1], source_mask[rows])
    token_log_probs = np.take_along_axis(
        jax.nn.log_softmax(logits, axis=-1), sequences[:, 1:, None], axis=-1
    )[..., 0]
    ended = sequences[:, 1:] == 2
    lengths = np.where(ended.any(-1), np.argmax(ended, axis=-1) + 1, M)
    real = np.arange(M)[None, :] < lengths[:, None]
    expected = np.sum(np.where(real, token_log_probs, 0.0), axis=1).reshape(B, 3)
    np.testing.assert_allclose(cached.log_probs, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("position", [kind for kind in POSITION_KINDS if kind != "learned"])
def test_greedy_with_the_cache_equals_the_uncached_reference_for_every_position_kind(position):
    """The shared models above use learned positions; the other kinds place the cached queries
    with the cache index too (sinusoids, rotation, ALiBi and T5 offsets)."""
    lm = make_lm(position=position)
    prompt = ids(1, (B, T0))
    cached = decoding.greedy(lm, prompt, max_new_tokens=M)
    np.testing.assert_array_equal(cached, decoding.greedy(UncachedLM(lm), prompt, max_new_tokens=M))
    transformer = make_transformer(position=position)
    source, source_mask = source_batch()
    options = dict(max_new_tokens=M, source=source, source_mask=source_mask)
    bos = jnp.ones((B, 1), jnp.int32)
    cached = decoding.greedy(transformer, bos, **options)
    uncached = decoding.greedy(UncachedTransformer(transformer), bos, **options)
    np.testing.assert_array_equal(cached, uncached)


def test_beam_size_one_equals_greedy(transformer):
    source, source_mask = source_batch()
    bos = jnp.ones((B, 1), jnp.int32)
    inputs = dict(source=source, source_mask=source_mask, max_new_tokens=M)
    tokens = decoding.greedy(transformer, bos, **inputs)
    for alpha in (0.0, 0.6, 2.0):
        result = decoding.beam_search(transformer, bos, beam_size=1, length_penalty=alpha, **inputs)
        np.testing.assert_array_equal(result.tokens, tokens)


def _all_hypotheses(vocab: int, steps: int, eos_id: int) -> np.ndarray:
    """Every distinct sequence of `steps` tokens once cut after its first EOS (then padding 0)."""
    hypotheses = set()
    for tokens in itertools.product(range(vocab), repeat=steps):
        cut = tokens.index(eos_id) + 1 if eos_id in tokens else steps
        hypotheses.add(tokens[:cut] + (0,) * (steps - cut))
    return np.array(sorted(hypotheses), np.int32)


def _score_all(model, prompt_row, hypotheses, eos_id, alpha):
    """Token log-probs [R, steps], GNMT scores, log-probs and lengths [R] of the hypotheses."""
    R, steps = hypotheses.shape
    ended = hypotheses == eos_id
    lengths = np.where(ended.any(axis=1), np.argmax(ended, axis=1) + 1, steps)
    prompts = np.broadcast_to(np.asarray(prompt_row), (R, len(prompt_row)))
    token_log_probs = sequence_log_probs(
        model, np.concatenate([prompts, hypotheses], 1), len(prompt_row)
    )
    real = np.arange(steps)[None, :] < lengths[:, None]
    log_probs = np.sum(np.where(real, token_log_probs, 0.0), axis=1)
    return token_log_probs, log_probs / gnmt(lengths, alpha), log_probs, lengths


def test_beam_search_finds_the_best_sequence_of_exhaustive_search(small_lm):
    """V=5, 4 new tokens, EOS=1, α=0.6: every one of the 5^4 sequences scored by brute force.

    Beam search with K beams is exact when every prefix of the best hypothesis ranks among the
    K most probable live (EOS-free) prefixes of its length; the test checks that first. On this
    model and prompt greedy search misses the best hypothesis, and so would a search that
    followed the wrong beams or scored with the wrong length.
    """
    eos_id, alpha, K = 1, 0.6, 3
    hypotheses = _all_hypotheses(SMALL_V, SMALL_M, eos_id)
    result = decoding.beam_search(
        small_lm,
        SMALL_PROMPT,
        beam_size=K,
        max_new_tokens=SMALL_M,
        length_penalty=alpha,
        eos_id=eos_id,
    )
    index = {tuple(h): i for i, h in enumerate(hypotheses)}
    for row, prompt_row in enumerate(np.asarray(SMALL_PROMPT)):
        token_log_probs, scores, log_probs, lengths = _score_all(
            small_lm, prompt_row, hypotheses, eos_id, alpha
        )
        best = int(np.argmax(scores))
        for t in range(1, int(lengths[best])):
            live = np.all(hypotheses[:, :t] != eos_id, axis=1)
            prefixes = dict(
                zip(map(tuple, hypotheses[live, :t]), token_log_probs[live, :t].sum(1), strict=True)
            )
            ranking = sorted(prefixes, key=prefixes.get, reverse=True)
            assert ranking.index(tuple(hypotheses[best, :t])) < K, f"row {row}: inexact at {t}"
        greedy = _greedy_hypothesis(hypotheses, token_log_probs, eos_id)
        assert greedy != best, f"row {row}: greedy search is exact here; the test proves little"
        np.testing.assert_array_equal(result.tokens[row, len(prompt_row) :], hypotheses[best])
        # Every member of the n-best list is scored as exhaustive search scores it, best first.
        found = [index[tuple(s)] for s in np.asarray(result.sequences[row, :, len(prompt_row) :])]
        assert len(set(found)) == K
        np.testing.assert_allclose(result.scores[row], scores[found], rtol=1e-5)
        np.testing.assert_allclose(result.log_probs[row], log_probs[found], rtol=1e-5)
        np.testing.assert_allclose(result.scores[row, 0], scores.max(), rtol=1e-5)
        assert np.all(np.diff(np.asarray(result.scores[row])) <= 0)


def _greedy_hypothesis(hypotheses, token_log_probs, eos_id) -> int:
    """The index of the hypothesis that greedy search picks, from the exhaustive table."""
    candidates = np.arange(len(hypotheses))
    for t in range(hypotheses.shape[1]):
        best_token = hypotheses[candidates[np.argmax(token_log_probs[candidates, t])], t]
        candidates = candidates[hypotheses[candidates, t] == best_token]
        if best_token == eos_id:
            break
    (index,) = candidates
    return int(index)


def test_length_penalty_favours_longer_hypotheses(small_lm):
    lengths = []
    for alpha in (0.0, 3.0):
        tokens = decoding.beam_search(
            small_lm,
            SMALL_PROMPT,
            beam_size=3,
            max_new_tokens=SMALL_M,
            length_penalty=alpha,
            eos_id=1,
        ).tokens
        lengths.append(np.sum(np.asarray(tokens[:, SMALL_PROMPT.shape[1] :]) != 0))
    assert lengths[1] > lengths[0]


def test_finished_hypotheses_stay_finished(lm):
    prompt = ids(1, (B, T0))
    eos_id, pad_id = 5, 7
    result = decoding.beam_search(
        lm, prompt, beam_size=4, max_new_tokens=M, eos_id=eos_id, pad_id=pad_id
    )
    new = np.asarray(result.sequences[..., T0:])  # [B, K, M]
    ended = new == eos_id
    assert ended.any() and not ended.all(), "choose another eos_id"
    first = np.where(ended.any(-1), np.argmax(ended, axis=-1), M)
    after = np.arange(M) > first[..., None]
    assert np.all(new[after] == pad_id)
    assert not np.any((new == pad_id) & ~after)  # this model never emits pad_id itself
    # Each score counts the tokens up to the hypothesis's EOS, no further.
    sequences = np.where(new == pad_id, 0, new).reshape(B * 4, M)
    prompts = np.repeat(np.asarray(prompt), 4, axis=0)
    token_log_probs = sequence_log_probs(lm, np.concatenate([prompts, sequences], 1), T0)
    lengths = np.minimum(first + 1, M).reshape(-1)
    real = np.arange(M)[None, :] < lengths[:, None]
    expected = np.sum(np.where(real, token_log_probs, 0.0), axis=1) / gnmt(lengths, 0.6)
    np.testing.assert_allclose(np.ravel(result.scores), expected, rtol=1e-5)
