"""Boolean attention masks. Convention: True = attend, False = masked out.

Every function returns a boolean array that broadcasts against attention logits `[B, N, T, S]`.
"""

from __future__ import annotations

import jax.numpy as jnp

from attn.typing import Array, ArrayLike


def causal_mask(T: int, S: int, offset: int | ArrayLike = 0) -> Array:
    """Causal mask: query i sees key j iff j <= offset + i.

    `offset` is the position of the first query among the keys; for cached decoding a chunk of
    T queries starting at position p uses `offset=p`, so its query i sees keys 0..p+i. With the
    default offset 0 this is the top-left aligned triangle of
    `jax.nn.dot_product_attention(is_causal=True)`. `offset` may be a traced integer (the cache
    index under `jax.jit`).

    Args:
      T: number of queries.
      S: number of keys.
      offset: position of query 0 among the keys (int or scalar integer array).

    Returns:
      bool[T, S].
    """
    query_positions = jnp.arange(T)[:, None] + offset
    key_positions = jnp.arange(S)[None, :]
    return key_positions <= query_positions


def padding_mask(lengths: ArrayLike, S: int) -> Array:
    """Key padding mask from sequence lengths: key j of example b is real iff j < lengths[b].

    Args:
      lengths: int[B], the number of real (unpadded) keys of each example.
      S: padded key length.

    Returns:
      bool[B, 1, 1, S], broadcasting over heads and queries.
    """
    lengths = jnp.asarray(lengths)
    if lengths.ndim != 1:
        raise ValueError(f"padding_mask: lengths must have shape [B], got shape {lengths.shape}")
    return (jnp.arange(S)[None, :] < lengths[:, None])[:, None, None, :]


def key_mask(
    owner: str,
    attention_mask: ArrayLike | None,
    shape: tuple[int, int],
    *,
    name: str = "attention_mask",
    letter: str = "T",
) -> Array | None:
    """A padding mask [B, L] (1/True = real token, 0/False = padding) as a key mask that
    broadcasts over heads and queries; None stays None (every key is real).

    Args:
      owner: the model or function named in errors.
      attention_mask: bool or 0/1 integer [B, L], or None.
      shape: the expected (B, L).
      name: the argument's name, for errors.
      letter: the dimension key of L in errors ("T", "S", ...).

    Returns:
      bool[B, 1, 1, L], or None.
    """
    if attention_mask is None:
        return None
    mask = jnp.asarray(attention_mask)
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(
            f"{owner}: {name} must have shape [B, {letter}] = [{shape[0]}, {shape[1]}] "
            f"(1/True = real token), got shape {tuple(mask.shape)}"
        )
    if not (mask.dtype == jnp.bool_ or jnp.issubdtype(mask.dtype, jnp.integer)):
        raise TypeError(
            f"{owner}: {name} must be boolean or 0/1 integers (1/True = real token), got "
            f"dtype {mask.dtype}"
        )
    return mask.astype(bool)[:, None, None, :]  # [B, L] -> [B, 1, 1, L]


def window_mask(
    T: int, S: int, window: int | tuple[int, int], offset: int | ArrayLike = 0
) -> Array:
    """Local (sliding-window) mask: query i sees key j iff  -left <= j - (offset + i) <= right.

    `window=w` is the symmetric window (w, w); `window=(left, right)` follows
    `jax.nn.dot_product_attention(local_window_size=...)`. Combine with `causal_mask` (or use
    `right=0`) for causal local attention (Longformer, Mistral-style sliding windows).

    Args:
      T: number of queries.
      S: number of keys.
      window: int w >= 0, or a pair (left, right) of non-negative ints.
      offset: position of query 0 among the keys.

    Returns:
      bool[T, S].
    """
    left, right = normalize_window(window)
    distance = jnp.arange(S)[None, :] - (jnp.arange(T)[:, None] + offset)
    return (distance >= -left) & (distance <= right)


def normalize_window(window: int | tuple[int, int]) -> tuple[int, int]:
    """`w` -> (w, w); `(left, right)` -> itself; checks that both are non-negative ints."""
    if isinstance(window, int):
        left = right = window
    elif isinstance(window, tuple) and len(window) == 2 and all(isinstance(w, int) for w in window):
        left, right = window
    else:
        raise TypeError(f"window must be an int or a pair (left, right) of ints, got {window!r}")
    if left < 0 or right < 0:
        raise ValueError(f"window sizes must be >= 0, got (left, right) = ({left}, {right})")
    return left, right


