"""Greedy search and ancestral sampling, one token per step in a jitted `lax.while_loop`.

    y_t = argmax_v p(v | y_<t, x)                                       (greedy)
    y_t ~ p(v | y_<t, x)^(1/τ), restricted to the top k / the top-p nucleus   (Holtzman et al. 2020)

Both return the tokens [B, T0 + M]. The attention behind a decoded sequence is read by running
the model on it, teacher forced, under `attn.layers.collect_intermediates`: the cached steps
compute the same weights (see the README, "Decoding").
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from attn.decoding import stepper as stepping
from attn.decoding.inputs import Request, check_key, check_sampling, stepper_of
from attn.decoding.logits import filter_logits
from attn.typing import Array, ArrayLike


def greedy(
    model: Any,
    prompt: ArrayLike,
    *,
    max_new_tokens: int,
    eos_id: int | None = None,
    source: ArrayLike | None = None,
    source_mask: ArrayLike | None = None,
    pad_id: int = 0,
) -> Array:
    """Greedy search: y_t = argmax_v log p(v | y_<t, x), in one jitted `lax.while_loop`.

    Args:
      model: a `Stepper`, or a model with a `stepper()` method (`TransformerLM`, `Transformer`,
        `Seq2SeqRNN`).
      prompt: int [B, T0], T0 >= 1: the tokens to continue (for an encoder-decoder, the
        start-of-sequence token).
      max_new_tokens: M >= 1 tokens to generate; the loop stops early once every row has
        emitted `eos_id`.
      eos_id: end-of-sequence id in [0, V): a row that emits it is finished, and every later
        token of that row is `pad_id`. None: every row gets M tokens.
      source: int [B, S], the encoder input of an encoder-decoder model.
      source_mask: [B, S], 1/True = real source token; None: no padding.
      pad_id: the id in [0, V) written after a row's EOS.

    Returns:
      tokens int32 [B, T0 + M], the prompt followed by the new tokens.
    """
    request = Request.make(
        "greedy", model, prompt, source, source_mask, max_new_tokens, eos_id, pad_id
    )
    return _run(request, None, None, None, None)


def sample(
    model: Any,
    prompt: ArrayLike,
    *,
    key: Array,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_id: int | None = None,
    source: ArrayLike | None = None,
    source_mask: ArrayLike | None = None,
    pad_id: int = 0,
) -> Array:
    """Ancestral sampling: y_t ~ softmax(logits_t / τ) restricted to the top-k tokens and then to
    the top-p nucleus (Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration").

    The nucleus is the smallest set of most probable tokens whose probability (after the
    temperature and top-k) reaches p. Step t draws with `jax.random.fold_in(key, t)`, so a fixed
    key reproduces the same tokens.

    Args:
      model, prompt, max_new_tokens, eos_id, source, source_mask, pad_id: as in `greedy`.
      key: a JAX random key.
      temperature: τ > 0; below 1 sharpens, above 1 flattens the distribution.
      top_k: keep the k most probable tokens, 1 <= k <= V; None: all.
      top_p: nucleus mass in (0, 1]; None (or 1): no nucleus restriction.

    Returns:
      tokens int32 [B, T0 + M].
    """
    request = Request.make(
        "sample", model, prompt, source, source_mask, max_new_tokens, eos_id, pad_id
    )
    key = check_key(key)
    return _run(request, key, *check_sampling(temperature, top_k, top_p, request.vocab_size))


def _run(request: Request, key, temperature, top_k, top_p) -> Array:
    """`_generate` on a checked request: the prompt followed by the new tokens, [B, T0 + M]."""
    new_tokens = _generate(
        request.static,
        request.params,
        request.prompt,
        request.source,
        request.source_mask,
        *request.special_ids,
        key,
        temperature,
        top_k,
        top_p,
        max_new_tokens=request.max_new_tokens,
    )
    return jnp.concatenate([request.prompt, new_tokens], axis=1)


@functools.partial(jax.jit, static_argnames=("static", "max_new_tokens"))
def _generate(
    static,
    params,
    prompt,
    source,
    source_mask,
    eos_id,
    pad_id,
    key,
    temperature,
    top_k,
    top_p,
    *,
    max_new_tokens,
):
    """The greedy (key None) and sampling loop: the new tokens int32 [B, M].

    Only the presence of `eos_id`, `key`, `top_k`, `top_p` (None or not) changes the compiled
    function; their values, like the parameters, are arguments.
    """
    stepper = stepper_of(static, params)
    B, M = prompt.shape[0], max_new_tokens
    logits, state = stepping.start(stepper, prompt, source, source_mask, M)

    def choose(logits, i):  # [B, V] -> int32 [B]
        if key is None:
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        filtered = filter_logits(logits, temperature, top_k, top_p)
        return jax.random.categorical(jax.random.fold_in(key, i), filtered).astype(jnp.int32)

    def emit(i, logits, tokens, finished):
        token = jnp.where(finished, pad_id, choose(logits, i))
        tokens = tokens.at[:, i].set(token)
        if eos_id is not None:
            finished = finished | (token == eos_id)
        return token, tokens, finished

    tokens = jnp.full((B, M), pad_id, jnp.int32)
    first = emit(0, logits, tokens, jnp.zeros(B, bool))
    carry = (jnp.asarray(1, jnp.int32), state, *first)

    def running(carry):
        i, _, _, _, finished = carry
        return (i < M) & ~jnp.all(finished)

    def body(carry):
        i, state, token, tokens, finished = carry
        logits, state = stepping.step(stepper, state, token)
        return (i + 1, state, *emit(i, logits, tokens, finished))

    _, _, _, tokens, _ = jax.lax.while_loop(running, body, carry)
    return tokens
