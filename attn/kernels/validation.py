"""Shape, dtype and argument checks at the public boundary of `attn.kernels`.

Every check runs on static shapes (free under `jax.jit`) and raises a ValueError or TypeError that
names the argument, the expected shape in the dimension key (see `attn.typing`) and what was given.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from attn.kernels import scores as scores_lib
from attn.typing import Array, ArrayLike, DType

IMPLEMENTATIONS = (None, "reference", "blockwise", "direct", "xla", "cudnn", "splash", "triton")
_SAME_WIDTH_SCORES = ("dot", "scaled_dot", "cosine")


def _describe(expected_letters: Sequence[str], expected_sizes: Sequence[int | None]) -> str:
    letters = ", ".join(expected_letters)
    sizes = ", ".join("?" if n is None else str(n) for n in expected_sizes)
    return f"[{letters}] = [{sizes}]"


def check_rank(fn: str, name: str, x, letters: Sequence[str], sizes: Sequence[int | None]) -> None:
    """Raise unless `x` has len(letters) dims whose sizes equal `sizes` where they are not None."""
    shape = tuple(jnp.shape(x))
    ok = len(shape) == len(letters) and all(
        want is None or have == want for have, want in zip(shape, sizes, strict=False)
    )
    if not ok:
        raise ValueError(
            f"{fn}: {name} must have shape {_describe(letters, sizes)}, got shape {shape}"
        )


def check_float(fn: str, name: str, x) -> None:
    """Raise TypeError unless `x` has a floating dtype."""
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{fn}: {name} must be a floating-point array, got dtype {dtype}")


def check_int(fn: str, name: str, value, *, minimum: int | None = None) -> int:
    """`value` as a Python int (>= minimum when given): a TypeError for a non-integer (bool
    included), a ValueError below the minimum."""
    if isinstance(value, bool):
        raise TypeError(f"{fn}: {name} must be an int, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{fn}: {name} must be an int, got {value!r} of type {type(value).__name__}"
        ) from None
    if minimum is not None and value < minimum:
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {value}")
    return value


def check_multiple(fn: str, name: str, value, multiple: int) -> int:
    """`value` as a positive int that `multiple` divides (an even width for `multiple=2`)."""
    value = check_int(fn, name, value, minimum=multiple)
    if value % multiple:
        raise ValueError(f"{fn}: {name} must be a multiple of {multiple}, got {value}")
    return value


def check_above(fn: str, name: str, value, bound: float) -> float:
    """`value` as a float strictly greater than `bound`: a TypeError for a non-number (bool and
    None included), a ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a number, got {value!r}")
    if not value > bound:
        raise ValueError(f"{fn}: {name} must be > {bound}, got {value!r}")
    return value


def check_positive(fn: str, name: str, value) -> float:
    """`value` unchanged after checking it is a number > 0 (a width, a count, a temperature)."""
    return check_above(fn, name, value, 0)


