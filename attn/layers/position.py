"""Positional encodings: absolute (sinusoidal, learned, 2-D sin-cos) and relative (T5 buckets,
rotary, ALiBi).

Absolute encodings return a table `[T, D]` (or `[B, T, D]` for per-example positions) that a model
adds to its token embeddings. Relative encodings act inside attention: `RelativePositionBias` and
`alibi_bias` return an additive logit bias `[1, N, T, S]` for `dot_product_attention(bias=...)`,
and `rotary_embedding` rotates queries and keys `[B, T, N, H]` before the scores.

Positions for cached decoding: a chunk of T queries that starts at position p passes `offset=p`
(an int, or a traced scalar under `jax.jit`), so its query i sits at position p + i and key j at j,
as in `attn.kernels.masks.causal_mask`.

Everything is computed in float32 (float64 when float64 is asked for) and returned in `dtype`
(float32 unless requested otherwise); `rotary_embedding` returns the dtype of its input.
"""

from __future__ import annotations

import math
import operator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from attn.kernels.validation import check_float, check_rank
from attn.typing import Array, ArrayLike, DType

__all__ = [
    "LearnedPositions",
    "RelativePositionBias",
    "SinusoidalPositions",
    "alibi_bias",
    "alibi_slopes",
    "relative_position_bucket",
    "rotary_embedding",
    "sincos_2d_encoding",
    "sinusoidal_encoding",
    "sinusoidal_rotation",
]


# ----------------------------------------------------------------------------------------------
# Argument checks shared by this file.


def _check_int(fn: str, name: str, value, *, minimum: int) -> int:
    """`value` as a Python int >= minimum, or a ValueError/TypeError naming it."""
    if isinstance(value, bool):
        raise TypeError(f"{fn}: {name} must be an int, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{fn}: {name} must be an int, got {value!r} of type {type(value).__name__}"
        ) from None
    if value < minimum:
        raise ValueError(f"{fn}: {name} must be >= {minimum}, got {value}")
    return value


def _check_even(fn: str, name: str, value, *, multiple: int = 2) -> int:
    value = _check_int(fn, name, value, minimum=multiple)
    if value % multiple:
        raise ValueError(f"{fn}: {name} must be a multiple of {multiple}, got {value}")
    return value


def _check_base(fn: str, base) -> float:
    if not (isinstance(base, int | float) and not isinstance(base, bool) and base > 1):
        raise ValueError(f"{fn}: base must be a number > 1, got {base!r}")
    return float(base)


def _check_dtype(fn: str, name: str, dtype: DType) -> jnp.dtype:
    dtype = jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{fn}: {name} must be a floating-point dtype, got {dtype}")
    return dtype


def _compute_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """float32 for 16/32-bit outputs, float64 for float64 outputs (under jax x64)."""
    return jnp.dtype(jnp.float64) if dtype == jnp.float64 else jnp.dtype(jnp.float32)


def _check_offset(fn: str, offset) -> Array | int:
    """A scalar integer offset: a Python int, or a (possibly traced) integer scalar array."""
    if isinstance(offset, int) and not isinstance(offset, bool):
        return offset
    shape, dtype = jnp.shape(offset), jnp.result_type(offset)
    if shape != () or not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(
            f"{fn}: offset must be an integer scalar (the position of query 0), "
            f"got shape {shape} and dtype {dtype}"
        )
    return offset


def _concrete_int(x) -> int | None:
    """The value of a scalar that is known at trace time, None for a traced value."""
    if isinstance(x, jax.core.Tracer):
        return None
    return int(x)


# ----------------------------------------------------------------------------------------------
# Sinusoidal (Vaswani et al. 2017).


def _sinusoid_frequencies(dim: int, base: float, dtype: jnp.dtype) -> Array:
    """ω_i = base^(-2i/D) for i = 0 .. D/2 - 1, as [D/2]."""
    return jnp.power(base, -jnp.arange(0, dim, 2, dtype=dtype) / dim).astype(dtype)


