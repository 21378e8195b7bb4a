"""Positional encodings as modules: fixed sinusoidal and learned absolute positions, and the
learned T5 relative position bias.

`SinusoidalPositions` and `LearnedPositions` share one constructor layout and call: they return
the encodings `[T, D]` (or `[B, T, D]` for per-example positions) that a model adds to its token
embeddings, and check the positions against `max_length`. `RelativePositionBias` returns an
additive logit bias `[1, N, T, S]` for `dot_product_attention(bias=...)`. The pure functions
(sinusoidal and 2-D sin-cos tables, T5 buckets, rotary, ALiBi) are in `attn.kernels.positions`.

Positions for cached decoding: a chunk of T queries that starts at position p passes `offset=p`
(an int, or a traced scalar under `jax.jit`), so its query i sits at position p + i and key j at j,
as in `attn.kernels.masks.causal_mask`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from attn.kernels.positions import check_base, check_buckets, relative_position_bucket, sinusoids
from attn.kernels.validation import (
    check_float_dtype,
    check_indices,
    check_int,
    check_multiple,
    check_offset,
)
from attn.typing import Array, ArrayLike, DType

__all__ = ["LearnedPositions", "RelativePositionBias", "SinusoidalPositions"]


def _concrete_int(x) -> int | None:
    """The value of a scalar that is known at trace time, None for a traced value."""
    if isinstance(x, jax.core.Tracer):
        return None
    return int(x)


def _checked_positions(fn: str, positions, offset, max_length: int | None) -> Array:
    """Integer positions for a length T (offset + arange(T)) or an explicit int array [T] / [B, T].

    Checks what can be checked at trace time against a table of `max_length` rows (None = no
    table: any position, negative ones included, is fine).
    """
    offset = check_offset(fn, offset)
    known_offset = _concrete_int(offset)
    if isinstance(positions, int | np.integer) and not isinstance(positions, bool):
        length = check_int(fn, "length", positions, minimum=0)
        if max_length is not None:
            if length > max_length:
                raise ValueError(
                    f"{fn}: a sequence of length T={length} is longer than max_length={max_length}"
                )
            if known_offset is not None and known_offset + length > max_length:
                raise ValueError(
                    f"{fn}: positions offset + T = {known_offset} + {length} = "
                    f"{known_offset + length} exceed max_length={max_length}"
                )
            if known_offset is not None and known_offset < 0:
                raise ValueError(f"{fn}: offset must be >= 0, got {known_offset}")
        return jnp.arange(length) + offset
    dtype = jnp.result_type(positions)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(
            f"{fn}: positions must be an int length T or an integer array [T] or [B, T], "
            f"got {type(positions).__name__} of dtype {dtype}"
        )
    shape = jnp.shape(positions)
    if len(shape) not in (1, 2):
        raise ValueError(f"{fn}: positions must have shape [T] or [B, T], got shape {shape}")
    positions = jnp.asarray(positions) + offset
    if max_length is not None:
        check_indices(fn, "positions (plus offset)", positions, max_length, "max_length")
    return positions


class SinusoidalPositions(nnx.Module):
    """Fixed sinusoidal positions (Vaswani et al. 2017) as a module with no parameters.

    Interchangeable with `LearnedPositions`: same constructor layout and call. `max_length` is
    optional, since sinusoids extrapolate; when given, longer sequences raise as they do for a
    learned table.
    """

    def __init__(
        self,
        max_length: int | None,
        dim: int,
        *,
        base: float = 10000.0,
        dtype: DType = jnp.float32,
        rngs: nnx.Rngs | None = None,
    ):
        """Args:
        max_length: the longest sequence accepted, or None for no limit.
        dim: model width D, even.
        base: the wavelength scale.
        dtype: floating dtype of the encodings.
        rngs: accepted and unused (there are no parameters), for symmetry with LearnedPositions.
        """
        fn = "SinusoidalPositions"
        del rngs
        self.max_length = (
            None if max_length is None else check_int(fn, "max_length", max_length, minimum=1)
        )
        self.dim = check_multiple(fn, "dim", dim, 2)
        self.base = check_base(fn, base)
        self.dtype = check_float_dtype(fn, "dtype", dtype)

    def __call__(self, positions: int | ArrayLike, offset: int | ArrayLike = 0) -> Array:
        """Encodings of positions `offset + 0 .. offset + T-1`, or of explicit positions.

        Args:
          positions: the length T (positions offset .. offset+T-1), or an integer array of
            positions [T] or [B, T] (offset is added to them).
          offset: position of the first query, an int or a traced integer scalar.

        Returns:
          [T, D], or [B, T, D] for positions [B, T].
        """
        positions = _checked_positions("SinusoidalPositions", positions, offset, self.max_length)
        return sinusoids(positions, self.dim, self.base, self.dtype)


# ----------------------------------------------------------------------------------------------
# Learned absolute positions (Gehring et al. 2017; GPT, BERT, ViT).


class LearnedPositions(nnx.Module):
    """Learned absolute positions: row p of a trained table E[max_length, D] is added at position p
    (Gehring et al. 2017, "Convolutional Sequence to Sequence Learning"; GPT-2, BERT, ViT).

    A sequence that reaches past the table raises a ValueError naming `max_length`: always for
    T > max_length, and for offset + T > max_length whenever the offset is known at trace time.
    With a traced offset (cached decoding under `jax.jit`) rows past the table read as NaN, so an
    overrun shows in the output instead of silently reusing the last row.
    """

    def __init__(
        self,
        max_length: int,
        dim: int,
        *,
        rngs: nnx.Rngs,
        init_std: float = 0.02,
        param_dtype: DType = jnp.float32,
        dtype: DType = jnp.float32,
    ):
        """Args:
        max_length: number of rows of the table (the longest sequence).
        dim: model width D.
        rngs: the `params` stream initialises the table.
        init_std: standard deviation of the normal initialiser (0.02 as in GPT-2 and BERT).
        param_dtype: dtype of the table.
        dtype: dtype of the returned encodings.
        """
        fn = "LearnedPositions"
        self.max_length = check_int(fn, "max_length", max_length, minimum=1)
        self.dim = check_int(fn, "dim", dim, minimum=1)
        param_dtype = check_float_dtype(fn, "param_dtype", param_dtype)
        self.dtype = check_float_dtype(fn, "dtype", dtype)
        init = nnx.initializers.normal(stddev=init_std)
        self.embedding = nnx.Param(init(rngs.params(), (self.max_length, self.dim), param_dtype))

    def __call__(self, positions: int | ArrayLike, offset: int | ArrayLike = 0) -> Array:
        """Rows `offset .. offset + T - 1` of the table, or the rows of explicit positions.

        Args:
          positions: the length T, or an integer array of positions [T] or [B, T] (offset is added).
          offset: position of the first query, an int or a traced integer scalar.

        Returns:
          [T, D], or [B, T, D] for positions [B, T].
        """
        positions = _checked_positions("LearnedPositions", positions, offset, self.max_length)
        table = self.embedding[...]
        rows = jnp.take(table, positions, axis=0, mode="fill", fill_value=jnp.nan)
        return rows.astype(self.dtype)


# ----------------------------------------------------------------------------------------------
# 2-D sin-cos positions for image patches (MAE, He et al. 2022; ViT).


class RelativePositionBias(nnx.Module):
    """T5 relative position bias (Raffel et al. 2020): a learned scalar per head and bucket,
    bias[n, i, j] = E[bucket(j − i), n], added to the attention logits of every layer that uses it.

    Query i is at position offset + i and key j at position j (cached decoding passes the position
    of the first query as `offset`).
    """

    def __init__(
        self,
        num_heads: int,
        *,
        bidirectional: bool,
        num_buckets: int = 32,
        max_distance: int = 128,
        rngs: nnx.Rngs,
        init_std: float = 0.02,
        param_dtype: DType = jnp.float32,
        dtype: DType = jnp.float32,
    ):
        """Args:
        num_heads: N.
        bidirectional: True for encoders, False for causal decoders.
        num_buckets: number of relative position buckets.
        max_distance: distance from which all positions share the last bucket.
        rngs: the `params` stream initialises the table.
        init_std: standard deviation of the normal initialiser.
        param_dtype: dtype of the table E[num_buckets, N].
        dtype: dtype of the returned bias (float32 by default, as the logits are).
        """
        fn = "RelativePositionBias"
        self.num_heads = check_int(fn, "num_heads", num_heads, minimum=1)
        self.num_buckets, self.max_distance = check_buckets(
            fn, bidirectional, num_buckets, max_distance
        )
        self.bidirectional = bidirectional
        param_dtype = check_float_dtype(fn, "param_dtype", param_dtype)
        self.dtype = check_float_dtype(fn, "dtype", dtype)
        init = nnx.initializers.normal(stddev=init_std)
        self.embedding = nnx.Param(
            init(rngs.params(), (self.num_buckets, self.num_heads), param_dtype)
        )

    def __call__(self, T: int, S: int, offset: int | ArrayLike = 0) -> Array:
        """Args:
          T: number of queries.
          S: number of keys.
          offset: position of query 0 among the keys, an int or a traced integer scalar.

        Returns:
          [1, N, T, S] additive logit bias.
        """
        fn = "RelativePositionBias"
        T = check_int(fn, "T", T, minimum=1)
        S = check_int(fn, "S", S, minimum=1)
        offset = check_offset(fn, offset)
        relative = jnp.arange(S)[None, :] - (jnp.arange(T)[:, None] + offset)  # [T, S], j - i
        buckets = relative_position_bucket(
            relative,
            bidirectional=self.bidirectional,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )
        values = jnp.take(self.embedding[...], buckets, axis=0)  # [T, S, N]
        return jnp.transpose(values, (2, 0, 1))[None].astype(self.dtype)  # -> [1, N, T, S]
