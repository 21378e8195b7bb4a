"""Tests for attn.layers.gating: squeeze-and-excitation and the gated linear unit against float64
NumPy forwards from the modules' own parameters, inspectable weights (sown, collected, captured),
dtypes and input validation."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.layers.gating import GatedLinearUnit, SqueezeExcitation
from attn.layers.intermediates import collect_intermediates

B, H, W, T, C, D, F = 2, 3, 5, 7, 8, 6, 4

WIDE = {"bias_init": nnx.initializers.normal(1.0), "kernel_init": nnx.initializers.normal(0.5)}


def _rngs(seed: int) -> nnx.Rngs:
    """Rngs on an "rbg" key, which compiles much faster than the default threefry on CPU."""
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def _x(*shape: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # An offset per example and channel makes the squeezed means differ across both.
    offset = rng.normal(size=(shape[0], *([1] * (len(shape) - 2)), shape[-1])) * 2.0
    return (rng.normal(size=shape) + offset).astype(np.float32)


def _dense(x: np.ndarray, linear: nnx.Linear) -> np.ndarray:
    out = np.asarray(x, np.float64) @ np.asarray(linear.kernel[...], np.float64)
    return out if linear.bias is None else out + np.asarray(linear.bias[...], np.float64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def numpy_se(model: SqueezeExcitation, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    z = x.reshape(x.shape[0], -1, x.shape[-1]).mean(axis=1)  # [B, ..., C] -> [B, C]
    s = _sigmoid(_dense(np.maximum(_dense(z, model.reduce_proj), 0.0), model.expand_proj))
    return x * s.reshape(s.shape[0], *([1] * (x.ndim - 2)), s.shape[1]), s


def numpy_glu(model: GatedLinearUnit, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g = _sigmoid(_dense(x, model.gate_proj))
    return g * _dense(x, model.value_proj), g


def _se(model: SqueezeExcitation, x) -> tuple[jax.Array, jax.Array]:
    """(out, channel weights [B, C]) of one call, through the collector."""
    out, found = collect_intermediates(model, x)
    return out, found[("channel_weights",)]


def _glu(model: GatedLinearUnit, x) -> tuple[jax.Array, jax.Array]:
    """(y, gates) of one call, through the collector."""
    y, found = collect_intermediates(model, x)
    return y, found[("gates",)]


def _quiet_sow(fn, *args, **kwargs):
    """Calls `fn` outside `nnx.capture`, where flax warns that sowing there is deprecated."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return fn(*args, **kwargs)


class TwoSE(nnx.Module):
    """A toy model with two squeeze-and-excitation layers, as a notebook would inspect."""

    def __init__(self, rngs: nnx.Rngs):
        self.first = SqueezeExcitation(C, reduction=4, rngs=rngs)
        self.second = SqueezeExcitation(C, reduction=2, rngs=rngs)

    def __call__(self, x):
        return self.second(self.first(x))


