"""Autoregressive decoding: greedy search, sampling (temperature, top-k, top-p) and beam search.

    y_t = argmax_v p(v | y_<t, x)                                       (greedy)
    y_t ~ p(v | y_<t, x)^(1/τ), restricted to the top k / the top-p nucleus   (Holtzman et al. 2020)
    beam search: keep the K best prefixes by log p(y_<t | x); a hypothesis ending in EOS scores
    log p(y | x) / lp(|y|),  lp(n) = ((5 + n) / 6)^α                    (Wu et al. 2016, GNMT)

Every function drives one small, functional interface, `Decoder`, inside a single jitted
`jax.lax.while_loop` with static shapes (compiled once per shape and setting). Models that
implement `Decoder` are used as they are; `TransformerLM` and `Transformer` are adapted through
their key/value caches (`DECODER_ADAPTERS`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from attn.layers.attention import AttentionWeights
from attn.models.lm import TransformerLM
from attn.models.transformer import Transformer
from attn.typing import Array, ArrayLike

DecoderState = Any  # a pytree of arrays, batch first (see `Decoder`)

MASKED = -1e30
"""The log-probability / logit of an excluded token or an empty beam: finite (no NaN from
-inf - -inf) and far below any real score."""


@runtime_checkable
class Decoder(Protocol):
    """A next-token distribution computed step by step: what greedy, sampling and beam search need.

    A decoder turns a prompt (and, for an encoder-decoder, a source sequence) into the logits of
    the next token and a `state` (the recurrent state of an RNN, the key/value caches of a
    transformer), then advances the state one token at a time. The decoding functions call its
    methods inside `jax.jit` and `jax.lax.while_loop`, so the methods must be pure functions of
    their arguments and of the decoder's parameters: no side effects, static shapes. An
    `nnx.Module` decoder is split with `nnx.split` and merged inside the jitted function, so its
    parameters are arguments of the compiled function, not constants baked into it; any other
    object is a static argument of `jax.jit` (hashed by identity, its arrays become constants).

    The state is a pytree of arrays. Every leaf with a batch axis has it first (axis 0, size B);
    scalar leaves (a position index shared by every row) have none. `step` returns a state of the
    same structure, shapes and dtypes as the one it was given (it is a `lax.while_loop` carry).

    Attributes:
      vocab_size: V, the size of the output vocabulary (the last axis of the logits).

    Methods:
      start(prompt, source, source_mask, max_length) -> (logits, state, weights):
        runs the encoder (if any) on `source` int [B, S] with `source_mask` [B, S] (True = real
        token; None: no padding; both None for a decoder-only model) and consumes the prompt
        int [B, T0] (T0 >= 1; for an encoder-decoder, the start-of-sequence token(s)). Returns the
        logits [B, V] of the token that follows the prompt, the state, and the attention weights
        [B, S] behind those logits (or None). `max_length` (static) is the longest sequence,
        prompt included, that later steps will reach: where a decoder cannot decode that far
        (a learned position table, a cache) it raises a ValueError naming `max_new_tokens`.
      step(state, tokens) -> (logits, state, weights):
        consumes one token per row, int [B], and returns the logits [B, V] of the next one, the
        new state and the attention weights [B, S] of this step (or None).
      reorder(state, indices) -> state:
        row i of the new state is row `indices[i]` of `state`, int [B'] with B' possibly != B.
        Beam search uses it to tile the batch into beams and to follow the selected beams.
        `gather_rows` is the implementation for states whose batch axis is axis 0 everywhere.

    Attention weights: what each step attended to, for plotting an alignment. Cross-attention
    (or an RNN's alignment) over the S source positions for an encoder-decoder; a decoder-only
    model returns its self-attention over the cache positions. Unused weights cost nothing:
    inside `jax.jit` the computation of an unused output is removed.
    """

    vocab_size: int

    def start(
        self,
        prompt: Array,
        source: Array | None,
        source_mask: Array | None,
        max_length: int,
    ) -> tuple[Array, DecoderState, Array | None]: ...

    def step(
        self, state: DecoderState, tokens: Array
    ) -> tuple[Array, DecoderState, Array | None]: ...

    def reorder(self, state: DecoderState, indices: Array) -> DecoderState: ...


def gather_rows(state: DecoderState, indices: Array) -> DecoderState:
    """Row i of every batched leaf becomes row `indices[i]`: x[indices] along axis 0.

    Scalar leaves (shared by all rows, like a cache index) are kept as they are.

    Args:
      state: a pytree of arrays, batch on axis 0 of every non-scalar leaf.
      indices: int [B'] rows to take.

    Returns:
      the same pytree, every non-scalar leaf with B' rows.
    """
    return jax.tree.map(lambda x: x if jnp.ndim(x) == 0 else jnp.take(x, indices, axis=0), state)


# ---------------------------------------------------------------------------------------------
# Adapters: the models whose decoding state lives in nnx cache variables.


class TransformerLMDecoder:
    """`Decoder` over a `TransformerLM` and its key/value caches.

    The state is the `nnx.Cache` state of the model (keys and values [B, max_length, K, H] and
    the shared cache index of every block). `start` allocates the caches of `model` itself (the
    decoding functions pass a copy merged inside `jax.jit`) and prefills the prompt in one call.
    Weights: the self-attention of the last block, averaged over heads, over the max_length
    cache positions [B, max_length] (zero at positions not yet filled).
    """

    def __init__(self, model: TransformerLM, return_weights: bool = False):
        self.model = model
        self.vocab_size = model.config.vocab_size
        self.return_weights = return_weights

    def start(self, prompt, source, source_mask, max_length):
        if source is not None or source_mask is not None:
            raise ValueError(
                "source: TransformerLM is a decoder-only model, source and source_mask must be "
                f"None, got source of shape {None if source is None else jnp.shape(source)}"
            )
        config = self.model.config
        if config.position == "learned" and max_length > config.max_length:
            raise ValueError(
                f"max_new_tokens: the prompt ({prompt.shape[1]} tokens) plus max_new_tokens must "
                f"fit the learned position table of max_length={config.max_length}, got "
                f"{max_length} tokens in all"
            )
        self.model.init_cache(prompt.shape[0], max_length)
        layer = self.model.blocks[-1].self_attention
        layer.capture_weights = self.return_weights
        logits, weights = _run_capturing(layer, self.model, prompt, decode=True)
        return logits, nnx.state(self.model, nnx.Cache), weights

    def step(self, state, tokens):
        model = _with_cache(self.model, state)
        layer = model.blocks[-1].self_attention
        logits, weights = _run_capturing(layer, model, tokens[:, None], decode=True)
        return logits, nnx.state(model, nnx.Cache), weights

    reorder = staticmethod(gather_rows)


class TransformerDecoder:
    """`Decoder` over an encoder-decoder `Transformer` and its caches.

    `start` encodes the source once, allocates the decoder caches (`Transformer.init_cache`,
    which projects the encoder output to every block's cross-attention keys and values) and
    prefills the prompt (the start-of-sequence token or tokens). The state is the model's
    `nnx.Cache` state: self-attention keys and values [B, max_length, K, H], cross-attention keys
    and values [B, S, K, H], the source mask [B, S] and the shared cache index. Weights: the
    cross-attention of the last decoder block averaged over heads, [B, S].
    """

    def __init__(self, model: Transformer, return_weights: bool = False):
        self.model = model
        self.vocab_size = model.config.output_vocab_size
        self.return_weights = return_weights

    def start(self, prompt, source, source_mask, max_length):
        if source is None:
            raise ValueError(
                "source: an encoder-decoder Transformer needs the source token ids int [B, S], "
                "got None"
            )
        config = self.model.config
        if config.position == "learned" and max_length > config.max_length:
            raise ValueError(
                f"max_new_tokens: the prompt ({prompt.shape[1]} tokens) plus max_new_tokens must "
                f"fit the learned position table of max_length={config.max_length}, got "
                f"{max_length} tokens in all"
            )
        encoded = self.model.encode(source, source_mask)
        self.model.init_cache(prompt.shape[0], max_length, encoded, source_mask)
        layer = self.model.decoder_blocks[-1].cross_attention
        layer.capture_weights = self.return_weights
        logits, weights = _run_capturing(layer, self.model.decode, prompt, None, decode=True)
        return logits, nnx.state(self.model, nnx.Cache), weights

    def step(self, state, tokens):
        model = _with_cache(self.model, state)
        layer = model.decoder_blocks[-1].cross_attention
        logits, weights = _run_capturing(layer, model.decode, tokens[:, None], None, decode=True)
        return logits, nnx.state(model, nnx.Cache), weights

    reorder = staticmethod(gather_rows)


def _with_cache(model: nnx.Module, cache: nnx.State) -> nnx.Module:
    """A fresh module with `model`'s structure and parameters and the given cache state.

    Merging (instead of updating `model`) creates the variables at the current trace level, as
    the body of a `lax.while_loop` needs.
    """
    graphdef, _, rest = nnx.split(model, nnx.Cache, ...)
    return nnx.merge(graphdef, cache, rest)


def _run_capturing(layer, fn, *args, **kwargs) -> tuple[Array, Array | None]:
    """fn(*args) -> (logits at the last position [B, V], weights [B, S] or None).

    The weights are those that `layer` (with `capture_weights` set) sows during the call, at the
    last query position, averaged over heads.
    """
    if not layer.capture_weights:
        return fn(*args, **kwargs)[:, -1], None
    logits, captured = nnx.capture(fn, AttentionWeights)(*args, **kwargs)
    ((_, variable),) = nnx.to_flat_state(captured)
    (weights,) = variable.get_value()  # [B, N, T, S]: one call
    return logits[:, -1], jnp.mean(weights[:, :, -1].astype(jnp.float32), axis=1)


DECODER_ADAPTERS: dict[type, Callable[..., Decoder]] = {
    TransformerLM: TransformerLMDecoder,
    Transformer: TransformerDecoder,
}
"""Model type → `adapter(model, return_weights)`, a `Decoder` for models that do not implement
the protocol themselves. Register a new model family here; subclasses use their base's adapter."""


def as_decoder(model: Any, return_weights: bool = False) -> Decoder:
    """The `Decoder` for `model`: the model itself when it implements the protocol, otherwise
    its adapter from `DECODER_ADAPTERS` (looked up along the class hierarchy).

    Args:
      model: a `Decoder`, or a model whose type (or a base type) is in `DECODER_ADAPTERS`.
      return_weights: ask an adapter to return attention weights (protocol implementations
        decide themselves what they return).

    Returns:
      a `Decoder`. An adapter's `start` allocates the caches of `model` in place.
    """
    if isinstance(model, Decoder):
        return model
    for cls in type(model).__mro__:
        if cls in DECODER_ADAPTERS:
            return DECODER_ADAPTERS[cls](model, return_weights)
    supported = sorted(cls.__name__ for cls in DECODER_ADAPTERS)
    raise TypeError(
        f"model: expected an attn.decoding.Decoder (vocab_size, start, step, reorder) or one of "
        f"{supported}, got {type(model).__name__}"
    )


# ---------------------------------------------------------------------------------------------
# Greedy search and sampling.


def greedy(
    model: Any,
    prompt: ArrayLike,
    *,
    max_new_tokens: int,
    eos_id: int | None = None,
    source: ArrayLike | None = None,
    source_mask: ArrayLike | None = None,
    pad_id: int = 0,
    return_weights: bool = False,
) -> Array | tuple[Array, Array]:
    """Greedy search: y_t = argmax_v log p(v | y_<t, x), in one jitted `lax.while_loop`.

    Args:
      model: a `Decoder`, or a model with an adapter in `DECODER_ADAPTERS` (`TransformerLM`,
        `Transformer`).
      prompt: int [B, T0], T0 >= 1: the tokens to continue (for an encoder-decoder, the
        start-of-sequence token).
      max_new_tokens: M >= 1 tokens to generate; the loop stops early once every row has
        emitted `eos_id`.
      eos_id: end-of-sequence id in [0, V): a row that emits it is finished, and every later
        token of that row is `pad_id`. None: every row gets M tokens.
      source: int [B, S], the encoder input of an encoder-decoder model.
      source_mask: [B, S], 1/True = real source token; None: no padding.
      pad_id: the id in [0, V) written after a row's EOS.
      return_weights: also return the attention weights behind each new token.

    Returns:
      tokens int32 [B, T0 + M], the prompt followed by the new tokens; with `return_weights`,
      the pair (tokens, weights float32 [B, M, S]), zero after a row's EOS. What S and the
      weights are depends on the decoder (see `Decoder`; for `TransformerLM`, S = T0 + M).
    """
    request = _Request.make(
        "greedy", model, prompt, source, source_mask, max_new_tokens, eos_id, pad_id
    )
    return request.generate(None, None, None, None, return_weights)


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
    return_weights: bool = False,
) -> Array | tuple[Array, Array]:
    """Ancestral sampling: y_t ~ softmax(logits_t / τ) restricted to the top-k tokens and then to
    the top-p nucleus (Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration").

    The nucleus is the smallest set of most probable tokens whose probability (after the
    temperature and top-k) reaches p. Step t draws with `jax.random.fold_in(key, t)`, so a fixed
    key reproduces the same tokens.

    Args:
      model, prompt, max_new_tokens, eos_id, source, source_mask, pad_id, return_weights: as in
        `greedy`.
      key: a JAX random key.
      temperature: τ > 0; below 1 sharpens, above 1 flattens the distribution.
      top_k: keep the k most probable tokens, 1 <= k <= V; None: all.
      top_p: nucleus mass in (0, 1]; None (or 1): no nucleus restriction.

    Returns:
      tokens int32 [B, T0 + M], or (tokens, weights [B, M, S]) with `return_weights`.
    """
    request = _Request.make(
        "sample", model, prompt, source, source_mask, max_new_tokens, eos_id, pad_id
    )
    V = request.vocab_size
    key = _check_key(key)
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise ValueError(f"sample: temperature must be a float > 0, got {temperature!r}")
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"sample: temperature must be a finite float > 0, got {temperature!r}")
    if top_k is not None and (not _is_int(top_k) or not 1 <= top_k <= V):
        raise ValueError(f"sample: top_k must be None or an int in [1, V={V}], got {top_k!r}")
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, int | float) or not 0 < top_p <= 1
    ):
        raise ValueError(f"sample: top_p must be None or a float in (0, 1], got {top_p!r}")
    return request.generate(
        key,
        jnp.asarray(temperature, jnp.float32),
        None if top_k is None else jnp.asarray(top_k, jnp.int32),
        None if top_p is None else jnp.asarray(top_p, jnp.float32),
        return_weights,
    )


