"""The arguments of a decoding call, checked once at the public boundary.

`Request` holds what every method shares (the model split for `jax.jit`, the prompt, the source,
the special ids); `check_sampling` and `check_beam` check the options of one method. Each error
names the function, the argument, the expected shape or range and what was given.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from attn.decoding.stepper import Stepper, as_stepper
from attn.typing import Array, ArrayLike


@dataclasses.dataclass(frozen=True)
class Request:
    """Checked inputs of a decoding call, split into the arguments of the jitted loops.

    Fields:
      static: the GraphDef of an `nnx.Module` model, or the model itself (a static argument).
      params: the `nnx.State` of an `nnx.Module` model, or None.
      prompt: int32 [B, T0]; source: int32 [B, S] or None; source_mask: bool [B, S] or None.
      vocab_size: V; max_new_tokens: M; eos_id: None or an id; pad_id: an id.
    """

    static: Any
    params: Any
    prompt: Array
    source: Array | None
    source_mask: Array | None
    vocab_size: int
    max_new_tokens: int
    eos_id: int | None
    pad_id: int

    @classmethod
    def make(
        cls,
        fn: str,
        model: Any,
        prompt: ArrayLike,
        source: ArrayLike | None,
        source_mask: ArrayLike | None,
        max_new_tokens: int,
        eos_id: int | None,
        pad_id: int,
    ) -> Request:
        """Check the arguments that `fn` ("greedy", "sample", "beam_search") shares."""
        V = as_stepper(model).vocab_size
        prompt = check_ids(fn, "prompt", prompt, "T0", V)
        B = prompt.shape[0]
        if not is_int(max_new_tokens) or max_new_tokens < 1:
            raise ValueError(f"{fn}: max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        if eos_id is not None and (not is_int(eos_id) or not 0 <= eos_id < V):
            raise ValueError(
                f"{fn}: eos_id must be None or an id in [0, V={V}) (the vocabulary), got {eos_id!r}"
            )
        if not is_int(pad_id) or not 0 <= pad_id < V:
            raise ValueError(f"{fn}: pad_id must be an id in [0, V={V}), got {pad_id!r}")
        if source is not None:
            source = check_ids(fn, "source", source, "S", None)
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


def stepper_of(static: Any, params: Any) -> Stepper:
    """Inside the jitted loops: merge what `Request.make` split and take its `Stepper`."""
    return as_stepper(static if params is None else nnx.merge(static, params))


def check_sampling(
    temperature: Any, top_k: Any, top_p: Any, vocab_size: int
) -> tuple[Array, Array | None, Array | None]:
    """`sample`'s options as arguments of the jitted loop: (τ float32, top_k int32 or None,
    top_p float32 or None)."""
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise ValueError(f"sample: temperature must be a float > 0, got {temperature!r}")
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"sample: temperature must be a finite float > 0, got {temperature!r}")
    V = vocab_size
    if top_k is not None and (not is_int(top_k) or not 1 <= top_k <= V):
        raise ValueError(f"sample: top_k must be None or an int in [1, V={V}], got {top_k!r}")
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, int | float) or not 0 < top_p <= 1
    ):
        raise ValueError(f"sample: top_p must be None or a float in (0, 1], got {top_p!r}")
    return (
        jnp.asarray(temperature, jnp.float32),
        None if top_k is None else jnp.asarray(top_k, jnp.int32),
        None if top_p is None else jnp.asarray(top_p, jnp.float32),
    )


def check_beam(beam_size: Any, length_penalty: Any, vocab_size: int) -> Array:
    """`beam_search`'s options: beam_size K in [1, V] and α >= 0 (returned as float32)."""
    V = vocab_size
    if not is_int(beam_size) or not 1 <= beam_size <= V:
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
    return jnp.asarray(length_penalty, jnp.float32)


def is_int(value: Any) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_ids(fn: str, name: str, ids: ArrayLike, letter: str, vocab_size: int | None) -> Array:
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


def check_key(key: Any) -> Array:
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