def combine_masks(*masks: ArrayLike | None) -> Array | None:
    """Logical AND of boolean masks, broadcast together; `None` entries are ignored.

    Returns:
      The broadcast AND of the given masks, or None when every mask is None.
    """
    present = [jnp.asarray(m) for m in masks if m is not None]
    if not present:
        return None
    for m in present:
        if m.dtype != jnp.bool_:
            raise TypeError(f"combine_masks: masks must be boolean (True = attend), got {m.dtype}")
    combined = present[0]
    for m in present[1:]:
        combined = jnp.logical_and(combined, m)
    return combined


def query_padding_mask(lengths: ArrayLike, T: int) -> Array:
    """Query padding mask: query i of example b is real iff i < lengths[b].

    Args:
      lengths: int[B], the number of real queries of each example.
      T: padded query length.

    Returns:
      bool[B, 1, T, 1]; padded queries attend to nothing (their output is 0).
    """
    lengths = jnp.asarray(lengths)
    if lengths.ndim != 1:
        raise ValueError(f"query_padding_mask: lengths must have shape [B], got {lengths.shape}")
    return (jnp.arange(T)[None, :] < lengths[:, None])[:, None, :, None]


def build_mask(
    T: int,
    S: int,
    *,
    mask: ArrayLike | None = None,
    is_causal: bool = False,
    query_seq_lengths: ArrayLike | None = None,
    key_value_seq_lengths: ArrayLike | None = None,
    local_window_size: int | tuple[int, int] | None = None,
) -> Array | None:
    """One boolean mask from the arguments of `jax.nn.dot_product_attention`.

    Combines an explicit `mask` with the causal triangle (offset 0, as in `jax.nn`), the query and
    key/value sequence lengths and a local window.

    Returns:
      bool broadcastable to [B, N, T, S], or None when nothing is masked.
    """
    return combine_masks(
        None if mask is None else jnp.asarray(mask),
        causal_mask(T, S) if is_causal else None,
        None if local_window_size is None else window_mask(T, S, local_window_size),
        None if query_seq_lengths is None else query_padding_mask(query_seq_lengths, T),
        None if key_value_seq_lengths is None else padding_mask(key_value_seq_lengths, S),
    )


def attending_queries(
    T: int,
    S: int,
    *,
    is_causal: bool = False,
    local_window_size: tuple[int, int] | None = None,
    query_seq_lengths: ArrayLike | None = None,
    key_value_seq_lengths: ArrayLike | None = None,
) -> Array:
    """Which queries may attend to at least one key under the masks of `build_mask` (no `mask`).

    Query i of example b sees keys lo..hi with lo = max(0, i - left), hi = min(S, kv_len[b]) - 1,
    lowered to i (causal) and to i + right (window); it attends iff lo <= hi and i < q_len[b].
    O(B·T) work, where `build_mask(...).any(-1)` would form [B, T, S].

    Returns:
      bool[B, T], or bool[1, T] when no lengths are given.
    """
    i = jnp.arange(T)[None, :]  # [1, T]
    lo = jnp.zeros_like(i)
    hi = jnp.full_like(i, S - 1)
    if key_value_seq_lengths is not None:
        hi = jnp.minimum(hi, jnp.asarray(key_value_seq_lengths)[:, None] - 1)  # [B, 1]
    if is_causal:
        hi = jnp.minimum(hi, i)
    if local_window_size is not None:
        left, right = normalize_window(local_window_size)
        lo = jnp.maximum(lo, i - left)
        hi = jnp.minimum(hi, i + right)
    attends = lo <= hi
    if query_seq_lengths is not None:
        attends = attends & (i < jnp.asarray(query_seq_lengths)[:, None])
    return attends


def zero_queries_without_keys(out: Array, S: int, **structure) -> Array:
    """out[B, T, N, H] with 0 at every query that may attend to no key among S: the
    fully-masked-row contract of `dot_product_attention`, for kernels that compute such rows
    anyway (a Pallas kernel divides by a row sum of 0, or spreads the row over masked keys).

    `structure` holds the keyword arguments of `attending_queries` (`is_causal`,
    `local_window_size`, `query_seq_lengths`, `key_value_seq_lengths`).
    """
    attends = attending_queries(out.shape[1], S, **structure)  # [B or 1, T]
    return jnp.where(attends[:, :, None, None], out, jnp.zeros_like(out))


def real_keys(padded_length: int, S: int, key_value_seq_lengths: ArrayLike | None) -> Array:
    """bool[B or 1, padded_length]: key j is real iff j < S and j < key_value_seq_lengths[b],
    for kernels that pad the keys to whole blocks."""
    positions = jnp.arange(padded_length)[None]  # [1, padded_length]
    real = positions < S
    if key_value_seq_lengths is not None:
        real = real & (positions < jnp.asarray(key_value_seq_lengths)[:, None])
    return real