def filter_logits(
    logits: Array,
    temperature: float | Array = 1.0,
    top_k: int | Array | None = None,
    top_p: float | Array | None = None,
) -> Array:
    """logits / τ, with every token outside the top k and outside the top-p nucleus masked.

    Args:
      logits: float [B, V].
      temperature: τ > 0.
      top_k: keep the k largest logits, 1 <= k <= V (ties with the k-th are kept too); None: all.
      top_p: then keep the smallest set of most probable tokens whose probability reaches
        top_p, in (0, 1] (ties with its least probable member are kept too); None: all.

    Returns:
      float32 [B, V]: the scaled logits, `MASKED` (a large finite negative) where excluded.
    """
    logits = logits.astype(jnp.float32) / temperature
    ranked = jnp.sort(logits, axis=-1)[:, ::-1]  # [B, V], descending
    if top_k is not None:
        kth = jnp.take(ranked, top_k - 1, axis=1)[:, None]  # [B, 1]
        logits = jnp.where(logits < kth, MASKED, logits)
        ranked = jnp.where(ranked < kth, MASKED, ranked)
    if top_p is not None:
        probs = jax.nn.softmax(ranked, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs  # probability of the better tokens
        kept = mass_before < top_p  # a prefix of the ranking, never empty
        lowest = jnp.min(jnp.where(kept, ranked, jnp.inf), axis=-1, keepdims=True)  # [B, 1]
        logits = jnp.where(logits < lowest, MASKED, logits)
    return logits


@functools.partial(
    jax.jit,
    static_argnames=("static", "max_new_tokens", "return_weights"),
)
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
    return_weights,
):
    """The greedy (key None) and sampling loop: (tokens [B, M], weights [B, M, S] or None).

    Only the presence of `eos_id`, `key`, `top_k`, `top_p` (None or not) changes the compiled
    function; their values, like the parameters, are arguments.
    """
    decoder = as_decoder(_merge(static, params), return_weights)
    B, M = prompt.shape[0], max_new_tokens
    logits, state, weights = decoder.start(prompt, source, source_mask, prompt.shape[1] + M)
    logits, weights = _check_outputs(decoder, "start", B, logits, weights, return_weights)

    def choose(logits, i):  # [B, V] -> int32 [B]
        if key is None:
            return jnp.argmax(logits, axis=-1).astype(jnp.int32)
        filtered = filter_logits(logits, temperature, top_k, top_p)
        return jax.random.categorical(jax.random.fold_in(key, i), filtered).astype(jnp.int32)

    def emit(i, logits, weights, tokens, finished, all_weights):
        token = jnp.where(finished, pad_id, choose(logits, i))
        tokens = tokens.at[:, i].set(token)
        if return_weights:
            all_weights = all_weights.at[:, i].set(jnp.where(finished[:, None], 0.0, weights))
        if eos_id is not None:
            finished = finished | (token == eos_id)
        return token, tokens, finished, all_weights

    tokens = jnp.full((B, M), pad_id, jnp.int32)
    all_weights = jnp.zeros((B, M, weights.shape[-1]), jnp.float32) if return_weights else None
    first = emit(0, logits, weights, tokens, jnp.zeros(B, bool), all_weights)
    carry = (jnp.asarray(1, jnp.int32), state, *first)

    def running(carry):
        i, _, _, _, finished, _ = carry
        return (i < M) & ~jnp.all(finished)

    def body(carry):
        i, state, token, tokens, finished, all_weights = carry
        logits, new_state, weights = decoder.step(state, token)
        _check_state(decoder, state, new_state)
        logits, weights = _check_outputs(decoder, "step", B, logits, weights, return_weights)
        return (i + 1, new_state, *emit(i, logits, weights, tokens, finished, all_weights))

    _, _, _, tokens, _, all_weights = jax.lax.while_loop(running, body, carry)
    return tokens, all_weights