def _sinusoid_at(positions: Array, dim: int, base: float, dtype: jnp.dtype) -> Array:
    """Interleaved [sin(p ω_0), cos(p ω_0), sin(p ω_1), ...] for positions[...] -> [..., D]."""
    compute = _compute_dtype(dtype)
    angles = positions.astype(compute)[..., None] * _sinusoid_frequencies(dim, base, compute)
    pe = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1)  # [..., D/2, 2]
    return pe.reshape(*angles.shape[:-1], dim).astype(dtype)  # [..., D/2, 2] -> [..., D]


def sinusoidal_encoding(
    length: int,
    dim: int,
    *,
    base: float = 10000.0,
    offset: int | ArrayLike = 0,
    dtype: DType = jnp.float32,
) -> Array:
    """Sinusoidal positions PE(p, 2i) = sin(p / base^(2i/D)), PE(p, 2i+1) = cos(p / base^(2i/D))
    (Vaswani et al. 2017, "Attention Is All You Need", section 3.5).

    Sine and cosine of each frequency are interleaved as in the paper (even columns sine, odd
    columns cosine). Row t is position `offset + t`. Moving k positions is a fixed rotation of
    every (sin, cos) pair: PE(p + k) = R_k · PE(p), with R_k from `sinusoidal_rotation`.

    Args:
      length: number of positions T.
      dim: model width D, even.
      base: the wavelength scale (10000 in the paper).
      offset: position of row 0; an int or a (possibly traced) integer scalar, for cached decoding.
      dtype: floating dtype of the result.

    Returns:
      [T, D] encodings to add to the token embeddings.
    """
    fn = "sinusoidal_encoding"
    length = _check_int(fn, "length", length, minimum=0)
    dim = _check_even(fn, "dim", dim)
    base = _check_base(fn, base)
    dtype = _check_dtype(fn, "dtype", dtype)
    offset = _check_offset(fn, offset)
    positions = jnp.arange(length) + offset
    return _sinusoid_at(positions, dim, base, dtype)


