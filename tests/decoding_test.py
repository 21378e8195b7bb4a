"""`attn.decoding`: greedy search, sampling and beam search through the `Decoder` protocol.

Small models with every weight re-drawn with a wide spread (peaked next-token distributions, so
that a wrong position, beam or mask changes the chosen tokens). The references: an uncached
decoder (in this file, implementing the protocol) that re-runs the full forward pass on the
growing sequence every step, exhaustive search over every sequence of a 5-token vocabulary, a
NumPy top-k / nucleus filter, and the attention weights of the full forward pass.

The decoding loops compile once per model structure, shape and static setting; the tests share
a few of each so that the compiled loops are reused.
"""

from __future__ import annotations

import collections
import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn import decoding
from attn.layers.intermediates import collect_intermediates
from attn.layers.position import LearnedPositions
from attn.models import Transformer, TransformerConfig, TransformerLM, TransformerLMConfig
from attn.models.seq2seq_rnn import Seq2SeqRNN, Seq2SeqRNNConfig

V, D, N, F = 23, 24, 4, 40
B, T0, M = 3, 4, 6  # batch, prompt length, new tokens
S = 7  # source length
SMALL_V, SMALL_M = 5, 4  # the model searched exhaustively: 5^4 sequences
SMALL_SEED = 0
SMALL_PROMPT = jnp.asarray([[1, 4, 0], [2, 3, 4]], jnp.int32)


def _build(cls, config, seed: int):
    """`cls(config)` with every weight drawn with a wide spread (the default inits make attention
    nearly uniform), built abstractly and filled in, without running the initialisers (eagerly,
    each initialiser compiles anew for every parameter shape: seconds per model on CPU).

    Embeddings N(0, 0.5²) (they are also the output projection), learned positions N(0, 1),
    kernels N(0, gain² / fan_in) with gain 1.6 for queries and keys, biases N(0, 0.1²),
    layer-norm scales N(1, 0.3²) and biases N(0, 0.2²); any other parameter (recurrent cells,
    attention scores) N(0, 2² / fan_in) for a matrix, N(0, 0.5²) for a vector.
    """
    abstract = nnx.eval_shape(lambda: cls(config, rngs=nnx.Rngs(seed)))
    rng = np.random.default_rng(seed + 1000)
    drawn = set()

    def draw(variable, std, mean=0.0):
        value = variable.get_value()
        variable.set_value(jnp.asarray(mean + std * rng.standard_normal(value.shape), value.dtype))
        drawn.add(id(variable))

    for path, node in nnx.iter_graph(abstract):
        if isinstance(node, nnx.Linear):
            gain = 1.6 if path and path[-1] in ("query", "key") else 1.0
            draw(node.kernel, gain / math.sqrt(node.kernel.get_value().shape[0]))
            if node.bias is not None:
                draw(node.bias, 0.1)
        elif isinstance(node, nnx.LayerNorm):
            draw(node.scale, 0.3, 1.0)
            draw(node.bias, 0.2)
        elif isinstance(node, nnx.Embed | LearnedPositions):
            draw(node.embedding, 0.5 if isinstance(node, nnx.Embed) else 1.0)
    for _, node in nnx.iter_graph(abstract):
        if isinstance(node, nnx.Param) and id(node) not in drawn:
            shape = node.get_value().shape
            draw(node, 2.0 / math.sqrt(shape[0]) if len(shape) > 1 else 0.5)
    graphdef, state = nnx.split(abstract)

    def fill(leaf):  # what is still abstract: the random streams' keys and counters
        if not isinstance(leaf, jax.ShapeDtypeStruct):
            return leaf
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.key(seed)
        return jnp.zeros(leaf.shape, leaf.dtype)

    return nnx.merge(graphdef, jax.tree.map(fill, state))