# ---------------------------------------------------------------------------------------------
# Beam search.


class BeamSearchResult(NamedTuple):
    """The n-best list of `beam_search`, best first.

    Fields:
      tokens: int32 [B, T0 + M], the best hypothesis (= sequences[:, 0]).
      sequences: int32 [B, K, T0 + M], the K best hypotheses, each the prompt followed by its
        new tokens, `pad_id` after its EOS.
      scores: float32 [B, K], log p(y | x) / lp(|y|), descending; -inf for an empty slot (fewer
        than K distinct hypotheses exist).
      log_probs: float32 [B, K], log p(y | x) of the new tokens (EOS included).
      weights: float32 [B, K, M, S], the attention weights behind each new token (zero after
        EOS), or None without `return_weights`.
    """

    tokens: Array
    sequences: Array
    scores: Array
    log_probs: Array
    weights: Array | None


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
    return_weights: bool = False,
    return_n_best: bool = False,
) -> Array | tuple[Array, Array] | BeamSearchResult:
    """Beam search with the GNMT length penalty (Wu et al. 2016, "Google's Neural Machine
    Translation System"), in one jitted `lax.while_loop`:

        score(y) = log p(y | x) / lp(|y|),   lp(n) = ((5 + n) / 6)^α

    where |y| counts the new tokens, EOS included. Each step extends the K live hypotheses
    ("beams") by every token: the K extensions ending in EOS are finished hypotheses (scored,
    and kept if among the K best finished ones); the K best extensions by log-probability that
    do not end in EOS are the next beams, and the decoder state follows them
    (`Decoder.reorder`). After M tokens the live beams are finished too. The search stops early
    once, in every row, K hypotheses are finished and none is worse than the best live beam
    could still become (its log-probability / lp(M), a bound for α >= 0).

    With K = 1 and no `eos_id` this is greedy search. With an `eos_id`, K = 1 may differ from
    greedy search: where EOS is the most probable token, beam search also follows the best
    continuation and keeps whichever scores higher.

    Args:
      model, prompt, max_new_tokens, eos_id, source, source_mask, pad_id: as in `greedy`.
      beam_size: K in [1, V].
      length_penalty: α >= 0; 0 ranks by log-probability alone, larger α favours longer
        hypotheses.
      return_weights: also return the attention weights behind each new token of the best
        hypothesis, [B, M, S] (all of them in the n-best result).
      return_n_best: return the whole `BeamSearchResult`.

    Returns:
      tokens int32 [B, T0 + M] of the best hypothesis; (tokens, weights [B, M, S]) with
      `return_weights`; the `BeamSearchResult` with `return_n_best`.
    """
    request = _Request.make(
        "beam_search", model, prompt, source, source_mask, max_new_tokens, eos_id, pad_id
    )
    V = request.vocab_size
    if not _is_int(beam_size) or not 1 <= beam_size <= V:
        raise ValueError(
            f"beam_search: beam_size must be an int in [1, V={V}] (the vocabulary size), got "
            f"{beam_size!r}"
        )
    if (
        isinstance(length_penalty, bool)
        or not isinstance(length_penalty, int | float)
        or not 0 <= length_penalty < math.inf
    ):
        raise ValueError(
            "beam_search: length_penalty (alpha) must be a finite float >= 0, got "
            f"{length_penalty!r}"
        )
    sequences, scores, log_probs, weights = _beam_search(
        request.static,
        request.params,
        request.prompt,
        request.source,
        request.source_mask,
        *request.special_ids,
        jnp.asarray(length_penalty, jnp.float32),
        beam_size=beam_size,
        max_new_tokens=max_new_tokens,
        return_weights=return_weights,
    )
    if return_n_best:
        return BeamSearchResult(sequences[:, 0], sequences, scores, log_probs, weights)
    if return_weights:
        return sequences[:, 0], weights[:, 0]
    return sequences[:, 0]