def sinusoidal_rotation(
    k: int | ArrayLike, dim: int, *, base: float = 10000.0, dtype: DType = jnp.float32
) -> Array:
    """The rotation R_k with PE(p + k) = R_k · PE(p) for every position p (Vaswani et al. 2017).

    R_k is block diagonal with one 2×2 block per frequency ω_i = base^(-2i/D), acting on the
    interleaved pair (PE(p, 2i), PE(p, 2i+1)) = (sin pω_i, cos pω_i):

        [[ cos kω_i,  sin kω_i],
         [-sin kω_i,  cos kω_i]]

    since sin((p+k)ω) = cos kω · sin pω + sin kω · cos pω and
    cos((p+k)ω) = -sin kω · sin pω + cos kω · cos pω. R_k is orthogonal, R_0 = I,
    R_a R_b = R_{a+b} and R_{-k} = R_kᵀ: a relative offset is a linear map that does not depend on
    the position it is applied to.

    Args:
      k: the shift, an int or a scalar array (may be negative or traced).
      dim: model width D, even.
      base: the wavelength scale of the encoding.
      dtype: floating dtype of the result.

    Returns:
      [D, D] rotation matrix, so that `sinusoidal_encoding(T, D) @ R_k.T` is the encoding shifted
      by k.
    """
    fn = "sinusoidal_rotation"
    dim = _check_even(fn, "dim", dim)
    base = _check_base(fn, base)
    dtype = _check_dtype(fn, "dtype", dtype)
    if jnp.shape(k) != ():
        raise ValueError(f"{fn}: k must be a scalar shift, got shape {jnp.shape(k)}")
    compute = _compute_dtype(dtype)
    angles = jnp.asarray(k, compute) * _sinusoid_frequencies(dim, base, compute)  # [D/2]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    blocks = jnp.stack([jnp.stack([cos, sin], -1), jnp.stack([-sin, cos], -1)], -2)  # [D/2, 2, 2]
    eye = jnp.eye(dim // 2, dtype=compute)
    rotation = jnp.einsum("ij,iab->iajb", eye, blocks)  # block diagonal, [D/2, 2, D/2, 2]
    return rotation.reshape(dim, dim).astype(dtype)  # [D/2, 2, D/2, 2] -> [D, D]


def _positions(fn: str, positions, offset, max_length: int | None) -> Array:
    """Integer positions for a length T (offset + arange(T)) or an explicit int array [T] / [B, T].

    Checks what can be checked at trace time against a table of `max_length` rows (None = no
    table: any position, negative ones included, is fine).
    """
    offset = _check_offset(fn, offset)
    known_offset = _concrete_int(offset)
    if isinstance(positions, int | np.integer) and not isinstance(positions, bool):
        length = _check_int(fn, "length", positions, minimum=0)
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
    if max_length is not None and not isinstance(positions, jax.core.Tracer) and positions.size:
        low, high = int(positions.min()), int(positions.max())
        if low < 0 or high >= max_length:
            raise ValueError(
                f"{fn}: positions (plus offset) must lie in [0, max_length={max_length}), "
                f"got values from {low} to {high}"
            )
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
            None if max_length is None else _check_int(fn, "max_length", max_length, minimum=1)
        )
        self.dim = _check_even(fn, "dim", dim)
        self.base = _check_base(fn, base)
        self.dtype = _check_dtype(fn, "dtype", dtype)

    def __call__(self, positions: int | ArrayLike, offset: int | ArrayLike = 0) -> Array:
        """Encodings of positions `offset + 0 .. offset + T-1`, or of explicit positions.

        Args:
          positions: the length T (positions offset .. offset+T-1), or an integer array of
            positions [T] or [B, T] (offset is added to them).
          offset: position of the first query, an int or a traced integer scalar.

        Returns:
          [T, D], or [B, T, D] for positions [B, T].
        """
        positions = _positions("SinusoidalPositions", positions, offset, self.max_length)
        return _sinusoid_at(positions, self.dim, self.base, self.dtype)


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
        self.max_length = _check_int(fn, "max_length", max_length, minimum=1)
        self.dim = _check_int(fn, "dim", dim, minimum=1)
        param_dtype = _check_dtype(fn, "param_dtype", param_dtype)
        self.dtype = _check_dtype(fn, "dtype", dtype)
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
        positions = _positions("LearnedPositions", positions, offset, self.max_length)
        table = self.embedding[...]
        rows = jnp.take(table, positions, axis=0, mode="fill", fill_value=jnp.nan)
        return rows.astype(self.dtype)


# ----------------------------------------------------------------------------------------------
# 2-D sin-cos positions for image patches (MAE, He et al. 2022; ViT).


