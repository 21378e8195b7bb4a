"""`Stepper`: a next-token distribution computed step by step, the one interface every decoding
method drives.

A model takes part in decoding through a stepper: either the object is a `Stepper` itself, or it
has a method `stepper()` that returns one (each model family of `attn.models` writes its own
next to the model, so this package imports no model). The calls below check, at trace time,
that what a stepper returns keeps its contract, so a mistake in a hand-written stepper is a
clear error rather than an XLA trace.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from attn.typing import Array

StepperState = Any  # a pytree of arrays, batch first (see `Stepper`)


@runtime_checkable
class Stepper(Protocol):
    """What greedy search, sampling and beam search need from a model.

    A stepper turns a prompt (and, for an encoder-decoder, a source sequence) into the logits of
    the next token and a `state` (the recurrent state of an RNN, the key/value caches of a
    transformer), then advances the state one token at a time. The decoding functions call its
    methods inside `jax.jit` and `jax.lax.while_loop`, so the methods must be pure functions of
    their arguments and of the model's parameters: no side effects, static shapes. A stepper
    that is an `nnx.Module`, or that comes from the `stepper()` method of one, is split with
    `nnx.split` and merged inside the jitted function, so the parameters are arguments of the
    compiled function, not constants baked into it; any other object is a static argument of
    `jax.jit` (hashed by identity, its arrays become constants).

    The state is a pytree of arrays. Every leaf with a batch axis has it first (axis 0, size B);
    scalar leaves (a position index shared by every row) have none. `step` returns a state of the
    same structure, shapes and dtypes as the one it was given (it is a `lax.while_loop` carry).

    Attributes:
      vocab_size: V, the size of the output vocabulary (the last axis of the logits).

    Methods:
      start(prompt, source, source_mask, max_length) -> (logits, state):
        runs the encoder (if any) on `source` int [B, S] with `source_mask` bool [B, S] (True =
        real token; None: no padding; both None for a decoder-only model) and consumes the prompt
        int [B, T0] (T0 >= 1; for an encoder-decoder, the start-of-sequence token(s)). Returns the
        logits [B, V] of the token that follows the prompt and the state. `max_length` (static)
        is the longest sequence, prompt included, that later steps will reach: where a model
        cannot decode that far (a learned position table) it raises a ValueError.
      step(state, tokens) -> (logits, state):
        consumes one token per row, int [B], and returns the logits [B, V] of the next one and
        the new state.
      reorder(state, indices) -> state:
        row i of the new state is row `indices[i]` of `state`, int [B'] with B' possibly != B.
        Beam search uses it to tile the batch into beams and to follow the selected beams. The
        default, for a class that subclasses `Stepper`, is `gather_rows`: right for states whose
        batch axis is axis 0 everywhere.
    """

    vocab_size: int

    def start(
        self,
        prompt: Array,
        source: Array | None,
        source_mask: Array | None,
        max_length: int,
    ) -> tuple[Array, StepperState]: ...

    def step(self, state: StepperState, tokens: Array) -> tuple[Array, StepperState]: ...

    def reorder(self, state: StepperState, indices: Array) -> StepperState:
        return gather_rows(state, indices)


def gather_rows(state: StepperState, indices: Array) -> StepperState:
    """Row i of every batched leaf becomes row `indices[i]`: x[indices] along axis 0.

    Scalar leaves (shared by all rows, like a cache index) are kept as they are.

    Args:
      state: a pytree of arrays, batch on axis 0 of every non-scalar leaf.
      indices: int [B'] rows to take.

    Returns:
      the same pytree, every non-scalar leaf with B' rows.
    """
    return jax.tree.map(lambda x: x if jnp.ndim(x) == 0 else jnp.take(x, indices, axis=0), state)


def as_stepper(model: Any) -> Stepper:
    """The `Stepper` of `model`: the model itself when it is one, else `model.stepper()`.

    Raises:
      TypeError: `model` is neither.
    """
    if isinstance(model, Stepper):
        return model
    if callable(getattr(model, "stepper", None)):
        return model.stepper()
    raise TypeError(
        "model: expected an attn.decoding.Stepper (vocab_size, start, step, reorder) or a model "
        f"with a stepper() method that returns one, got {type(model).__name__}"
    )


# ---------------------------------------------------------------------------------------------
# The protocol's calls, with trace-time checks of what they return.


def start(
    stepper: Stepper,
    prompt: Array,
    source: Array | None,
    source_mask: Array | None,
    max_new_tokens: int,
) -> tuple[Array, StepperState]:
    """`stepper.start(prompt, source, source_mask, T0 + max_new_tokens)`: (logits float32
    [B, V], state). A ValueError raised by the stepper gets a note: where max_length came from."""
    (B, T0), M = prompt.shape, max_new_tokens
    try:
        logits, state = stepper.start(prompt, source, source_mask, T0 + M)
    except ValueError as error:
        error.add_note(
            f"(decoding called {type(stepper).__name__}.start with max_length = T0 + "
            f"max_new_tokens = {T0} + {M} = {T0 + M}: the prompt and the new tokens)"
        )
        raise
    return _checked_logits(stepper, "start", B, logits), state


def step(stepper: Stepper, state: StepperState, tokens: Array) -> tuple[Array, StepperState]:
    """`stepper.step(state, tokens)`: (logits float32 [B, V], the new state of the same
    structure, shapes and dtypes)."""
    logits, new_state = stepper.step(state, tokens)

    def spec(state):
        leaves, structure = jax.tree.flatten(state)
        return structure, [(jnp.shape(x), jnp.result_type(x)) for x in leaves]

    if spec(state) != spec(new_state):
        raise ValueError(
            f"{type(stepper).__name__}.step must return a state of the structure, shapes and "
            f"dtypes it was given: expected {spec(state)}, got {spec(new_state)}"
        )
    return _checked_logits(stepper, "step", tokens.shape[0], logits), new_state


def reorder(stepper: Stepper, state: StepperState, indices: Array) -> StepperState:
    """`stepper.reorder(state, indices)`, whose batched leaves must have len(indices) rows."""
    state = stepper.reorder(state, indices)
    rows = indices.shape[0]
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        if jnp.ndim(leaf) and jnp.shape(leaf)[0] != rows:
            raise ValueError(
                f"{type(stepper).__name__}.reorder must return a state whose batched leaves have "
                f"{rows} rows on axis 0, got shape {jnp.shape(leaf)} at "
                f"{jax.tree_util.keystr(path)}"
            )
    return state


def _checked_logits(stepper: Stepper, method: str, B: int, logits: Array) -> Array:
    """logits [B, V] as float32, or a ValueError naming the stepper's method."""
    V = stepper.vocab_size
    if jnp.shape(logits) != (B, V):
        raise ValueError(
            f"{type(stepper).__name__}.{method} must return logits [B, V] = [{B}, {V}], got shape "
            f"{jnp.shape(logits)} (is the batch of its state or source that of the prompt?)"
        )
    return logits.astype(jnp.float32)