def _lm(seed: int = 0, **overrides) -> TransformerLM:
    fields = dict(vocab_size=V, num_layers=2, num_heads=N, num_kv_heads=2, model_dim=D, mlp_dim=F)
    return _build(
        TransformerLM, TransformerLMConfig(**{**fields, "max_length": 16, **overrides}), seed
    )


def _transformer(seed: int = 0) -> Transformer:
    """Post-LN with a separate output matrix (tied, the argmax tends to repeat the input)."""
    config = TransformerConfig(
        vocab_size=V,
        num_encoder_layers=1,
        num_decoder_layers=1,
        num_heads=N,
        num_kv_heads=2,
        model_dim=D,
        mlp_dim=F,
        max_length=16,
        position="learned",
        tie_output=False,
    )
    return _build(Transformer, config, seed)


@pytest.fixture(scope="module")
def lm() -> TransformerLM:
    return _lm()


@pytest.fixture(scope="module")
def transformer() -> Transformer:
    return _transformer()


@pytest.fixture(scope="module")
def small_lm() -> TransformerLM:
    return _lm(seed=SMALL_SEED, vocab_size=SMALL_V, max_length=8)


def _ids(seed: int, shape: tuple[int, int], vocab: int = V) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).integers(1, vocab, shape), jnp.int32)


def _source() -> tuple[jax.Array, jax.Array]:
    """Source ids [B, S] and their mask: the rows have 7, 5 and 3 real tokens."""
    lengths = np.array([S, 5, 3])
    mask = np.arange(S)[None, :] < lengths[:, None]
    return jnp.where(mask, _ids(5, (B, S)), 0), jnp.asarray(mask)


# ---------------------------------------------------------------------------------------------
# The uncached reference: a user-written decoder that re-runs the whole forward pass.


class UncachedLM(nnx.Module):
    """`Decoder` over `TransformerLM` without a cache: state = (sequence [B, L], length)."""

    def __init__(self, model: TransformerLM):
        self.model = model
        self.vocab_size = model.config.vocab_size

    def start(self, prompt, source, source_mask, max_length):
        sequence = jnp.zeros((prompt.shape[0], max_length), jnp.int32)
        sequence = sequence.at[:, : prompt.shape[1]].set(prompt)
        length = jnp.asarray(prompt.shape[1], jnp.int32)
        return self._next(sequence, length), (sequence, length), None

    def step(self, state, tokens):
        sequence, length = state
        sequence = jax.lax.dynamic_update_slice(sequence, tokens[:, None], (0, length))
        return self._next(sequence, length + 1), (sequence, length + 1), None

    def reorder(self, state, indices):
        return decoding.gather_rows(state, indices)

    def _next(self, sequence, length):
        logits = self.model(sequence)  # [B, L, V], causal: the padding is never seen
        return jax.lax.dynamic_index_in_dim(logits, length - 1, axis=1, keepdims=False)


class UncachedTransformer(UncachedLM):
    """`Decoder` over `Transformer` without caches: state = (sequence, length, source, mask)."""

    def __init__(self, model: Transformer):
        self.model = model
        self.vocab_size = model.config.output_vocab_size

    def start(self, prompt, source, source_mask, max_length):
        sequence = jnp.zeros((prompt.shape[0], max_length), jnp.int32)
        sequence = sequence.at[:, : prompt.shape[1]].set(prompt)
        state = (sequence, jnp.asarray(prompt.shape[1], jnp.int32), source, source_mask)
        return self._full(state), state, None

    def step(self, state, tokens):
        sequence, length, source, source_mask = state
        sequence = jax.lax.dynamic_update_slice(sequence, tokens[:, None], (0, length))
        state = (sequence, length + 1, source, source_mask)
        return self._full(state), state, None

    def _full(self, state):
        sequence, length, source, source_mask = state
        logits = self.model(source, sequence, source_mask)
        return jax.lax.dynamic_index_in_dim(logits, length - 1, axis=1, keepdims=False)


@jax.jit
def _jit_call(graphdef, params, *args):
    return nnx.merge(graphdef, params)(*args)