def check_dropout_rate(fn: str, name: str, value) -> float:
    """`value` unchanged after checking it is a dropout probability in [0, 1) (1 would drop
    everything)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a number, got {value!r}")
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{fn}: {name} must be in [0, 1), got {value!r}")
    return value


def check_float_dtype(fn: str, name: str, dtype: DType) -> jnp.dtype:
    """`dtype` as a `jnp.dtype`, after checking it is a floating-point dtype."""
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{fn}: {name} must be a floating-point dtype, got {dtype}")
    return dtype


def check_offset(fn: str, offset):
    """A position offset: a Python int, or a (possibly traced) integer scalar array."""
    if isinstance(offset, int) and not isinstance(offset, bool):
        return offset
    shape, dtype = jnp.shape(offset), jnp.result_type(offset)
    if shape != () or not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(
            f"{fn}: offset must be an integer scalar (the position of query 0), "
            f"got shape {shape} and dtype {dtype}"
        )
    return offset


def check_features(fn: str, name: str, x: ArrayLike, letter: str, size: int) -> None:
    """Raise unless `x` is a floating array [..., letter] whose last axis has `size` entries."""
    check_float(fn, name, x)
    shape = tuple(jnp.shape(x))
    if not shape or shape[-1] != size:
        raise ValueError(
            f"{fn}: {name} must have shape [..., {letter}] = [..., {size}], got shape {shape}"
        )


def check_broadcastable(
    fn: str, name: str, x, letters: Sequence[str], sizes: Sequence[int], *, boolean: bool
) -> None:
    """Raise unless `x` broadcasts to `sizes` (trailing dims 1 or equal), right dtype."""
    shape = tuple(jnp.shape(x))
    dtype = jnp.result_type(x)
    if boolean and dtype != jnp.bool_:
        raise TypeError(
            f"{fn}: {name} must be boolean (True = attend), got dtype {dtype}; "
            "pass additive float masks as `bias`"
        )
    if not boolean and not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{fn}: {name} must be a floating-point array, got dtype {dtype}")
    fits = len(shape) <= len(sizes) and all(
        have in (1, want) for have, want in zip(reversed(shape), reversed(sizes), strict=False)
    )
    if not fits:
        raise ValueError(
            f"{fn}: {name} must broadcast to {_describe(letters, sizes)} (each dim 1 or equal), "
            f"got shape {shape}"
        )


def check_single_head(q, k, v, *, mask, bias, score: str) -> None:
    """Checks for `attention(q[T, Hq], k[S, Hk], v[S, Hv])`."""
    fn = "attention"
    scores_lib.get_score(score)
    for name, x in (("q", q), ("k", k), ("v", v)):
        check_float(fn, name, x)
    check_rank(fn, "q", q, ("T", "H"), (None, None))
    T, Hq = q.shape
    width = Hq if score in _SAME_WIDTH_SCORES else None
    check_rank(fn, "k", k, ("S", "H"), (None, width))
    S = k.shape[0]
    check_rank(fn, "v", v, ("S", "Hv"), (S, None))
    if mask is not None:
        check_broadcastable(fn, "mask", mask, ("T", "S"), (T, S), boolean=True)
    if bias is not None:
        check_broadcastable(fn, "bias", bias, ("T", "S"), (T, S), boolean=False)


class MultiheadInputs(NamedTuple):
    """The arguments of `dot_product_attention` as arrays, checked, with a batch axis."""

    query: jnp.ndarray  # [B, T, N, H]
    key: jnp.ndarray  # [B, S, K, H]
    value: jnp.ndarray  # [B, S, K, Hv]
    bias: jnp.ndarray | None  # broadcastable to [B, N, T, S]
    mask: jnp.ndarray | None  # broadcastable to [B, N, T, S]
    query_seq_lengths: jnp.ndarray | None  # int[B]
    key_value_seq_lengths: jnp.ndarray | None  # int[B]
    batched: bool  # False: the caller passed [T, N, H] inputs; drop the batch axis of 1 again


def multihead_inputs(
    fn: str,
    query,
    key,
    value,
    *,
    bias,
    mask,
    query_seq_lengths,
    key_value_seq_lengths,
    implementation,
) -> MultiheadInputs:
    """Check the arguments of `fn(query, key, value, ...)` and return them batched.

    As in `jax.nn.dot_product_attention`, query/key/value are either all batched [B, T, N, H],
    [B, S, K, H], [B, S, K, Hv] or all unbatched [T, N, H], [S, K, H], [S, K, Hv]; unbatched
    inputs get a batch axis of 1, so `mask` and `bias` then broadcast to [1, N, T, S] and the
    lengths are int[1] or scalars (what `jax.vmap` over the batch hands each call).
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"{fn}: implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}"
        )
    query, key, value = jnp.asarray(query), jnp.asarray(key), jnp.asarray(value)
    if query.ndim not in (3, 4):
        raise ValueError(
            f"{fn}: query must have shape [B, T, N, H] or, unbatched, [T, N, H], "
            f"got shape {query.shape}"
        )
    batched = query.ndim == 4
    if not batched:
        check_rank(fn, "key", key, ("S", "K", "H"), (None, None, query.shape[-1]))
        check_rank(fn, "value", value, ("S", "K", "Hv"), (key.shape[0], key.shape[1], None))
        query, key, value = query[None], key[None], value[None]
    arrays = {}
    for name, lengths in (
        ("query_seq_lengths", query_seq_lengths),
        ("key_value_seq_lengths", key_value_seq_lengths),
    ):
        if lengths is not None:
            lengths = jnp.asarray(lengths)
            if not batched and lengths.ndim == 0:
                lengths = lengths[None]
        arrays[name] = lengths
    check_multihead(
        fn,
        query,
        key,
        value,
        bias=bias,
        mask=mask,
        **arrays,
    )
    return MultiheadInputs(
        query,
        key,
        value,
        None if bias is None else jnp.asarray(bias),
        None if mask is None else jnp.asarray(mask),
        arrays["query_seq_lengths"],
        arrays["key_value_seq_lengths"],
        batched,
    )


