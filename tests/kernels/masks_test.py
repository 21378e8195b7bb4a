import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn.kernels import masks


def test_causal_mask_square_is_lower_triangle():
    np.testing.assert_array_equal(masks.causal_mask(4, 4), np.tril(np.ones((4, 4), bool)))


def test_causal_mask_offset_for_cached_chunk():
    # A chunk of 2 queries starting at position 3 among 6 keys: query i sees keys <= 3 + i.
    got = np.asarray(masks.causal_mask(2, 6, offset=3))
    want = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]], bool)
    np.testing.assert_array_equal(got, want)


def test_causal_mask_single_query_at_end_sees_all_keys():
    np.testing.assert_array_equal(masks.causal_mask(1, 4, offset=3), np.ones((1, 4), bool))


def test_causal_mask_offset_can_be_traced():
    f = jax.jit(lambda p: masks.causal_mask(1, 5, offset=p))
    np.testing.assert_array_equal(f(2), [[True, True, True, False, False]])


def test_padding_mask_shape_and_values():
    got = np.asarray(masks.padding_mask(jnp.array([2, 4]), 5))
    assert got.shape == (2, 1, 1, 5)
    np.testing.assert_array_equal(got[:, 0, 0], [[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]])


def test_query_padding_mask_shape_and_values():
    got = np.asarray(masks.query_padding_mask(jnp.array([1, 3]), 3))
    assert got.shape == (2, 1, 3, 1)
    np.testing.assert_array_equal(got[:, 0, :, 0], [[1, 0, 0], [1, 1, 1]])


def test_window_mask_symmetric_and_asymmetric():
    sym = np.asarray(masks.window_mask(5, 5, 1))
    i, j = np.indices((5, 5))
    np.testing.assert_array_equal(sym, np.abs(j - i) <= 1)
    asym = np.asarray(masks.window_mask(4, 6, (2, 0), offset=2))
    i, j = np.indices((4, 6))
    np.testing.assert_array_equal(asym, (j >= i + 2 - 2) & (j <= i + 2))


def test_window_mask_matches_jax_nn_window_definition():
    # jax.nn: query i attends keys in [i - left, i + right].
    got = np.asarray(masks.window_mask(3, 7, (1, 2)))
    want = np.zeros((3, 7), bool)
    for i in range(3):
        want[i, max(0, i - 1) : i + 3] = True
    np.testing.assert_array_equal(got, want)


def test_combine_masks_ands_and_ignores_none():
    a = masks.causal_mask(3, 3)
    b = masks.padding_mask(jnp.array([2]), 3)
    got = masks.combine_masks(a, None, b)
    assert got.shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(got[0, 0], np.asarray(a) & np.array([1, 1, 0], bool))
    assert masks.combine_masks(None, None) is None


def test_combine_masks_rejects_float_masks():
    with pytest.raises(TypeError, match="boolean"):
        masks.combine_masks(jnp.ones((2, 2)))


@pytest.mark.parametrize("window", [-1, (1, -2), (1, 2, 3), 1.5])
def test_window_rejects_bad_sizes(window):
    with pytest.raises((TypeError, ValueError), match="window"):
        masks.window_mask(3, 3, window)


def test_build_mask_combines_every_argument():
    got = masks.build_mask(
        4,
        5,
        mask=jnp.ones((1, 1, 4, 5), bool),
        is_causal=True,
        query_seq_lengths=jnp.array([3]),
        key_value_seq_lengths=jnp.array([2]),
        local_window_size=(1, 0),
    )
    i, j = np.indices((4, 5))
    want = (j <= i) & (j >= i - 1) & (i < 3) & (j < 2)
    np.testing.assert_array_equal(np.broadcast_to(got, (1, 1, 4, 5))[0, 0], want)


def test_key_mask_turns_a_padding_mask_into_a_key_mask():
    padding = np.array([[1, 1, 0], [1, 0, 0]])
    got = masks.key_mask("M", padding, (2, 3))
    assert got.shape == (2, 1, 1, 3) and got.dtype == jnp.bool_
    np.testing.assert_array_equal(got[:, 0, 0], padding.astype(bool))
    assert masks.key_mask("M", None, (2, 3)) is None
    with pytest.raises(ValueError, match=r"M: src_mask must have shape \[B, S\] = \[2, 4\]"):
        masks.key_mask("M", padding, (2, 4), name="src_mask", letter="S")
    with pytest.raises(TypeError, match="M: attention_mask must be boolean or 0/1 integers"):
        masks.key_mask("M", padding.astype(np.float32), (2, 3))
