"""What the decoding tests compare against: the full (uncached) forward pass, jitted, decoders
that re-run it on the growing sequence every step, and a NumPy top-k / nucleus filter."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from attn import decoding
from attn.models import Transformer, TransformerLM


class UncachedLM(nnx.Module):
    """`Stepper` over `TransformerLM` without a cache: state = (sequence [B, L], length)."""

    def __init__(self, model: TransformerLM):
        self.model = model
        self.vocab_size = model.config.vocab_size

    def start(self, prompt, source, source_mask, max_length):
        sequence = jnp.zeros((prompt.shape[0], max_length), jnp.int32)
        sequence = sequence.at[:, : prompt.shape[1]].set(prompt)
        length = jnp.asarray(prompt.shape[1], jnp.int32)
        return self._next(sequence, length), (sequence, length)

    def step(self, state, tokens):
        sequence, length = state
        sequence = jax.lax.dynamic_update_slice(sequence, tokens[:, None], (0, length))
        return self._next(sequence, length + 1), (sequence, length + 1)

    def reorder(self, state, indices):
        return decoding.gather_rows(state, indices)

    def _next(self, sequence, length):
        logits = self.model(sequence)  # [B, L, V], causal: the padding is never seen
        return jax.lax.dynamic_index_in_dim(logits, length - 1, axis=1, keepdims=False)


class UncachedTransformer(UncachedLM):
    """`Stepper` over `Transformer` without caches: state = (sequence, length, source, mask)."""

    def __init__(self, model: Transformer):
        self.model = model
        self.vocab_size = model.config.output_vocab_size

    def start(self, prompt, source, source_mask, max_length):
        sequence = jnp.zeros((prompt.shape[0], max_length), jnp.int32)
        sequence = sequence.at[:, : prompt.shape[1]].set(prompt)
        state = (sequence, jnp.asarray(prompt.shape[1], jnp.int32), source, source_mask)
        return self._full(state), state

    def step(self, state, tokens):
        sequence, length, source, source_mask = state
        sequence = jax.lax.dynamic_update_slice(sequence, tokens[:, None], (0, length))
        state = (sequence, length + 1, source, source_mask)
        return self._full(state), state

    def _full(self, state):
        sequence, length, source, source_mask = state
        logits = self.model(source, sequence, source_mask)
        return jax.lax.dynamic_index_in_dim(logits, length - 1, axis=1, keepdims=False)


@jax.jit
def _jit_call(graphdef, params, *args):
    return nnx.merge(graphdef, params)(*args)


def full_logits(model, *args) -> np.ndarray:
    """The full forward pass, jitted (eagerly, every operation compiles on its own)."""
    return np.asarray(_jit_call(*nnx.split(model), *args))


@functools.partial(jax.jit, static_argnums=3)
def _lm_log_probs(graphdef, params, sequences, prompt_length):
    """log p of each new token of `sequences` [R, L] under the LM: [R, L - prompt_length]."""
    logits = nnx.merge(graphdef, params)(sequences)
    log_probs = jax.nn.log_softmax(logits[:, prompt_length - 1 : -1], axis=-1)
    return jnp.take_along_axis(log_probs, sequences[:, prompt_length:, None], axis=-1)[..., 0]


def sequence_log_probs(model, sequences, prompt_length) -> np.ndarray:
    """float64 [R, L - prompt_length]: log p of each new token of `sequences` [R, L]."""
    return np.asarray(
        _lm_log_probs(*nnx.split(model), jnp.asarray(sequences, jnp.int32), prompt_length),
        np.float64,
    )


def gnmt(length, alpha):
    """The GNMT length penalty lp(n) = ((5 + n) / 6)^α."""
    return ((5.0 + length) / 6.0) ** alpha


def numpy_filter(logits, temperature, top_k, top_p):
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