def check_multihead(
    fn: str,
    query,
    key,
    value,
    *,
    bias,
    mask,
    query_seq_lengths,
    key_value_seq_lengths,
) -> None:
    """Checks for `fn(query[B,T,N,H], key[B,S,K,H], value[B,S,K,Hv], ...)`."""
    for name, x in (("query", query), ("key", key), ("value", value)):
        check_float(fn, name, x)
    check_rank(fn, "query", query, ("B", "T", "N", "H"), (None,) * 4)
    B, T, N, H = query.shape
    check_rank(fn, "key", key, ("B", "S", "K", "H"), (B, None, None, H))
    S, K = key.shape[1], key.shape[2]
    check_rank(fn, "value", value, ("B", "S", "K", "Hv"), (B, S, K, None))
    if N % K:
        raise ValueError(
            f"{fn}: the number of query heads N={N} (query shape {query.shape}) must be a "
            f"multiple of the number of key/value heads K={K} (key shape {key.shape})"
        )
    if not (query.dtype == key.dtype == value.dtype):
        raise TypeError(
            f"{fn}: query, key and value must share one dtype, got "
            f"{query.dtype}, {key.dtype}, {value.dtype}"
        )
    full = ("B", "N", "T", "S")
    if mask is not None:
        check_broadcastable(fn, "mask", mask, full, (B, N, T, S), boolean=True)
    if bias is not None:
        check_broadcastable(fn, "bias", bias, full, (B, N, T, S), boolean=False)
    for name, lengths in (
        ("query_seq_lengths", query_seq_lengths),
        ("key_value_seq_lengths", key_value_seq_lengths),
    ):
        if lengths is None:
            continue
        if not jnp.issubdtype(jnp.result_type(lengths), jnp.integer):
            raise TypeError(f"{fn}: {name} must be integer, got dtype {jnp.result_type(lengths)}")
        check_rank(fn, name, lengths, ("B",), (B,))


def check_pallas_kernel_inputs(implementation: str, query, value, bias, mask) -> None:
    """What the Pallas kernels ("splash", "triton") cannot compute: errors naming one that can."""
    fn = f"dot_product_attention(implementation={implementation!r})"
    static = "is_causal, query_seq_lengths, key_value_seq_lengths"
    if implementation == "splash":
        static += ", local_window_size"
    if mask is not None:
        raise ValueError(
            f"{fn}: the kernel takes static masks only ({static}), got a run-time boolean mask "
            f"of shape {mask.shape}; use implementation='blockwise' (any platform) or 'xla'"
        )
    if bias is not None:
        raise ValueError(
            f"{fn}: the kernel takes no bias, got bias of shape {bias.shape}; "
            "use implementation='blockwise' (any platform) or 'xla'"
        )
    if value.shape[-1] != query.shape[-1]:
        raise ValueError(
            f"{fn}: needs value[B, S, K, H] with the head dim H={query.shape[-1]} of query, got "
            f"value shape {value.shape}; use implementation='blockwise'"
        )
    if query.dtype == jnp.float64:
        raise TypeError(
            f"{fn}: the kernel computes in float32 at most, got float64 query; "
            "use implementation='blockwise' or 'reference'"
        )