def _sincos_1d(positions: Array, dim: int, base: float, dtype: jnp.dtype) -> Array:
    """[sin(p ω_0..ω_{D/2-1}), cos(p ω_0..ω_{D/2-1})] (concatenated halves) -> [..., D]."""
    omega = 1.0 / base ** (jnp.arange(dim // 2, dtype=dtype) / (dim // 2))
    angles = positions.astype(dtype)[..., None] * omega
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def sincos_2d_encoding(
    height: int, width: int, dim: int, *, base: float = 10000.0, dtype: DType = jnp.float32
) -> Array:
    """Fixed 2-D sin-cos positions for a height × width grid of patches (He et al. 2022, "Masked
    Autoencoders Are Scalable Vision Learners", `get_2d_sincos_pos_embed`; Chen et al. 2021).

    For the patch at (row r, column c), with ω_i = base^(-i/(D/4)), i = 0 .. D/4 - 1:

        PE(r, c) = [sin(c ω), cos(c ω), sin(r ω), cos(r ω)]

    The first half of D encodes the column, the second half the row, in the order of the MAE
    reference code (so its fixed tables load unchanged). Patches are flattened row-major, as a
    ViT patchifies an image: patch index P = r · width + c.

    Args:
      height: patches per column (rows of the grid).
      width: patches per row (columns of the grid).
      dim: model width D, a multiple of 4.
      base: the wavelength scale.
      dtype: floating dtype of the result.

    Returns:
      [P, D] with P = height · width.
    """
    fn = "sincos_2d_encoding"
    height = _check_int(fn, "height", height, minimum=1)
    width = _check_int(fn, "width", width, minimum=1)
    dim = _check_even(fn, "dim", dim, multiple=4)
    base = _check_base(fn, base)
    dtype = _check_dtype(fn, "dtype", dtype)
    compute = _compute_dtype(dtype)
    rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")  # [h, w] each
    col_half = _sincos_1d(cols.reshape(-1), dim // 2, base, compute)  # [h, w] -> [P]; [P, D/2]
    row_half = _sincos_1d(rows.reshape(-1), dim // 2, base, compute)
    return jnp.concatenate([col_half, row_half], axis=-1).astype(dtype)


# ----------------------------------------------------------------------------------------------
# T5 relative position bias (Raffel et al. 2020).


def _bucket_table(num_buckets: int, max_distance: int) -> np.ndarray:
    """Bucket of each distance n = 0 .. max_distance on one side (host-side, exact).

    n < max_exact gets its own bucket; larger n share logarithmically wider buckets,
    max_exact + floor(log(n / max_exact) / log(max_distance / max_exact) · (buckets - max_exact)),
    capped at num_buckets - 1 (every n >= max_distance lands in the last bucket). Evaluating this
    once on the host in float64 makes the ids identical on every backend.
    """
    max_exact = num_buckets // 2
    n = np.arange(max_distance + 1)
    with np.errstate(divide="ignore"):
        scaled = np.log(n / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + np.floor(np.maximum(scaled, 0.0) * (num_buckets - max_exact)).astype(int)
    return np.where(n < max_exact, n, np.minimum(large, num_buckets - 1)).astype(np.int32)


def _check_buckets(fn: str, bidirectional, num_buckets, max_distance) -> tuple[int, int]:
    if not isinstance(bidirectional, bool):
        raise TypeError(f"{fn}: bidirectional must be a bool, got {bidirectional!r}")
    num_buckets = _check_int(fn, "num_buckets", num_buckets, minimum=4 if bidirectional else 2)
    max_distance = _check_int(fn, "max_distance", max_distance, minimum=1)
    max_exact = (num_buckets // 2 if bidirectional else num_buckets) // 2
    if max_distance <= max_exact:
        raise ValueError(
            f"{fn}: max_distance must exceed the {max_exact} exact buckets "
            f"(num_buckets={num_buckets}, bidirectional={bidirectional}), got {max_distance}"
        )
    return num_buckets, max_distance


def relative_position_bucket(
    relative_position: ArrayLike,
    *,
    bidirectional: bool,
    num_buckets: int = 32,
    max_distance: int = 128,
) -> Array:
    """T5 relative position buckets (Raffel et al. 2020, "Exploring the Limits of Transfer Learning
    with a Unified Text-to-Text Transformer"), the ids of Hugging Face
    `T5Attention._relative_position_bucket` and Mesh TensorFlow.

    `relative_position` is key position − query position (j − i). Bidirectional: half of the
    buckets for keys after the query (offset by num_buckets // 2), half for keys at or before it,
    by |j − i|. Causal (not bidirectional): keys after the query all share bucket 0 and
    n = max(i − j, 0) uses all buckets. Within a side of b buckets, distances below b // 2 get
    exact buckets and larger ones logarithmically wider buckets up to max_distance, beyond which
    all share the last bucket.

    Args:
      relative_position: integer array of any shape, j − i.
      bidirectional: True for encoders, False for causal decoders.
      num_buckets: total number of buckets.
      max_distance: distance from which all positions share the last bucket.

    Returns:
      int32 bucket ids in [0, num_buckets), the shape of `relative_position`.
    """
    fn = "relative_position_bucket"
    num_buckets, max_distance = _check_buckets(fn, bidirectional, num_buckets, max_distance)
    relative_position = jnp.asarray(relative_position)
    if not jnp.issubdtype(relative_position.dtype, jnp.integer):
        raise TypeError(
            f"{fn}: relative_position must be an integer array, got dtype {relative_position.dtype}"
        )
    relative_position = relative_position.astype(jnp.int32)
    buckets = jnp.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).astype(jnp.int32) * num_buckets
        distance = jnp.abs(relative_position)
    else:
        distance = jnp.maximum(-relative_position, 0)
    table = jnp.asarray(_bucket_table(num_buckets, max_distance))
    return buckets + table[jnp.minimum(distance, max_distance)]


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
        self.num_heads = _check_int(fn, "num_heads", num_heads, minimum=1)
        self.num_buckets, self.max_distance = _check_buckets(
            fn, bidirectional, num_buckets, max_distance
        )
        self.bidirectional = bidirectional
        param_dtype = _check_dtype(fn, "param_dtype", param_dtype)
        self.dtype = _check_dtype(fn, "dtype", dtype)
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
        T = _check_int(fn, "T", T, minimum=1)
        S = _check_int(fn, "S", S, minimum=1)
        offset = _check_offset(fn, offset)
        relative = jnp.arange(S)[None, :] - (jnp.arange(T)[:, None] + offset)  # [T, S], j - i
        buckets = relative_position_bucket(
            relative,
            bidirectional=self.bidirectional,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )
        values = jnp.take(self.embedding[...], buckets, axis=0)  # [T, S, N]
        return jnp.transpose(values, (2, 0, 1))[None].astype(self.dtype)  # -> [1, N, T, S]


# ----------------------------------------------------------------------------------------------
# Rotary position embedding (Su et al. 2021).


def rotary_embedding(x: ArrayLike, positions: ArrayLike, *, base: float = 10000.0) -> Array:
    """Rotary position embedding (Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary
    Position Embedding"): each pair of features of the vector at position m is rotated by m θ_i,
    θ_i = base^(-2i/H), so that <RoPE(q, m), RoPE(k, n)> depends on m − n only.

    Pairing follows the GPT-NeoX / Llama "rotate half" convention: feature i is paired with
    feature i + H/2 (not the interleaved (2i, 2i+1) of the paper), i.e. with x = [x₁, x₂] split
    in halves,

        RoPE(x, m) = x · cos(m θ) + [−x₂, x₁] · sin(m θ),   cos, sin repeated to width H.

    This is the layout of Hugging Face Llama / GPT-NeoX checkpoints. It equals the paper's
    interleaved form up to a fixed permutation of the features of q and k.

    Args:
      x: [B, T, N, H] queries or keys (any float dtype), H even.
      positions: integer or float positions [T] (shared by the batch) or [B, T].
      base: the wavelength scale θ base (10000 in the paper).

    Returns:
      [B, T, N, H] in the dtype of `x`, computed in float32 (float64 for float64 input).
    """
    fn = "rotary_embedding"
    check_float(fn, "x", x)
    check_rank(fn, "x", x, ("B", "T", "N", "H"), (None,) * 4)
    B, T, _, H = jnp.shape(x)
    if H % 2:
        raise ValueError(f"{fn}: the head dim H of x ([B, T, N, H] = {jnp.shape(x)}) must be even")
    base = _check_base(fn, base)
    pos_shape = jnp.shape(positions)
    if pos_shape not in ((T,), (B, T)):
        raise ValueError(
            f"{fn}: positions must have shape [T] = [{T}] or [B, T] = [{B}, {T}], "
            f"got shape {pos_shape}"
        )
    pos_dtype = jnp.result_type(positions)
    if not (jnp.issubdtype(pos_dtype, jnp.integer) or jnp.issubdtype(pos_dtype, jnp.floating)):
        raise TypeError(f"{fn}: positions must be integer or float, got dtype {pos_dtype}")
    x = jnp.asarray(x)
    compute = _compute_dtype(x.dtype)
    theta = jnp.power(base, -jnp.arange(0, H, 2, dtype=compute) / H)  # [H/2]
    angles = jnp.asarray(positions).astype(compute)[..., None] * theta  # [T, H/2] or [B, T, H/2]
    if angles.ndim == 2:
        angles = angles[None]  # [T, H/2] -> [1, T, H/2]
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]  # -> [B|1, T, 1, H]
    xc = x.astype(compute)
    x1, x2 = xc[..., : H // 2], xc[..., H // 2 :]
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return (xc * jnp.cos(angles) + rotated * jnp.sin(angles)).astype(x.dtype)


# ----------------------------------------------------------------------------------------------
# ALiBi (Press et al. 2022).


def _alibi_slopes(n: int) -> list[float]:
    """The slopes of the reference implementation (ofirpress/attention_with_linear_biases)."""

    def power_of_2(n: int) -> list[float]:
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + _alibi_slopes(2 * closest)[0::2][: n - closest]


def alibi_slopes(num_heads: int, *, dtype: DType = jnp.float32) -> Array:
    """ALiBi head slopes (Press et al. 2022, "Train Short, Test Long: Attention with Linear Biases
    Enables Input Length Extrapolation"): the geometric sequence m_h = 2^(−8h/N), h = 1 .. N.

    For N a power of 2 the slopes are start, start², ..., start^N with start = 2^(−8/N) (8 heads:
    1/2, 1/4, ..., 1/256). Otherwise, as in the reference implementation, with c the largest power
    of 2 below N: the c slopes of c heads, followed by the first N − c of every other slope of
    2c heads (6 heads: 1/4, 1/16, 1/64, 1/256, 1/2, 1/8).

    Args:
      num_heads: N.
      dtype: floating dtype of the result.

    Returns:
      [N] slopes.
    """
    fn = "alibi_slopes"
    num_heads = _check_int(fn, "num_heads", num_heads, minimum=1)
    dtype = _check_dtype(fn, "dtype", dtype)
    return jnp.asarray(np.asarray(_alibi_slopes(num_heads)), dtype=dtype)


def alibi_bias(
    num_heads: int,
    T: int,
    S: int,
    *,
    offset: int | ArrayLike = 0,
    causal: bool = True,
    dtype: DType = jnp.float32,
) -> Array:
    """ALiBi additive logit bias (Press et al. 2022): bias[n, i, j] = −m_n · (i − j), with m_n from
    `alibi_slopes`, query i at position offset + i and key j at position j.

    `causal=True` is the paper's decoder bias −m_n · (i − j). It is linear in j, so for keys after
    the query (j > i) it is positive: combine it with a causal mask, as the paper does. (The
    reference code adds m_n · j instead, which differs by a constant per query row and so gives
    the same softmax.) `causal=False` is the symmetric bias −m_n · |i − j| for encoders.

    Args:
      num_heads: N.
      T: number of queries.
      S: number of keys.
      offset: position of query 0 among the keys, an int or a traced integer scalar.
      causal: the signed decoder bias (True) or the symmetric encoder bias (False).
      dtype: floating dtype of the result.

    Returns:
      [1, N, T, S] additive logit bias.
    """
    fn = "alibi_bias"
    num_heads = _check_int(fn, "num_heads", num_heads, minimum=1)
    T = _check_int(fn, "T", T, minimum=1)
    S = _check_int(fn, "S", S, minimum=1)
    if not isinstance(causal, bool):
        raise TypeError(f"{fn}: causal must be a bool, got {causal!r}")
    dtype = _check_dtype(fn, "dtype", dtype)
    offset = _check_offset(fn, offset)
    compute = _compute_dtype(dtype)
    distance = (jnp.arange(T)[:, None] + offset) - jnp.arange(S)[None, :]  # [T, S], i - j
    if not causal:
        distance = jnp.abs(distance)
    slopes = alibi_slopes(num_heads, dtype=compute)
    bias = -slopes[:, None, None] * distance.astype(compute)  # [N, T, S]
    return bias[None].astype(dtype)  # -> [1, N, T, S]
