"""Positional encodings as functions: values against the papers' formulas and reference code,
their algebraic properties (shift = rotation, relative-only dependence), shapes, dtypes and bad
input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attn.kernels import positions as pos

# ----------------------------------------------------------------------------------------------
# Sinusoidal.


def _paper_sinusoid(positions, dim, base=10000.0):
    """PE(p, 2i) = sin(p / base^(2i/D)), PE(p, 2i+1) = cos(p / base^(2i/D)), one entry at a time."""
    pe = np.zeros((len(positions), dim))
    for row, p in enumerate(positions):
        for i in range(dim // 2):
            pe[row, 2 * i] = math.sin(p / base ** (2 * i / dim))
            pe[row, 2 * i + 1] = math.cos(p / base ** (2 * i / dim))
    return pe


def test_sinusoidal_matches_paper_formula():
    got = pos.sinusoidal_encoding(7, 6)
    assert got.shape == (7, 6) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, _paper_sinusoid(range(7), 6), atol=1e-6)


def test_sinusoidal_offset_and_base():
    got = pos.sinusoidal_encoding(5, 10, base=100.0, offset=3)
    np.testing.assert_allclose(got, _paper_sinusoid(range(3, 8), 10, base=100.0), atol=1e-6)


def test_sinusoidal_float64(x64):
    got = pos.sinusoidal_encoding(9, 8, offset=1000, dtype=jnp.float64)
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(got, _paper_sinusoid(range(1000, 1009), 8), atol=1e-12)


def test_sinusoidal_bfloat16_and_traced_offset():
    assert pos.sinusoidal_encoding(3, 4, dtype=jnp.bfloat16).dtype == jnp.bfloat16
    f = jax.jit(lambda p: pos.sinusoidal_encoding(4, 6, offset=p))
    np.testing.assert_allclose(f(5), _paper_sinusoid(range(5, 9), 6), atol=1e-6)


@pytest.mark.parametrize("k", [0, 1, 3, -2, 17])
def test_sinusoidal_shift_is_the_rotation(k):
    D = 8
    R = np.asarray(pos.sinusoidal_rotation(k, D))
    table = np.asarray(pos.sinusoidal_encoding(64, D))
    for p in (2, 5, 9, 30):
        np.testing.assert_allclose(R @ table[p], table[p + k], atol=1e-5)
    # The same matrix moves the whole table: PE(p + k) = PE(p) R_kᵀ row by row.
    np.testing.assert_allclose(table[2:40] @ R.T, table[2 + k : 40 + k], atol=1e-5)


def test_sinusoidal_rotation_matches_hand_block():
    # D = 4: ω = (1, 1/100); block i is [[cos kω_i, sin kω_i], [-sin kω_i, cos kω_i]].
    R = np.asarray(pos.sinusoidal_rotation(2, 4))
    c0, s0, c1, s1 = math.cos(2), math.sin(2), math.cos(0.02), math.sin(0.02)
    want = np.array([[c0, s0, 0, 0], [-s0, c0, 0, 0], [0, 0, c1, s1], [0, 0, -s1, c1]])
    np.testing.assert_allclose(R, want, atol=1e-6)


def test_sinusoidal_rotation_group_properties():
    D = 10
    Ra, Rb = pos.sinusoidal_rotation(3, D), pos.sinusoidal_rotation(5, D)
    np.testing.assert_allclose(Ra @ Ra.T, np.eye(D), atol=1e-6)
    np.testing.assert_allclose(Ra @ Rb, pos.sinusoidal_rotation(8, D), atol=1e-5)
    np.testing.assert_allclose(pos.sinusoidal_rotation(0, D), np.eye(D), atol=0)
    np.testing.assert_allclose(pos.sinusoidal_rotation(-3, D), Ra.T, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# 2-D sin-cos.


def _mae_2d_sincos(embed_dim, grid_h, grid_w):
    """NumPy transliteration of MAE's get_2d_sincos_pos_embed (util/pos_embed.py)."""

    def get_1d(embed_dim, pos):
        omega = np.arange(embed_dim // 2, dtype=np.float64)
        omega /= embed_dim / 2.0
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.meshgrid(np.arange(grid_w, dtype=np.float64), np.arange(grid_h, dtype=np.float64))
    grid = np.stack(grid, axis=0).reshape([2, 1, grid_h, grid_w])
    emb_h = get_1d(embed_dim // 2, grid[0])
    emb_w = get_1d(embed_dim // 2, grid[1])
    return np.concatenate([emb_h, emb_w], axis=1)


def test_sincos_2d_matches_mae_reference():
    got = pos.sincos_2d_encoding(3, 5, 8)
    assert got.shape == (15, 8) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, _mae_2d_sincos(8, 3, 5), atol=1e-6)
    np.testing.assert_allclose(
        pos.sincos_2d_encoding(4, 4, 16), _mae_2d_sincos(16, 4, 4), atol=1e-6
    )


def test_sincos_2d_halves_follow_column_and_row():
    h, w, D = 3, 5, 12
    grid = np.asarray(pos.sincos_2d_encoding(h, w, D)).reshape(h, w, D)  # row-major patches
    column_half, row_half = grid[..., : D // 2], grid[..., D // 2 :]
    np.testing.assert_array_equal(column_half, np.broadcast_to(column_half[:1], column_half.shape))
    np.testing.assert_array_equal(row_half, np.broadcast_to(row_half[:, :1], row_half.shape))
    assert np.abs(np.diff(column_half, axis=1)).max() > 0.1
    assert np.abs(np.diff(row_half, axis=0)).max() > 0.1
    np.testing.assert_allclose(
        row_half[2, 0], np.asarray(pos.sincos_2d_encoding(1, 3, D))[2, : D // 2]
    )


# ----------------------------------------------------------------------------------------------
# T5 relative buckets and bias.


def _hf_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """NumPy transliteration of transformers' T5Attention._relative_position_bucket (float32)."""
    relative_position = np.asarray(relative_position, np.int64)
    relative_buckets = np.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        relative_buckets += (relative_position > 0).astype(np.int64) * num_buckets
        relative_position = np.abs(relative_position)
    else:
        relative_position = -np.minimum(relative_position, np.zeros_like(relative_position))
    max_exact = num_buckets // 2
    is_small = relative_position < max_exact
    with np.errstate(divide="ignore", invalid="ignore"):
        relative_position_if_large = max_exact + (
            np.log(relative_position.astype(np.float32) / max_exact)
            / np.float32(math.log(max_distance / max_exact))
            * np.float32(num_buckets - max_exact)
        ).astype(np.int64)
    relative_position_if_large = np.minimum(relative_position_if_large, num_buckets - 1)
    relative_buckets += np.where(is_small, relative_position, relative_position_if_large)
    return relative_buckets


# relative position j - i -> bucket, worked out by hand from the formula (num_buckets=32,
# max_distance=128). Causal: n = max(i - j, 0); 16 exact buckets, then 16 + ⌊16 log(n/16)/log 8⌋.
CAUSAL_TABLE = {
    5: 0, 1: 0, 0: 0, -1: 1, -15: 15, -16: 16, -20: 17, -31: 21, -32: 21, -63: 26, -64: 26,
    -127: 31, -128: 31, -1000: 31,
}  # fmt: skip
# Bidirectional: 16 buckets a side (+16 for keys after the query); 8 exact, then
# 8 + ⌊8 log(n/8)/log 16⌋ up to 15.
BIDIRECTIONAL_TABLE = {
    0: 0, -1: 1, 1: 17, -7: 7, 7: 23, -8: 8, 8: 24, -15: 9, -16: 10, 16: 26, -32: 12, 32: 28,
    -64: 14, -127: 15, -128: 15, 128: 31, -1000: 15, 1000: 31,
}  # fmt: skip


@pytest.mark.parametrize(
    ("bidirectional", "table"), [(False, CAUSAL_TABLE), (True, BIDIRECTIONAL_TABLE)]
)
def test_relative_position_bucket_hand_table(bidirectional, table):
    rel = np.array(list(table))
    got = pos.relative_position_bucket(rel, bidirectional=bidirectional)
    assert got.dtype == jnp.int32
    np.testing.assert_array_equal(got, list(table.values()))
    np.testing.assert_array_equal(_hf_bucket(rel, bidirectional), list(table.values()))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize(
    ("num_buckets", "max_distance"), [(32, 128), (64, 256), (16, 20), (10, 40), (32, 500)]
)
def test_relative_position_bucket_matches_hf(bidirectional, num_buckets, max_distance):
    rel = np.arange(-700, 700).reshape(7, 200)
    got = pos.relative_position_bucket(
        rel, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance
    )
    want = _hf_bucket(rel, bidirectional, num_buckets, max_distance)
    np.testing.assert_array_equal(got, want)
    assert got.shape == rel.shape


# ----------------------------------------------------------------------------------------------
# Rotary.


def _llama_rope(x, positions, base=10000.0):
    """NumPy float64 transcription of the Llama / GPT-NeoX rotate-half rotary embedding."""
    x = np.asarray(x, np.float64)
    H = x.shape[-1]
    inv_freq = 1.0 / base ** (np.arange(0, H, 2) / H)
    positions = np.broadcast_to(np.asarray(positions, np.float64), x.shape[:2])
    freqs = positions[..., None] * inv_freq  # [B, T, H/2]
    emb = np.concatenate([freqs, freqs], axis=-1)[:, :, None, :]
    rotate_half = np.concatenate([-x[..., H // 2 :], x[..., : H // 2]], axis=-1)
    return x * np.cos(emb) + rotate_half * np.sin(emb)


def _random(shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def test_rotary_matches_rotate_half_reference():
    x = _random((2, 5, 3, 6))
    positions = jnp.array([0, 1, 2, 7, 40])
    got = pos.rotary_embedding(x, positions)
    assert got.shape == x.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(got, _llama_rope(x, positions), atol=1e-5)
    per_example = jnp.array([[3, 4, 5, 6, 7], [0, 0, 1, 1, 2]])
    np.testing.assert_allclose(
        pos.rotary_embedding(x, per_example, base=500.0),
        _llama_rope(x, per_example, base=500.0),
        atol=1e-5,
    )


def test_rotary_position_zero_is_identity_and_norm_is_kept():
    x = _random((2, 5, 3, 8), seed=1)
    np.testing.assert_allclose(pos.rotary_embedding(x, jnp.zeros(5, jnp.int32)), x, atol=1e-7)
    rotated = pos.rotary_embedding(x, jnp.arange(5) * 13)
    np.testing.assert_allclose(
        np.linalg.norm(rotated, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5
    )
    assert not np.allclose(rotated[:, 1:], x[:, 1:], atol=1e-2)


def test_rotary_dtypes():
    x = _random((1, 3, 2, 4)).astype(jnp.bfloat16)
    assert pos.rotary_embedding(x, jnp.arange(3)).dtype == jnp.bfloat16


@jax.jit
def _rope_scores(q, k, positions):
    """Score <RoPE(q, m), RoPE(k, n)> for positions = [m, n], q and k of width H."""
    x = jnp.stack([q, k])[None, :, None, :]  # [H] x 2 -> [1, 2, 1, H]
    rotated = pos.rotary_embedding(x, positions)
    return jnp.dot(rotated[0, 0, 0], rotated[0, 1, 0])


@settings(max_examples=30)
@given(
    m=st.integers(0, 300),
    n=st.integers(0, 300),
    shift=st.integers(-300, 300),
    seed=st.integers(0, 2**16),
)
def test_rotary_scores_depend_only_on_relative_position(m, n, shift, seed):
    q, k = _random((2, 16), seed)
    score = float(_rope_scores(q, k, jnp.array([m, n])))
    shifted = float(_rope_scores(q, k, jnp.array([m + shift, n + shift])))
    relative = float(_rope_scores(q, k, jnp.array([m - n, 0])))
    scale = float(jnp.linalg.norm(q) * jnp.linalg.norm(k))
    assert abs(score - shifted) < 2e-4 * scale
    assert abs(score - relative) < 2e-4 * scale


# ----------------------------------------------------------------------------------------------
# ALiBi.


def test_alibi_slopes_power_of_two():
    np.testing.assert_array_equal(pos.alibi_slopes(8), [2.0**-h for h in range(1, 9)])
    np.testing.assert_array_equal(pos.alibi_slopes(4), [2.0**-h for h in (2, 4, 6, 8)])


def test_alibi_slopes_other_head_counts_follow_reference():
    # 6 heads: the 4-head slopes, then the 1st and 3rd of the 8-head slopes.
    np.testing.assert_array_equal(
        pos.alibi_slopes(6), [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8]
    )
    # 12 heads: the 8-head slopes, then every other of the 16-head slopes 2^-0.5, 2^-1.5, ...
    want = [2.0**-h for h in range(1, 9)] + [2.0 ** -(h + 0.5) for h in range(4)]
    np.testing.assert_allclose(pos.alibi_slopes(12), want, rtol=1e-7)


def test_alibi_bias_values():
    N, T, S = 4, 3, 5
    bias = np.asarray(pos.alibi_bias(N, T, S, offset=2))
    assert bias.shape == (1, N, T, S) and bias.dtype == np.float32
    slopes = np.array([2.0**-h for h in (2, 4, 6, 8)])
    i, j = np.indices((T, S))
    np.testing.assert_allclose(bias[0], -slopes[:, None, None] * (2 + i - j), rtol=1e-7)
    np.testing.assert_array_equal(bias[0, 0, 0, :3], [-0.5, -0.25, 0.0])
    symmetric = np.asarray(pos.alibi_bias(N, T, S, offset=2, causal=False))
    np.testing.assert_allclose(symmetric[0], -slopes[:, None, None] * np.abs(2 + i - j), rtol=1e-7)


def test_alibi_bias_traced_offset_and_dtype():
    f = jax.jit(lambda offset: pos.alibi_bias(2, 1, 6, offset=offset))
    np.testing.assert_array_equal(f(jnp.int32(4)), pos.alibi_bias(2, 5, 6)[:, :, 4:5])
    assert pos.alibi_bias(2, 2, 2, dtype=jnp.bfloat16).dtype == jnp.bfloat16


# ----------------------------------------------------------------------------------------------
# Bad input.

_ints = jnp.zeros(3, jnp.int32)
_x = jnp.zeros((2, 5, 3, 8))

BAD_INPUT = [
    (lambda: pos.sinusoidal_encoding(4, 5), ValueError, r"sinusoidal_encoding: dim must be a "
     r"multiple of 2, got 5"),
    (lambda: pos.sinusoidal_encoding(4.0, 6), TypeError, r"length must be an int, got 4.0"),
    (lambda: pos.sinusoidal_encoding(4, 6, offset=_ints), ValueError, r"offset must be an "
     r"integer scalar.*shape \(3,\)"),
    (lambda: pos.sinusoidal_encoding(4, 6, dtype=jnp.int32), TypeError, r"dtype must be a "
     r"floating-point dtype, got int32"),
    (lambda: pos.sinusoidal_encoding(4, 6, base=1.0), ValueError, r"base must be > 1, got 1.0"),
    (lambda: pos.sinusoidal_rotation(1, 7), ValueError, r"sinusoidal_rotation: dim must be a "
     r"multiple of 2, got 7"),
    (lambda: pos.sincos_2d_encoding(2, 3, 6), ValueError, r"sincos_2d_encoding: dim must be a "
     r"multiple of 4, got 6"),
    (lambda: pos.sincos_2d_encoding(0, 3, 8), ValueError, r"height must be >= 1, got 0"),
    (lambda: pos.relative_position_bucket(jnp.zeros(3), bidirectional=True), TypeError,
     r"relative_position must be an integer array, got dtype float32"),
    (lambda: pos.relative_position_bucket(_ints, bidirectional=False, max_distance=16),
     ValueError, r"max_distance must exceed the 16 exact buckets.*got 16"),
    (lambda: pos.relative_position_bucket(_ints, bidirectional=1), TypeError,
     r"bidirectional must be a bool"),
    (lambda: pos.rotary_embedding(_x[..., :7], jnp.arange(5)), ValueError, r"head dim H of x "
     r".*\(2, 5, 3, 7\).* must be even"),
    (lambda: pos.rotary_embedding(_x[0], jnp.arange(5)), ValueError, r"x must have shape "
     r"\[B, T, N, H\].*got shape \(5, 3, 8\)"),
    (lambda: pos.rotary_embedding(_x, jnp.arange(4)), ValueError, r"positions must have shape "
     r"\[T\] = \[5\] or \[B, T\] = \[2, 5\], got shape \(4,\)"),
    (lambda: pos.rotary_embedding(_x.astype(int), jnp.arange(5)), TypeError, r"x must be a "
     r"floating-point array"),
    (lambda: pos.alibi_slopes(0), ValueError, r"alibi_slopes: num_heads must be >= 1, got 0"),
    (lambda: pos.alibi_bias(4, 3, 0), ValueError, r"alibi_bias: S must be >= 1, got 0"),
    (lambda: pos.alibi_bias(4, 3, 3, causal="yes"), TypeError, r"causal must be a bool"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "pattern"), BAD_INPUT)
def test_bad_input_errors(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()