def test_se_images_match_numpy():
    model = SqueezeExcitation(C, reduction=4, rngs=_rngs(3), **WIDE)
    x = _x(B, H, W, C)
    hidden = _dense(x.mean(axis=(1, 2)), model.reduce_proj)
    assert np.all(hidden > 0)  # no ReLU unit is dead, so every weight depends on the input
    out, s = _se(model, x)
    want_out, want_s = numpy_se(model, x)
    assert out.shape == (B, H, W, C) and s.shape == (B, C)
    np.testing.assert_allclose(s, want_s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, want_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(model(x), out)


def test_se_weights_lie_in_open_unit_interval_and_differ_per_example():
    # Default initializers: wide ones saturate the float32 sigmoid to exactly 1.
    model = SqueezeExcitation(C, reduction=2, rngs=_rngs(1))
    _, s = _se(model, _x(B, H, W, C, seed=3))
    s = np.asarray(s)
    assert np.all((s > 0) & (s < 1))
    assert not np.allclose(s[0], s[1])  # pooled per example, not over the batch


def test_se_parameters_and_hidden_width():
    model = SqueezeExcitation(C, reduction=4, rngs=_rngs(0))
    assert model.reduce_proj.kernel.shape == (C, 2)
    assert model.expand_proj.kernel.shape == (2, C)
    assert set(nnx.state(model, nnx.Param)) == {"reduce_proj", "expand_proj"}
    assert SqueezeExcitation(C, rngs=_rngs(0)).hidden_dim == 1  # 8 // 16 = 0, at least 1
    assert SqueezeExcitation(C, reduction=3, rngs=_rngs(0)).hidden_dim == 2
    assert SqueezeExcitation(C, hidden_dim=5, rngs=_rngs(0)).expand_proj.kernel.shape == (5, C)


@pytest.mark.parametrize("shape", [(B, T, C), (B, 2, H, W, C)])
def test_se_pools_over_every_axis_between_batch_and_channels(shape):
    model = SqueezeExcitation(C, reduction=2, rngs=_rngs(2), **WIDE)
    x = _x(*shape, seed=1)
    out, s = _se(model, x)
    want_out, want_s = numpy_se(model, x)
    assert s.shape == (B, C)
    np.testing.assert_allclose(s, want_s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, want_out, rtol=1e-5, atol=1e-5)


def test_se_under_jit_equals_eager():
    model = SqueezeExcitation(C, reduction=2, rngs=_rngs(3), **WIDE)
    x = _x(B, T, C)
    np.testing.assert_allclose(nnx.jit(lambda m, x: m(x))(model, x), model(x), rtol=1e-6)


def test_se_sows_channel_weights_for_nnx_pop():
    model = SqueezeExcitation(C, reduction=4, sow_weights=True, rngs=_rngs(4), **WIDE)
    x1, x2 = _x(B, H, W, C, seed=1), _x(B, H, W, C, seed=2)
    s1, s2 = _se(model, x1)[1], _se(model, x2)[1]
    assert model.sow_weights and not nnx.state(model, nnx.Intermediate)  # left as it was
    _quiet_sow(model, x1)
    _quiet_sow(model, x2)
    sown = nnx.pop(model, nnx.Intermediate)
    got = sown["channel_weights"].get_value()
    assert len(got) == 2  # one entry per call
    np.testing.assert_array_equal(got[0], s1)
    np.testing.assert_array_equal(got[1], s2)
    assert not nnx.state(model, nnx.Intermediate)  # popped


def test_se_sows_nothing_by_default():
    model = SqueezeExcitation(C, reduction=4, rngs=_rngs(4))
    model(_x(B, T, C))
    assert not nnx.state(model, nnx.Intermediate)
    inspected = nnx.view(model, sow_weights=True)
    _quiet_sow(inspected, _x(B, T, C))
    assert "channel_weights" in nnx.pop(inspected, nnx.Intermediate)


def test_se_weights_of_a_whole_model_through_view_and_capture():
    model = TwoSE(_rngs(5))
    x = _x(B, H, W, C)
    inspected = nnx.view(model, sow_weights=True)
    out, sown = nnx.capture(inspected, nnx.Intermediate)(x)
    np.testing.assert_array_equal(out, model(x))
    _, want_first = _se(model.first, x)
    _, want_second = _se(model.second, model.first(x))
    np.testing.assert_array_equal(sown["first"]["channel_weights"].get_value()[0], want_first)
    np.testing.assert_array_equal(sown["second"]["channel_weights"].get_value()[0], want_second)
    # The view shares the parameters but leaves the original model's mode alone.
    assert not model.first.sow_weights and inspected.first.sow_weights
    model(x)
    assert not nnx.state(model, nnx.Intermediate)


def test_se_bfloat16_compute_keeps_float32_params():
    model = SqueezeExcitation(C, reduction=2, dtype=jnp.bfloat16, rngs=_rngs(6), **WIDE)
    ref = SqueezeExcitation(C, reduction=2, rngs=_rngs(6), **WIDE)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    x = _x(B, H, W, C)
    out, s = _se(model, x)
    assert out.dtype == jnp.bfloat16 and s.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), ref(x), rtol=0.05, atol=0.05)
    out16 = model(jnp.asarray(x, jnp.bfloat16))
    assert out16.dtype == jnp.bfloat16


