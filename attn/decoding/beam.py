"""Beam search with the GNMT length penalty (Wu et al. 2016, "Google's Neural Machine
Translation System"), in one jitted `lax.while_loop`:

    keep the K best prefixes by log p(y_<t | x); a hypothesis ending in EOS scores
    log p(y | x) / lp(|y|),   lp(n) = ((5 + n) / 6)^α
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from attn.decoding import stepper as stepping
from attn.decoding.inputs import Request, check_beam, stepper_of
from attn.decoding.logits import MASKED
from attn.typing import Array, ArrayLike


class BeamSearchResult(NamedTuple):
    """The n-best list of `beam_search`, best first.

    Fields:
      tokens: int32 [B, T0 + M], the best hypothesis (= sequences[:, 0]).
      sequences: int32 [B, K, T0 + M], the K best hypotheses, each the prompt followed by its
        new tokens, `pad_id` after its EOS.
      scores: float32 [B, K], log p(y | x) / lp(|y|), descending; -inf for an empty slot (fewer
        than K distinct hypotheses exist).
      log_probs: float32 [B, K], log p(y | x) of the new tokens (EOS included).
    """

    tokens: Array
    sequences: Array
    scores: Array
    log_probs: Array


def beam_search(
    model: Any,
    prompt: ArrayLike,
    *,
    beam_size: int,
    max_new_tokens: int,
    length_penalty: float = 0.6,
    eos_id: int | None = None,
    source: ArrayLike | None = None,
    source_mask: ArrayLike | None = None,
    pad_id: int = 0,
) -> BeamSearchResult:
    """Beam search: score(y) = log p(y | x) / lp(|y|),   lp(n) = ((5 + n) / 6)^α.

    |y| counts the new tokens, EOS included. Each step extends the K live hypotheses ("beams")
    by every token: the K extensions ending in EOS are finished hypotheses (scored, and kept if
    among the K best finished ones); the K best extensions by log-probability that do not end in
    EOS are the next beams, and the model's state follows them (`Stepper.reorder`). After M
    tokens the live beams are finished too. The search stops early once, in every row, K
    hypotheses are finished and none is worse than the best live beam could still become (its
    log-probability / lp(M), a bound for α >= 0).

    With K = 1 and no `eos_id` this is greedy search. With an `eos_id`, K = 1 may differ from
    greedy search: where EOS is the most probable token, beam search also follows the best
    continuation and keeps whichever scores higher.

    Args:
      model, prompt, max_new_tokens, eos_id, source, source_mask, pad_id: as in `greedy`.
      beam_size: K in [1, V].
      length_penalty: α >= 0; 0 ranks by log-probability alone, larger α favours longer
        hypotheses.

    Returns:
      the `BeamSearchResult`: the best hypothesis `tokens` int32 [B, T0 + M] and the n-best
      list with its scores.
    """
    request = Request.make(
        "beam_search", model, prompt, source, source_mask, max_new_tokens, eos_id, pad_id
    )
    length_penalty = check_beam(beam_size, length_penalty, request.vocab_size)
    sequences, scores, log_probs = _beam_search(
        request.static,
        request.params,
        request.prompt,
        request.source,
        request.source_mask,
        *request.special_ids,
        length_penalty,
        beam_size=beam_size,
        max_new_tokens=max_new_tokens,
    )
    return BeamSearchResult(sequences[:, 0], sequences, scores, log_probs)


class _Hypotheses(NamedTuple):
    """K hypotheses per row: scores, log_probs [B, K] and new tokens [B, K, M]."""

    scores: Array
    log_probs: Array
    tokens: Array

    def take(self, indices: Array) -> _Hypotheses:
        """Hypothesis k of row b becomes hypothesis indices[b, k], int [B, K']."""
        return jax.tree.map(lambda x: jax.vmap(lambda row, i: row[i])(x, indices), self)

    def best(self, other: _Hypotheses, K: int) -> _Hypotheses:
        """The K best of both sets by score."""
        both = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=1), self, other)
        return both.take(jax.lax.top_k(both.scores, K)[1])