class _Hypotheses(NamedTuple):
    """K hypotheses per row: scores, log_probs [B, K], tokens [B, K, M], weights [B, K, M, S]."""

    scores: Array
    log_probs: Array
    tokens: Array
    weights: Array | None

    def take(self, indices: Array) -> _Hypotheses:
        """Hypothesis k of row b becomes hypothesis indices[b, k], int [B, K']."""
        return jax.tree.map(jax.vmap(lambda x, i: x[i]), self, _like(self, indices))

    def best(self, other: _Hypotheses, K: int) -> _Hypotheses:
        """The K best of both sets by score."""
        both = jax.tree.map(lambda a, b: jnp.concatenate([a, b], axis=1), self, other)
        return both.take(jax.lax.top_k(both.scores, K)[1])


def _like(tree, value):
    """`value` at every leaf of `tree` (a prefix for jax.tree.map that skips None fields)."""
    return jax.tree.map(lambda _: value, tree)


@functools.partial(
    jax.jit,
    static_argnames=("static", "beam_size", "max_new_tokens", "return_weights"),
)
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
    return_weights,
):
    """(sequences [B, K, T0 + M], scores [B, K], log_probs [B, K], weights [B, K, M, S] | None)."""
    decoder = as_decoder(_merge(static, params), return_weights)
    (B, T0), K, M = prompt.shape, beam_size, max_new_tokens
    logits, state, weights = decoder.start(prompt, source, source_mask, T0 + M)
    logits, weights = _check_outputs(decoder, "start", B, logits, weights, return_weights)
    V = logits.shape[-1]
    rows = jnp.repeat(jnp.arange(B), K)  # [B * K]: beam k of row b is row b * K + k
    state = decoder.reorder(state, rows)
    _check_rows(decoder, "reorder", state, B * K)
    logits = logits[rows]
    weights = None if weights is None else weights[rows]

    def lp(length):
        return ((5.0 + length) / 6.0) ** length_penalty

    def empty(log_probs):
        tokens = jnp.full((B, K, M), pad_id, jnp.int32)
        all_weights = None
        if return_weights:
            all_weights = jnp.zeros((B, K, M, weights.shape[-1]), jnp.float32)
        return _Hypotheses(jnp.full((B, K), MASKED), log_probs, tokens, all_weights)

    def extend(hypotheses, i, token, step_weights):
        """Write `token` [B, K] (and its weights [B, K, S]) at position i of every hypothesis."""
        tokens = hypotheses.tokens.at[:, :, i].set(token)
        all_weights = hypotheses.weights
        if return_weights:
            all_weights = all_weights.at[:, :, i].set(step_weights)
        return hypotheses._replace(tokens=tokens, weights=all_weights)

    def select(i, logits, weights, alive, finished):
        """Extend the beams by the logits [B * K, V] of position i."""
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1).reshape(B, K, V)
        live = alive.log_probs > MASKED / 2  # [B, K]
        total = jnp.where(live[..., None], alive.log_probs[..., None] + log_probs, MASKED)
        step_weights = None if weights is None else weights.reshape(B, K, -1)
        if eos_id is not None:
            ended = extend(alive, i, jnp.full((B, K), eos_id), step_weights)
            ended_log_probs = total[..., eos_id]
            scores = jnp.where(live, ended_log_probs / lp(i + 1), MASKED)
            finished = finished.best(ended._replace(scores=scores, log_probs=ended_log_probs), K)
            total = total.at[..., eos_id].set(MASKED)
        log_probs, best = jax.lax.top_k(total.reshape(B, K * V), K)  # [B, K]
        parent, token = best // V, (best % V).astype(jnp.int32)
        picked = None
        if return_weights:
            picked = jax.vmap(lambda w, p: w[p])(step_weights, parent)  # [B, K, S]
        alive = extend(alive.take(parent)._replace(log_probs=log_probs), i, token, picked)
        return parent, token, alive, finished

    start_log_probs = jnp.full((B, K), MASKED).at[:, 0].set(0.0)  # one live beam per row
    first = select(0, logits, weights, empty(start_log_probs), empty(jnp.full((B, K), MASKED)))
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
        state = decoder.reorder(state, (jnp.arange(B)[:, None] * K + parent).reshape(B * K))
        _check_rows(decoder, "reorder", state, B * K)
        logits, new_state, weights = decoder.step(state, token.reshape(B * K))
        _check_state(decoder, state, new_state)
        logits, weights = _check_outputs(decoder, "step", B * K, logits, weights, return_weights)
        return (i + 1, new_state, *select(i, logits, weights, alive, finished))

    i, _, _, _, alive, finished = jax.lax.while_loop(running, body, carry)
    complete = (i == M) & (alive.log_probs > MASKED / 2)  # ran to the end: the beams are done
    scores = jnp.where(complete, alive.log_probs / lp(M), MASKED)
    finished = finished.best(alive._replace(scores=scores), K)
    valid = finished.scores > MASKED / 2
    tokens = jnp.where(valid[..., None], finished.tokens, pad_id)
    sequences = jnp.concatenate([jnp.broadcast_to(prompt[:, None], (B, K, T0)), tokens], axis=2)
    scores = jnp.where(valid, finished.scores, -jnp.inf)
    log_probs = jnp.where(valid, finished.log_probs, -jnp.inf)
    return sequences, scores, log_probs, finished.weights