def check_token_ids(
    owner: str, name: str, ids: ArrayLike, vocab_size: int, letter: str = "T"
) -> Array:
    """`ids` as an array, after checking it is integer [B, letter] and its values lie in
    [0, vocab_size).

    The rule for an out-of-range id (negative, or >= vocab_size):

    - where the values are known (outside `jax.jit`, or NumPy ids closed over by a jitted
      function), a ValueError naming `name`, the range and the first bad id and its position;
    - under `jax.jit` (traced ids) the values are unknown when this runs. Every id of a row that
      holds an out-of-range one becomes `vocab_size`, which `nnx.Embed` looks up as NaN, so every
      logit of that sequence is NaN (and a loss over it too) while the other rows are exact;
      nothing is clamped or wrapped. To raise instead, wrap the jitted function in
      `jax.experimental.checkify.checkify` (the default `errors=checkify.user_checks` suffices)
      and call `error.throw()`: a `checkify.debug_check` here then reports the same message.
      Without checkify that check is a no-op.

    Returns:
      ids [B, letter], unchanged where every id is in range.
    """
    array = jnp.asarray(ids)
    if array.ndim != 2 or not jnp.issubdtype(array.dtype, jnp.integer):
        raise ValueError(
            f"{owner}: {name} must be integer token ids [B, {letter}], got {array.dtype} array of "
            f"shape {array.shape}"
        )
    if not isinstance(ids, jax.core.Tracer):
        check_indices(owner, name, ids, vocab_size, "vocab_size", noun="ids")
        return array
    if jnp.iinfo(array.dtype).max < vocab_size:  # room for the out-of-range marker below
        array = array.astype(jnp.int32)
    outside = (array < 0) | (array >= vocab_size)  # [B, letter]
    first = jnp.argmax(outside.reshape(-1))  # the first bad id in row-major order
    b, t = jnp.unravel_index(first, array.shape)
    checkify.debug_check(
        ~jnp.any(outside),
        f"{owner}: {name} must lie in [0, vocab_size={vocab_size}), got {{value}} at "
        f"[{{b}}, {{t}}]",
        value=array.reshape(-1)[first],
        b=b,
        t=t,
    )
    bad_rows = jnp.any(outside, axis=1, keepdims=True)  # [B, 1]
    return jnp.where(bad_rows, jnp.asarray(vocab_size, array.dtype), array)


def check_indices(
    fn: str, name: str, values: ArrayLike, size: int, size_name: str, *, noun: str = "values"
) -> None:
    """Raise a ValueError unless every entry of `values` lies in [0, size) (a row of a table of
    `size_name` = size rows). Values that are only known at run time (traced under `jax.jit`)
    are not checked; NumPy arrays closed over by a jitted function are, once, at trace time."""
    if isinstance(values, jax.core.Tracer):
        return
    known = np.asarray(values)
    if known.size:
        low, high = int(known.min()), int(known.max())
        if low < 0 or high >= size:
            outside = (known < 0) | (known >= size)
            where = np.unravel_index(int(np.argmax(outside)), known.shape)
            first = f"{int(known[where])} at [{', '.join(str(int(i)) for i in where)}]"
            raise ValueError(
                f"{fn}: {name} must lie in [0, {size_name}={size}), got {noun} from {low} to "
                f"{high} (first out of range: {first})"
            )
