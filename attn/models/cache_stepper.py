"""The decoding step of a transformer whose state lives in its key/value caches.

`CacheStepper` is the part that `TransformerLMStepper` and `TransformerStepper` share: the state
is the model's `nnx.Cache` state (keys and values [B, max_length, K, H] of every self-attention
layer, their shared cache index, and whatever else the model caches), a step runs the model on
one token per row with `decode=True`, and `reorder` gathers the rows of every cache. Together
with a family's `start` it satisfies the `attn.decoding.Stepper` protocol (structurally: no
import of `attn.decoding`).
"""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp
from flax import nnx

from attn.typing import Array


class CacheStepper(abc.ABC):
    """Decoding through the key/value caches of `model`; a subclass writes `start` and `_logits`.

    Attributes:
      model: the model; `start` allocates its caches in place (the decoding functions pass a
        copy merged inside `jax.jit`).
      vocab_size: V, the last axis of the logits.
    """

    def __init__(self, model: nnx.Module, vocab_size: int):
        self.model = model
        self.vocab_size = vocab_size

    @abc.abstractmethod
    def start(
        self, prompt: Array, source: Array | None, source_mask: Array | None, max_length: int
    ) -> tuple[Array, nnx.State]:
        """Allocate the caches for `max_length` tokens and prefill the prompt int [B, T0]:
        (logits [B, V] of the next token, the cache state)."""

    @abc.abstractmethod
    def _logits(self, model: nnx.Module, ids: Array) -> Array:
        """`model` on ids int [B, T] that continue its cached sequence: logits [B, T, V]."""

    def step(self, state: nnx.State, tokens: Array) -> tuple[Array, nnx.State]:
        """One token per row, int [B] -> (logits [B, V] of the next token, the new caches)."""
        graphdef, _, rest = nnx.split(self.model, nnx.Cache, ...)
        # Merging (instead of updating `self.model`) creates the variables at the current trace
        # level, as the body of a `lax.while_loop` needs.
        model = nnx.merge(graphdef, state, rest)
        return self._logits(model, tokens[:, None])[:, -1], nnx.state(model, nnx.Cache)

    @staticmethod
    def reorder(state: nnx.State, indices: Array) -> nnx.State:
        """Row i of every cache becomes row indices[i] (int [B']); the scalar index is shared."""
        return jax.tree.map(lambda x: x if jnp.ndim(x) == 0 else jnp.take(x, indices, 0), state)

    def _prefill(self, prompt: Array) -> tuple[Array, nnx.State]:
        """Run the freshly cached model on the prompt: (logits [B, V] at its last position, the
        cache state)."""
        return self._logits(self.model, prompt)[:, -1], nnx.state(self.model, nnx.Cache)