# ---------------------------------------------------------------------------------------------
# Choosing a method by name.

DECODING_METHODS: dict[str, Callable[..., Any]] = {
    "greedy": greedy,
    "sample": sample,
    "beam_search": beam_search,
}


def decode(model: Any, prompt: ArrayLike, *, method: str, **options: Any) -> Any:
    """`DECODING_METHODS[method](model, prompt, **options)`: a decoding method chosen by name
    (from a configuration file, a command-line flag).

    Args:
      model, prompt: as in `greedy`.
      method: "greedy", "sample" or "beam_search".
      **options: the keyword arguments of that method.

    Returns:
      what the method returns.
    """
    if method not in DECODING_METHODS:
        raise ValueError(
            f"decode: method must be one of {sorted(DECODING_METHODS)}, got {method!r}"
        )
    return DECODING_METHODS[method](model, prompt, **options)


# ---------------------------------------------------------------------------------------------
# Inputs and checks.


@dataclasses.dataclass(frozen=True)
class _Request:
    """Checked inputs of a decoding call, split into the arguments of the jitted loops."""

    static: Any  # the GraphDef of an nnx.Module, or the decoder itself
    params: Any  # the nnx.State of an nnx.Module, or None
    prompt: Array
    source: Array | None
    source_mask: Array | None
    vocab_size: int
    max_new_tokens: int
    eos_id: int | None
    pad_id: int

    @classmethod
    def make(
        cls, fn, model, prompt, source, source_mask, max_new_tokens, eos_id, pad_id
    ) -> _Request:
        V = as_decoder(model).vocab_size
        prompt = _check_ids(fn, "prompt", prompt, "T0", V)
        B = prompt.shape[0]
        if not _is_int(max_new_tokens) or max_new_tokens < 1:
            raise ValueError(f"{fn}: max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        if eos_id is not None and (not _is_int(eos_id) or not 0 <= eos_id < V):
            raise ValueError(
                f"{fn}: eos_id must be None or an id in [0, V={V}) (the vocabulary), got {eos_id!r}"
            )
        if not _is_int(pad_id) or not 0 <= pad_id < V:
            raise ValueError(f"{fn}: pad_id must be an id in [0, V={V}), got {pad_id!r}")
        if source is not None:
            source = _check_ids(fn, "source", source, "S", None)
            if source.shape[0] != B:
                raise ValueError(
                    f"{fn}: source must have the batch of the prompt, [B, S] with B={B}, got "
                    f"shape {source.shape}"
                )
        if source_mask is not None:
            source_mask = jnp.asarray(source_mask)
            expected = "[B, S] like source" if source is None else f"{list(source.shape)}"
            if source is None or source_mask.shape != source.shape:
                raise ValueError(
                    f"{fn}: source_mask must have shape {expected} (1/True = real token), got "
                    f"shape {source_mask.shape}" + (" and no source" if source is None else "")
                )
            source_mask = source_mask.astype(bool)
        if isinstance(model, nnx.Module):
            static, params = nnx.split(model)
        else:
            static, params = model, None
        return cls(static, params, prompt, source, source_mask, V, max_new_tokens, eos_id, pad_id)

    @property
    def special_ids(self) -> tuple[Array | None, Array]:
        """(eos_id, pad_id) as int32 arguments of the jitted loops (eos_id None stays None)."""
        eos_id = None if self.eos_id is None else jnp.asarray(self.eos_id, jnp.int32)
        return eos_id, jnp.asarray(self.pad_id, jnp.int32)

    def generate(self, key, temperature, top_k, top_p, return_weights):
        """Run `_generate`: tokens [B, T0 + M] (and the weights with `return_weights`)."""
        new_tokens, weights = _generate(
            self.static,
            self.params,
            self.prompt,
            self.source,
            self.source_mask,
            *self.special_ids,
            key,
            temperature,
            top_k,
            top_p,
            max_new_tokens=self.max_new_tokens,
            return_weights=return_weights,
        )
        tokens = jnp.concatenate([self.prompt, new_tokens], axis=1)
        return (tokens, weights) if return_weights else tokens


def _merge(static, params):
    """Inverse of the split in `_Request.make`."""
    return static if params is None else nnx.merge(static, params)


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_ids(fn: str, name: str, ids, letter: str, vocab_size: int | None) -> Array:
    """ids as int32 [B, letter] with at least one column, values in [0, vocab_size) if given."""
    ids = jnp.asarray(ids)
    if ids.ndim != 2 or not jnp.issubdtype(ids.dtype, jnp.integer) or ids.shape[1] < 1:
        raise ValueError(
            f"{fn}: {name} must be integer token ids [B, {letter}] with {letter} >= 1, got "
            f"{ids.dtype} array of shape {ids.shape}"
        )
    if vocab_size is not None and not isinstance(ids, jax.core.Tracer) and ids.size:
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= vocab_size:
            raise ValueError(
                f"{fn}: {name} ids must lie in [0, V={vocab_size}), got ids from {low} to {high}"
            )
    return ids.astype(jnp.int32)


def _check_key(key) -> Array:
    """A typed key array of shape [] or a raw uint32 [2] key."""
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if (typed and key.shape != ()) or (
        not typed and (key.shape != (2,) or key.dtype != jnp.uint32)
    ):
        raise ValueError(
            "sample: key must be one JAX random key (jax.random.key(seed), shape [], or "
            f"jax.random.PRNGKey(seed), uint32 [2]), got {key.dtype} array of shape {key.shape}"
        )
    return key


def _check_outputs(decoder, method, B, logits, weights, return_weights):
    """Trace-time checks of what `start`/`step` returned: logits [B, V] (as float32), weights."""
    V = decoder.vocab_size
    name = type(decoder).__name__
    if jnp.shape(logits) != (B, V):
        raise ValueError(
            f"{name}.{method} must return logits [B, V] = [{B}, {V}], got shape "
            f"{jnp.shape(logits)} (is the batch of its state or source that of the prompt?)"
        )
    if not return_weights:
        return logits.astype(jnp.float32), None
    if weights is None or jnp.ndim(weights) != 2 or jnp.shape(weights)[0] != B:
        raise ValueError(
            f"return_weights=True needs {name}.{method} to return weights [B, S] with B={B}, got "
            f"{'None' if weights is None else f'shape {jnp.shape(weights)}'}"
        )
    return logits.astype(jnp.float32), weights.astype(jnp.float32)


def _check_rows(decoder, method, state, rows):
    """Every batched leaf of the state returned by `method` has `rows` rows."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        if jnp.ndim(leaf) and jnp.shape(leaf)[0] != rows:
            raise ValueError(
                f"{type(decoder).__name__}.{method} must return a state whose batched leaves have "
                f"{rows} rows on axis 0, got shape {jnp.shape(leaf)} at "
                f"{jax.tree_util.keystr(path)}"
            )


def _check_state(decoder, before, after):
    """`step` keeps the structure, shapes and dtypes of the state (a while-loop carry)."""

    def spec(state):
        leaves, structure = jax.tree.flatten(state)
        return structure, [(jnp.shape(x), jnp.result_type(x)) for x in leaves]

    if spec(before) != spec(after):
        raise ValueError(
            f"{type(decoder).__name__}.step must return a state of the structure, shapes and "
            f"dtypes it was given: expected {spec(before)}, got {spec(after)}"
        )