def _logits(model, *args) -> np.ndarray:
    """The full forward pass, jitted (eagerly, every operation compiles on its own)."""
    return np.asarray(_jit_call(*nnx.split(model), *args))


@functools.partial(jax.jit, static_argnums=2)
def _jit_weights(graphdef, params, path, *args):
    _, found = collect_intermediates(nnx.merge(graphdef, params), *args)
    return found[(*path, "attention_weights")]


def _weights(model, path, *args) -> np.ndarray:
    """The attention weights [B, N, T, S] of the layer at `path` in the full forward pass."""
    return np.asarray(_jit_weights(*nnx.split(model), path, *args))


@functools.partial(jax.jit, static_argnums=3)
def _lm_log_probs(graphdef, params, sequences, prompt_length):
    """log p of each new token of `sequences` [R, L] under the LM: [R, L - prompt_length]."""
    logits = nnx.merge(graphdef, params)(sequences)
    log_probs = jax.nn.log_softmax(logits[:, prompt_length - 1 : -1], axis=-1)
    return jnp.take_along_axis(log_probs, sequences[:, prompt_length:, None], axis=-1)[..., 0]


def _sequence_log_probs(model, sequences, prompt_length):
    return np.asarray(
        _lm_log_probs(*nnx.split(model), jnp.asarray(sequences, jnp.int32), prompt_length),
        np.float64,
    )


def _gnmt(length, alpha):
    return ((5.0 + length) / 6.0) ** alpha


# ---------------------------------------------------------------------------------------------
# Cached decoding equals the uncached reference.


def test_greedy_chooses_the_argmax_of_the_full_forward_pass(lm, transformer):
    prompt = _ids(0, (B, T0))
    tokens = decoding.greedy(lm, prompt, max_new_tokens=M)
    assert tokens.shape == (B, T0 + M) and tokens.dtype == jnp.int32
    np.testing.assert_array_equal(tokens[:, :T0], prompt)
    logits = _logits(lm, tokens)[:, T0 - 1 : -1]  # [B, M, V]
    np.testing.assert_array_equal(tokens[:, T0:], np.argmax(logits, axis=-1))
    source, source_mask = _source()
    bos = jnp.ones((B, 1), jnp.int32)
    tokens = decoding.greedy(
        transformer, bos, source=source, source_mask=source_mask, max_new_tokens=M
    )
    logits = _logits(transformer, source, tokens[:, :-1], source_mask)  # teacher-forced
    np.testing.assert_array_equal(tokens[:, 1:], np.argmax(logits, axis=-1))
    # The source padding matters: the same ids without the mask decode differently.
    everything = jnp.ones_like(source_mask)
    unmasked = decoding.greedy(
        transformer, bos, source=source, source_mask=everything, max_new_tokens=M
    )
    assert not np.array_equal(unmasked, tokens)