@functools.partial(jax.jit, static_argnames=("static", "beam_size", "max_new_tokens"))
def _beam_search(
    static,
    params,
    prompt,
    source,
    source_mask,
    eos_id,
    pad_id,
    length_penalty,
    *,
    beam_size,
    max_new_tokens,
):
    """(sequences int32 [B, K, T0 + M], scores [B, K], log_probs [B, K])."""
    stepper = stepper_of(static, params)
    (B, T0), K, M = prompt.shape, beam_size, max_new_tokens
    logits, state = stepping.start(stepper, prompt, source, source_mask, M)
    V = logits.shape[-1]
    rows = jnp.repeat(jnp.arange(B), K)  # [B * K]: beam k of row b is row b * K + k
    state = stepping.reorder(stepper, state, rows)
    logits = logits[rows]

    def lp(length):
        return ((5.0 + length) / 6.0) ** length_penalty

    def empty(log_probs):
        tokens = jnp.full((B, K, M), pad_id, jnp.int32)
        return _Hypotheses(jnp.full((B, K), MASKED), log_probs, tokens)

    def extend(hypotheses, i, token):
        """Write `token` [B, K] at position i of every hypothesis."""
        return hypotheses._replace(tokens=hypotheses.tokens.at[:, :, i].set(token))

    def select(i, logits, alive, finished):
        """Extend the beams by the logits [B * K, V] of position i."""
        log_probs = jax.nn.log_softmax(logits, axis=-1).reshape(B, K, V)
        live = alive.log_probs > MASKED / 2  # [B, K]
        total = jnp.where(live[..., None], alive.log_probs[..., None] + log_probs, MASKED)
        if eos_id is not None:
            ended = extend(alive, i, jnp.full((B, K), eos_id))
            ended_log_probs = total[..., eos_id]
            scores = jnp.where(live, ended_log_probs / lp(i + 1), MASKED)
            finished = finished.best(ended._replace(scores=scores, log_probs=ended_log_probs), K)
            total = total.at[..., eos_id].set(MASKED)
        log_probs, best = jax.lax.top_k(total.reshape(B, K * V), K)  # [B, K]
        parent, token = best // V, (best % V).astype(jnp.int32)
        alive = extend(alive.take(parent)._replace(log_probs=log_probs), i, token)
        return parent, token, alive, finished

    start_log_probs = jnp.full((B, K), MASKED).at[:, 0].set(0.0)  # one live beam per row
    first = select(0, logits, empty(start_log_probs), empty(jnp.full((B, K), MASKED)))
    carry = (jnp.asarray(1, jnp.int32), state, *first)

    def running(carry):
        i, _, _, _, alive, finished = carry
        if eos_id is None:
            return i < M
        full = jnp.all(finished.scores > MASKED / 2, axis=1)  # [B]
        hopeless = jnp.min(finished.scores, axis=1) >= jnp.max(alive.log_probs, axis=1) / lp(M)
        return (i < M) & ~jnp.all(full & hopeless)

    def body(carry):
        i, state, parent, token, alive, finished = carry
        followed = (jnp.arange(B)[:, None] * K + parent).reshape(B * K)  # the parents' rows
        state = stepping.reorder(stepper, state, followed)
        logits, state = stepping.step(stepper, state, token.reshape(B * K))
        return (i + 1, state, *select(i, logits, alive, finished))

    i, _, _, _, alive, finished = jax.lax.while_loop(running, body, carry)
    complete = (i == M) & (alive.log_probs > MASKED / 2)  # ran to the end: the beams are done
    scores = jnp.where(complete, alive.log_probs / lp(M), MASKED)
    finished = finished.best(alive._replace(scores=scores), K)
    valid = finished.scores > MASKED / 2
    tokens = jnp.where(valid[..., None], finished.tokens, pad_id)
    sequences = jnp.concatenate([jnp.broadcast_to(prompt[:, None], (B, K, T0)), tokens], axis=2)
    scores = jnp.where(valid, finished.scores, -jnp.inf)
    log_probs = jnp.where(valid, finished.log_probs, -jnp.inf)
    return sequences, scores, log_probs
