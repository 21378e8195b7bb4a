"""Positional encodings as pure functions: absolute (sinusoidal, 2-D sin-cos) and relative (T5
buckets, rotary, ALiBi). The modules that own a table or wrap these for a model
(`SinusoidalPositions`, `LearnedPositions`, `RelativePositionBias`) are in `attn.layers.position`.

Absolute encodings return a table `[T, D]` (or `[..., D]` for explicit positions) that a model adds
to its token embeddings. Relative encodings act inside attention: `alibi_bias` returns an additive
logit bias `[1, N, T, S]` for `dot_product_attention(bias=...)`, `relative_position_bucket` the
bucket ids that a learned T5 bias looks up, and `rotary_embedding` rotates queries and keys
`[B, T, N, H]` before the scores.

Positions for cached decoding: a chunk of T queries that starts at position p passes `offset=p`
(an int, or a traced scalar under `jax.jit`), so its query i sits at position p + i and key j at j,
as in `attn.kernels.masks.causal_mask`.

Everything is computed in float32 (float64 when float64 is asked for) and returned in `dtype`
(float32 unless requested otherwise); `rotary_embedding` returns the dtype of its input.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from attn.kernels.validation import (
    check_above,
    check_float,
    check_float_dtype,
    check_int,
    check_multiple,
    check_offset,
    check_rank,
)
from attn.typing import Array, ArrayLike, DType

__all__ = [
    "alibi_bias",
    "alibi_slopes",
    "check_base",
    "check_buckets",
    "relative_position_bucket",
    "rotary_embedding",
    "sincos_2d_encoding",
    "sinusoidal_encoding",
    "sinusoidal_rotation",
    "sinusoids",
]


def check_base(fn: str, base) -> float:
    """The wavelength scale `base` of a sinusoidal or rotary encoding as a float > 1."""
    return float(check_above(fn, "base", base, 1))


def _compute_dtype(dtype: jnp.dtype) -> jnp.dtype:
    """float32 for 16/32-bit outputs, float64 for float64 outputs (under jax x64)."""
    return jnp.dtype(jnp.float64) if dtype == jnp.float64 else jnp.dtype(jnp.float32)


# ----------------------------------------------------------------------------------------------
# Sinusoidal (Vaswani et al. 2017).


def _sinusoid_frequencies(dim: int, base: float, dtype: jnp.dtype) -> Array:
    """ω_i = base^(-2i/D) for i = 0 .. D/2 - 1, as [D/2]."""
    return jnp.power(base, -jnp.arange(0, dim, 2, dtype=dtype) / dim).astype(dtype)


def sinusoids(positions: Array, dim: int, base: float, dtype: jnp.dtype) -> Array:
    """The sinusoidal encoding of explicit positions, interleaved as in `sinusoidal_encoding`:
    [sin(p ω_0), cos(p ω_0), sin(p ω_1), ...] with ω_i = base^(-2i/D).

    Args:
      positions: integer positions of any shape [...] (unchecked: callers check them).
      dim: model width D, even.
      base: the wavelength scale.
      dtype: floating dtype of the result.

    Returns:
      [..., D].
    """
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
    length = check_int(fn, "length", length, minimum=0)
    dim = check_multiple(fn, "dim", dim, 2)
    base = check_base(fn, base)
    dtype = check_float_dtype(fn, "dtype", dtype)
    offset = check_offset(fn, offset)
    positions = jnp.arange(length) + offset
    return sinusoids(positions, dim, base, dtype)


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
    dim = check_multiple(fn, "dim", dim, 2)
    base = check_base(fn, base)
    dtype = check_float_dtype(fn, "dtype", dtype)
    if jnp.shape(k) != ():
        raise ValueError(f"{fn}: k must be a scalar shift, got shape {jnp.shape(k)}")
    compute = _compute_dtype(dtype)
    angles = jnp.asarray(k, compute) * _sinusoid_frequencies(dim, base, compute)  # [D/2]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    blocks = jnp.stack([jnp.stack([cos, sin], -1), jnp.stack([-sin, cos], -1)], -2)  # [D/2, 2, 2]
    eye = jnp.eye(dim // 2, dtype=compute)
    rotation = jnp.einsum("ij,iab->iajb", eye, blocks)  # block diagonal, [D/2, 2, D/2, 2]
    return rotation.reshape(dim, dim).astype(dtype)  # [D/2, 2, D/2, 2] -> [D, D]


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
    height = check_int(fn, "height", height, minimum=1)
    width = check_int(fn, "width", width, minimum=1)
    dim = check_multiple(fn, "dim", dim, 4)
    base = check_base(fn, base)
    dtype = check_float_dtype(fn, "dtype", dtype)
    compute = _compute_dtype(dtype)
    rows, cols = jnp.meshgrid(jnp.arange(height), jnp.arange(width), indexing="ij")  # [h, w] each
    col_half = _sincos_1d(cols.reshape(-1), dim // 2, base, compute)  # [h, w] -> [P]; [P, D/2]
    row_half = _sincos_1d(rows.reshape(-1), dim // 2, base, compute)
    return jnp.concatenate([col_half, row_half], axis=-1).astype(dtype)


# ----------------------------------------------------------------------------------------------
# T5 relative position buckets (Raffel et al. 2020).


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


def check_buckets(fn: str, bidirectional, num_buckets, max_distance) -> tuple[int, int]:
    """`(num_buckets, max_distance)` as ints, after checking that each side of the buckets keeps
    at least one logarithmic bucket beyond its exact ones (max_distance > the exact buckets)."""
    if not isinstance(bidirectional, bool):
        raise TypeError(f"{fn}: bidirectional must be a bool, got {bidirectional!r}")
    num_buckets = check_int(fn, "num_buckets", num_buckets, minimum=4 if bidirectional else 2)
    max_distance = check_int(fn, "max_distance", max_distance, minimum=1)
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
    num_buckets, max_distance = check_buckets(fn, bidirectional, num_buckets, max_distance)
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
    base = check_base(fn, base)
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
    num_heads = check_int(fn, "num_heads", num_heads, minimum=1)
    dtype = check_float_dtype(fn, "dtype", dtype)
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
    num_heads = check_int(fn, "num_heads", num_heads, minimum=1)
    T = check_int(fn, "T", T, minimum=1)
    S = check_int(fn, "S", S, minimum=1)
    if not isinstance(causal, bool):
        raise TypeError(f"{fn}: causal must be a bool, got {causal!r}")
    dtype = check_float_dtype(fn, "dtype", dtype)
    offset = check_offset(fn, offset)
    compute = _compute_dtype(dtype)
    distance = (jnp.arange(T)[:, None] + offset) - jnp.arange(S)[None, :]  # [T, S], i - j
    if not causal:
        distance = jnp.abs(distance)
    slopes = alibi_slopes(num_heads, dtype=compute)
    bias = -slopes[:, None, None] * distance.astype(compute)  # [N, T, S]
    return bias[None].astype(dtype)  # -> [1, N, T, S]