def test_beam_search_with_the_cache_equals_the_uncached_reference(lm, transformer):
    prompt = _ids(1, (B, T0))
    options = dict(beam_size=4, max_new_tokens=M, eos_id=2, return_n_best=True)
    cached = decoding.beam_search(lm, prompt, **options)
    uncached = decoding.beam_search(UncachedLM(lm), prompt, **options)
    assert cached.sequences.shape == (B, 4, T0 + M) and cached.scores.shape == (B, 4)
    np.testing.assert_array_equal(cached.sequences, uncached.sequences)
    np.testing.assert_allclose(cached.scores, uncached.scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cached.log_probs, uncached.log_probs, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(cached.tokens, cached.sequences[:, 0])
    # The encoder-decoder: the beams also reorder the cross-attention caches and source mask.
    source, source_mask = _source()
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
    logits = _logits(transformer, source[rows], sequences[:, :-1], source_mask[rows])
    token_log_probs = np.take_along_axis(
        jax.nn.log_softmax(logits, axis=-1), sequences[:, 1:, None], axis=-1
    )[..., 0]
    ended = sequences[:, 1:] == 2
    lengths = np.where(ended.any(-1), np.argmax(ended, axis=-1) + 1, M)
    real = np.arange(M)[None, :] < lengths[:, None]
    expected = np.sum(np.where(real, token_log_probs, 0.0), axis=1).reshape(B, 3)
    np.testing.assert_allclose(cached.log_probs, expected, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Beam search.


def test_beam_size_one_equals_greedy(transformer):
    source, source_mask = _source()
    bos = jnp.ones((B, 1), jnp.int32)
    inputs = dict(source=source, source_mask=source_mask, max_new_tokens=M, return_weights=True)
    tokens, weights = decoding.greedy(transformer, bos, **inputs)
    for alpha in (0.0, 0.6, 2.0):
        result = decoding.beam_search(
            transformer, bos, beam_size=1, length_penalty=alpha, return_n_best=True, **inputs
        )
        np.testing.assert_array_equal(result.tokens, tokens)
        np.testing.assert_allclose(result.weights[:, 0], weights, atol=1e-6)


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
    token_log_probs = _sequence_log_probs(
        model, np.concatenate([prompts, hypotheses], 1), len(prompt_row)
    )
    real = np.arange(steps)[None, :] < lengths[:, None]
    log_probs = np.sum(np.where(real, token_log_probs, 0.0), axis=1)
    return token_log_probs, log_probs / _gnmt(lengths, alpha), log_probs, lengths


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
        return_n_best=True,
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
        )
        lengths.append(np.sum(np.asarray(tokens[:, SMALL_PROMPT.shape[1] :]) != 0))
    assert lengths[1] > lengths[0]


def test_finished_hypotheses_stay_finished(lm):
    prompt = _ids(1, (B, T0))
    eos_id, pad_id = 5, 7
    result = decoding.beam_search(
        lm, prompt, beam_size=4, max_new_tokens=M, eos_id=eos_id, pad_id=pad_id, return_n_best=True
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
    token_log_probs = _sequence_log_probs(lm, np.concatenate([prompts, sequences], 1), T0)
    lengths = np.minimum(first + 1, M).reshape(-1)
    real = np.arange(M)[None, :] < lengths[:, None]
    expected = np.sum(np.where(real, token_log_probs, 0.0), axis=1) / _gnmt(lengths, 0.6)
    np.testing.assert_allclose(np.ravel(result.scores), expected, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# EOS and padding in greedy search and sampling.


def test_greedy_pads_after_eos(lm):
    prompt = _ids(0, (B, T0))
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
    prompt = _ids(6, (B, T0))
    options = dict(key=jax.random.key(3), max_new_tokens=M, top_k=V, top_p=1.0)
    free = np.asarray(decoding.sample(lm, prompt, **options))
    eos_id = int(free[1, T0])  # row 1 emits it first
    tokens = np.asarray(decoding.sample(lm, prompt, eos_id=eos_id, **options))
    np.testing.assert_array_equal(tokens[1, : T0 + 1], free[1, : T0 + 1])
    assert np.all(tokens[1, T0 + 1 :] == 0)


# ---------------------------------------------------------------------------------------------
# Sampling.


def _numpy_filter(logits, temperature, top_k, top_p):
    """The tokens [R, V] that top-k then nucleus sampling may draw, in float64."""
    logits = np.asarray(logits, np.float64) / temperature
    allowed = np.ones(logits.shape, bool)
    if top_k is not None:
        allowed &= logits >= np.sort(logits, axis=-1)[:, -top_k][:, None]
    masked = np.where(allowed, logits, -np.inf)
    probs = np.exp(masked - masked.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    for row in range(len(probs)):
        order = np.argsort(-probs[row])
        before = np.cumsum(probs[row, order]) - probs[row, order]
        allowed[row, order[before >= top_p]] = False
    return allowed


@pytest.mark.parametrize(
    "temperature, top_k, top_p",
    [(1.0, 3, None), (0.7, None, 0.6), (1.5, 5, 0.8), (1.0, 1, 1.0), (1.0, None, 0.01)],
)
def test_filter_logits_keeps_exactly_the_allowed_tokens(temperature, top_k, top_p):
    logits = jnp.asarray(np.random.default_rng(0).normal(0, 2, (16, V)), jnp.float32)
    filtered = np.asarray(_jit_filter(logits, temperature, top_k, top_p))
    allowed = _numpy_filter(logits, temperature, top_k, 1.0 if top_p is None else top_p)
    np.testing.assert_array_equal(filtered > decoding.MASKED / 2, allowed)
    scaled = np.asarray(logits) / temperature
    np.testing.assert_allclose(filtered[allowed], scaled[allowed], rtol=1e-6)


_jit_filter = jax.jit(decoding.filter_logits)  # eagerly, every operation compiles on its own


def test_sampling_is_reproducible_and_never_emits_an_excluded_token(lm):
    prompt = _ids(6, (B, T0))
    key = jax.random.key(0)
    options = dict(max_new_tokens=M, temperature=1.3, top_k=4, top_p=0.7)
    tokens = decoding.sample(lm, prompt, key=key, **options)
    np.testing.assert_array_equal(decoding.sample(lm, prompt, key=key, **options), tokens)
    other = decoding.sample(lm, prompt, key=jax.random.key(1), **options)
    assert not np.array_equal(other, tokens)

    def excluded(tokens):  # [B * M]: whether the filters exclude each new token
        logits = _logits(lm, tokens)[:, T0 - 1 : -1].reshape(B * M, V)  # full forward pass
        allowed = _numpy_filter(logits, 1.3, 4, 0.7)
        return ~np.take_along_axis(allowed, np.asarray(tokens[:, T0:]).reshape(-1, 1), 1)[:, 0]

    assert not excluded(tokens).any()
    # The test can tell: sampling without the filters draws excluded tokens.
    free = decoding.sample(
        lm, prompt, key=key, max_new_tokens=M, temperature=1.3, top_k=V, top_p=1.0
    )
    assert excluded(free).any()


def test_top_k_one_is_greedy(lm):
    prompt = _ids(0, (B, T0))
    tokens = decoding.sample(
        lm, prompt, key=jax.random.key(5), max_new_tokens=M, top_k=1, top_p=1.0
    )
    np.testing.assert_array_equal(tokens, decoding.greedy(lm, prompt, max_new_tokens=M))


# ---------------------------------------------------------------------------------------------
# Attention weights.


def test_lm_weights_are_the_last_layers_self_attention(lm):
    prompt = _ids(0, (B, T0))
    tokens, weights = decoding.greedy(lm, prompt, max_new_tokens=M, return_weights=True)
    np.testing.assert_array_equal(tokens, decoding.greedy(lm, prompt, max_new_tokens=M))
    assert weights.shape == (B, M, T0 + M)
    captured = _weights(lm, ("blocks", 1, "self_attention"), tokens[:, :-1])  # [B, N, T, T]
    full = np.mean(captured, axis=1)[:, T0 - 1 :]  # [B, M, T0 + M - 1]
    np.testing.assert_allclose(weights[..., :-1], full, atol=1e-5)
    np.testing.assert_array_equal(weights[..., -1], 0.0)  # the last position is never filled


def test_transformer_weights_are_the_last_blocks_cross_attention(transformer):
    source, source_mask = _source()
    bos = jnp.ones((B, 1), jnp.int32)
    tokens, weights = decoding.greedy(
        transformer,
        bos,
        source=source,
        source_mask=source_mask,
        max_new_tokens=M,
        return_weights=True,
    )
    assert weights.shape == (B, M, S)
    padding = np.broadcast_to(~np.asarray(source_mask)[:, None], (B, M, S))
    np.testing.assert_array_equal(np.asarray(weights)[padding], 0.0)
    path = ("decoder_blocks", 0, "cross_attention")
    captured = _weights(transformer, path, source, tokens[:, :-1], source_mask)
    np.testing.assert_allclose(weights, np.mean(captured, axis=1), atol=1e-5)


def test_beam_weights_follow_the_selected_beams(lm):
    prompt = _ids(1, (B, T0))
    K = 3
    result = decoding.beam_search(
        lm,
        prompt,
        beam_size=K,
        max_new_tokens=M,
        eos_id=5,
        return_weights=True,
        return_n_best=True,
    )
    assert result.weights.shape == (B, K, M, T0 + M)
    sequences = np.asarray(result.sequences[:, :, :-1]).reshape(B * K, -1)
    captured = _weights(lm, ("blocks", 1, "self_attention"), sequences)
    full = np.mean(captured, axis=1)[:, T0 - 1 :].reshape(B, K, M, T0 + M - 1)
    ended = np.asarray(result.sequences[..., T0:]) == 5
    assert ended.any(), "choose another eos_id"
    first = np.where(ended.any(-1), np.argmax(ended, axis=-1), M)
    real = np.arange(M)[None, None, :] <= first[..., None]  # up to the EOS, with it
    weights = np.asarray(result.weights)
    np.testing.assert_allclose(weights[..., :-1][real], full[real], atol=1e-5)
    np.testing.assert_array_equal(weights[~real], 0.0)


# ---------------------------------------------------------------------------------------------
# Compiled once per shape.


def test_each_method_compiles_once_per_shape(monkeypatch):
    """New prompts, new weights of the same structure and new values of the settings that are
    arguments (temperature, top-k, top-p, EOS and pad ids, length penalty) reuse the compiled
    loop: each method traces at most once (not at all when other tests compiled it first)."""
    traces = collections.Counter()
    start = decoding.TransformerLMDecoder.start

    def counting_start(self, prompt, *args):
        traces[prompt.shape[0]] += 1  # the beam search's start sees B rows too: count by caller
        return start(self, prompt, *args)

    monkeypatch.setattr(decoding.TransformerLMDecoder, "start", counting_start)
    for seed in range(3):
        model, prompt = _lm(seed), _ids(seed, (B, T0))
        before = sum(traces.values())
        decoding.greedy(model, prompt, max_new_tokens=M, eos_id=seed + 2, pad_id=seed)
        decoding.sample(
            model,
            prompt,
            key=jax.random.key(seed),
            max_new_tokens=M,
            temperature=1 + seed,
            top_k=2 + seed,
            top_p=0.5 + 0.1 * seed,
        )
        decoding.beam_search(
            model, prompt, beam_size=4, max_new_tokens=M, eos_id=seed, length_penalty=seed
        )
        if seed:
            assert sum(traces.values()) == before, f"seed {seed}: traced again"
    assert sum(traces.values()) <= 3


# ---------------------------------------------------------------------------------------------
# A decoder written by hand.


class Bigram:
    """A plain-object `Decoder`: the next token depends on the last one, logits = table[token]."""

    def __init__(self, table: np.ndarray):
        self.table = jnp.asarray(table, jnp.float32)
        self.vocab_size = table.shape[1]

    def start(self, prompt, source, source_mask, max_length):
        return self.table[prompt[:, -1]], {"last": prompt[:, -1]}, None

    def step(self, state, tokens):
        return self.table[tokens], {"last": tokens}, None

    def reorder(self, state, indices):
        return decoding.gather_rows(state, indices)


def test_a_hand_written_decoder_follows_its_table():
    table = np.full((4, 4), -5.0)
    table[0, 2] = table[2, 3] = table[3, 1] = table[1, 1] = 0.0  # 0 -> 2 -> 3 -> 1 -> 1 ...
    decoder = Bigram(table)
    assert isinstance(decoder, decoding.Decoder)
    prompt = jnp.asarray([[1, 0], [0, 2]], jnp.int32)
    expected = [[1, 0, 2, 3, 1], [0, 2, 3, 1, 1]]
    np.testing.assert_array_equal(decoding.greedy(decoder, prompt, max_new_tokens=3), expected)
    np.testing.assert_array_equal(
        decoding.decode(decoder, prompt, method="beam_search", beam_size=2, max_new_tokens=3),
        expected,
    )
    np.testing.assert_array_equal(
        decoding.greedy(decoder, prompt, max_new_tokens=3, eos_id=3),
        [[1, 0, 2, 3, 0], [0, 2, 3, 0, 0]],
    )


# ---------------------------------------------------------------------------------------------
# A recurrent encoder-decoder, which implements the protocol itself.


@functools.partial(jax.jit, static_argnums=0)
def _rnn_forward(graphdef, params, source, tgt_in, source_mask):
    model = nnx.merge(graphdef, params)
    logits, found = collect_intermediates(model, source, tgt_in, source_mask)
    return logits, found[("alignment",)]


def test_seq2seq_rnn_decodes_through_its_recurrent_state():
    config = Seq2SeqRNNConfig(
        vocab_size=V,
        cell="gru",
        embed_dim=8,
        hidden_dim=12,
        bidirectional=True,
        attention="bahdanau",
    )
    model = _build(Seq2SeqRNN, config, 0)
    assert isinstance(model, decoding.Decoder)
    source, source_mask = _source()
    bos = jnp.ones((B, 1), jnp.int32)
    inputs = dict(source=source, source_mask=source_mask, max_new_tokens=M)
    tokens, weights = decoding.greedy(model, bos, return_weights=True, **inputs)
    logits, alignment = _rnn_forward(*nnx.split(model), source, tokens[:, :-1], source_mask)
    np.testing.assert_array_equal(tokens[:, 1:], np.argmax(logits, axis=-1))
    assert weights.shape == (B, M, S)
    np.testing.assert_allclose(weights, alignment, atol=1e-5)  # the alignment, to plot
    # Beam search follows the beams through `Seq2SeqRNN.reorder`: the n-best log-probabilities
    # are those of the teacher-forced model on the hypotheses.
    result = decoding.beam_search(model, bos, beam_size=3, return_n_best=True, **inputs)
    sequences = np.asarray(result.sequences).reshape(B * 3, 1 + M)
    rows = np.repeat(np.arange(B), 3)
    logits, _ = _rnn_forward(*nnx.split(model), source[rows], sequences[:, :-1], source_mask[rows])
    token_log_probs = np.take_along_axis(
        jax.nn.log_softmax(logits, axis=-1), sequences[:, 1:, None], axis=-1
    )[..., 0]
    expected = np.sum(token_log_probs, axis=1).reshape(B, 3)
    np.testing.assert_allclose(result.log_probs, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(result.scores, expected / _gnmt(M, 0.6), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Bad input.


class WrongState(Bigram):
    """Its step returns a state that grows: not a loop carry."""

    def step(self, state, tokens):
        return self.table[tokens], {"last": jnp.stack([tokens, tokens], 1)}, None


class WrongBatch(Bigram):
    """Its start ignores the prompt's batch."""

    def start(self, prompt, source, source_mask, max_length):
        return self.table[:1], {"last": prompt[:1, -1]}, None


class WrongReorder(Bigram):
    """Its reorder ignores the indices (so the beams never get their rows)."""

    def reorder(self, state, indices):
        return state


_TABLE = np.zeros((4, 4))


def _bad_inputs(lm, transformer):
    prompt = _ids(0, (B, T0))
    source, source_mask = _source()
    bos = jnp.ones((B, 1), jnp.int32)
    greedy, sample, beam = decoding.greedy, decoding.sample, decoding.beam_search
    key = jax.random.key(0)
    small = prompt % 4
    return [
        (lambda: greedy(lm, prompt, max_new_tokens=13), "max_new_tokens.*max_length=16.*17"),
        (lambda: greedy(lm, prompt, max_new_tokens=0), "max_new_tokens must be an int >= 1"),
        (lambda: greedy(lm, prompt[0], max_new_tokens=M), r"prompt must be .*\[B, T0\].*\(4,\)"),
        (lambda: greedy(lm, prompt[:, :0], max_new_tokens=M), r"T0 >= 1.*\(3, 0\)"),
        (lambda: greedy(lm, prompt + V, max_new_tokens=M), r"prompt ids must lie in \[0, V=23\)"),
        (lambda: greedy(lm, prompt, max_new_tokens=M, eos_id=V), r"eos_id .*\[0, V=23\).*23"),
        (lambda: greedy(lm, prompt, max_new_tokens=M, pad_id=-1), r"pad_id .*\[0, V=23\).*-1"),
        (lambda: greedy(lm, prompt, max_new_tokens=M, source=source), "decoder-only.*source"),
        (lambda: greedy(transformer, bos, max_new_tokens=M), "source: .*got None"),
        (
            lambda: greedy(transformer, bos[:2], source=source, max_new_tokens=M),
            r"source must have the batch of the prompt, \[B, S\] with B=2, got shape \(3, 7\)",
        ),
        (
            lambda: greedy(
                transformer, bos, source=source, source_mask=source_mask[:, :5], max_new_tokens=M
            ),
            r"source_mask must have shape \[3, 7\].*\(3, 5\)",
        ),
        (lambda: beam(lm, prompt, beam_size=V + 1, max_new_tokens=M), r"beam_size .*\[1, V=23\]"),
        (lambda: beam(lm, prompt, beam_size=0, max_new_tokens=M), r"beam_size .*got 0"),
        (
            lambda: beam(lm, prompt, beam_size=2, max_new_tokens=M, length_penalty=-1.0),
            "length_penalty .*>= 0, got -1.0",
        ),
        (lambda: sample(lm, prompt, key=key, max_new_tokens=M, top_p=0.0), r"top_p .*\(0, 1\]"),
        (lambda: sample(lm, prompt, key=key, max_new_tokens=M, top_p=1.5), r"top_p .*got 1.5"),
        (lambda: sample(lm, prompt, key=key, max_new_tokens=M, top_k=0), r"top_k .*\[1, V=23\]"),
        (lambda: sample(lm, prompt, key=key, max_new_tokens=M, temperature=0), "temperature .*> 0"),
        (lambda: sample(lm, prompt, key=key, max_new_tokens=M, temperature=-1.0), "got -1.0"),
        (lambda: sample(lm, prompt, key=3, max_new_tokens=M), "key must be one JAX random key"),
        (lambda: decoding.decode(lm, prompt, method="topk"), "method must be one of .*'topk'"),
        (
            lambda: greedy(WrongState(_TABLE), small, max_new_tokens=M),
            "WrongState.step must return a state of the structure, shapes",
        ),
        (
            lambda: greedy(WrongBatch(_TABLE), small, max_new_tokens=M),
            r"WrongBatch.start must return logits \[B, V\] = \[3, 4\], got shape \(1, 4\)",
        ),
        (
            lambda: beam(WrongReorder(_TABLE), small, beam_size=2, max_new_tokens=M),
            r"WrongReorder.reorder must return a state .* 6 rows on axis 0, got shape \(3,\)",
        ),
        (
            lambda: greedy(Bigram(_TABLE), small, max_new_tokens=M, return_weights=True),
            r"return_weights=True needs Bigram.start to return weights \[B, S\].*None",
        ),
    ]


def test_bad_input_raises_a_clear_error(lm, transformer):
    for call, message in _bad_inputs(lm, transformer):
        with pytest.raises(ValueError, match=message):
            call()


def test_a_model_without_a_decoder_raises_a_type_error():
    with pytest.raises(TypeError, match=r"model: expected an attn.decoding.Decoder .*got str"):
        decoding.greedy("gpt2", jnp.ones((1, 1), jnp.int32), max_new_tokens=2)