def test_se_wrong_channels_names_x_the_expected_and_the_given_shape():
    model = SqueezeExcitation(C, rngs=_rngs(0))
    with pytest.raises(
        ValueError,
        match=r"x must have shape \[B, \.\.\., C\] = \[B, \.\.\., 8\].*got shape \(2, 3, 5, 3\)",
    ):
        model(np.zeros((B, H, W, 3), np.float32))
    with pytest.raises(ValueError, match=r"at least one axis between B and C.*got shape \(2, 8\)"):
        model(np.zeros((B, C), np.float32))
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        model(np.zeros((B, T, C), np.int32))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"reduction": 0}, ValueError, "reduction must be >= 1, got 0"),
        ({"reduction": 0.5}, TypeError, "reduction must be an int, got 0.5"),
        ({"hidden_dim": 0}, ValueError, "hidden_dim must be >= 1, got 0"),
        ({"activation": "tanh"}, ValueError, "activation must be one of"),
    ],
)
def test_se_bad_constructor_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        SqueezeExcitation(C, rngs=_rngs(0), **kwargs)


def test_glu_matches_numpy_and_returns_gates():
    model = GatedLinearUnit(D, F, rngs=_rngs(7), **WIDE)
    x = _x(B, T, D)
    y, g = _glu(model, x)
    want_y, want_g = numpy_glu(model, x)
    assert y.shape == (B, T, F) and g.shape == (B, T, F)
    np.testing.assert_allclose(g, want_g, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-5)
    assert np.all((np.asarray(g) > 0) & (np.asarray(g) < 1))
    np.testing.assert_array_equal(model(x), y)


def test_glu_parameters():
    model = GatedLinearUnit(D, F, use_bias=False, rngs=_rngs(0))
    assert model.value_proj.kernel.shape == (D, F) and model.gate_proj.kernel.shape == (D, F)
    assert model.value_proj.bias is None and model.gate_proj.bias is None
    assert set(nnx.state(model, nnx.Param)) == {"value_proj", "gate_proj"}


def test_glu_sows_gates():
    model = GatedLinearUnit(D, F, rngs=_rngs(8))
    x = _x(T, D)
    _, g = _glu(model, x)
    assert not model.sow_weights and not nnx.state(model, nnx.Intermediate)
    inspected = nnx.view(model, sow_weights=True)
    _quiet_sow(inspected, x)
    np.testing.assert_array_equal(nnx.pop(inspected, nnx.Intermediate)["gates"].get_value()[0], g)
    model(x)
    assert not nnx.state(model, nnx.Intermediate)
    _, sown = nnx.capture(nnx.view(model, sow_weights=True), nnx.Intermediate)(x)
    np.testing.assert_array_equal(sown["gates"].get_value()[0], g)


def test_glu_bfloat16():
    model = GatedLinearUnit(D, F, dtype=jnp.bfloat16, rngs=_rngs(9))
    y, g = _glu(model, _x(T, D))
    assert y.dtype == jnp.bfloat16 and g.dtype == jnp.bfloat16
    assert model.gate_proj.kernel.dtype == jnp.float32


def test_glu_errors():
    model = GatedLinearUnit(D, F, rngs=_rngs(0))
    with pytest.raises(
        ValueError, match=r"x must have shape \[\.\.\., D\] = \[\.\.\., 6\], got shape \(2, 7, 4\)"
    ):
        model(np.zeros((B, T, F), np.float32))
    with pytest.raises(ValueError, match="out_features must be >= 1"):
        GatedLinearUnit(D, 0, rngs=_rngs(0))
