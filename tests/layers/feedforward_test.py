"""Tests for attn.layers.feedforward: MLP and GatedMLP against float64 NumPy forwards computed from
the modules' own parameters, dropout, dtypes and input validation."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.layers.feedforward import ACTIVATIONS, GATE_ACTIVATIONS, MLP, GatedMLP

B, T, D, F = 2, 5, 8, 12

_erf = np.vectorize(math.erf)

NUMPY_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "gelu_tanh": lambda x: (
        0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))
    ),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "identity": lambda x: x,
}

# Biases drawn non-zero so that a dropped or misplaced bias shows.
WIDE = {"bias_init": nnx.initializers.normal(1.0)}


def _key(seed: int) -> jax.Array:
    """An "rbg" key: it compiles much faster than the default threefry on CPU."""
    return jax.random.key(seed, impl="rbg")


def _rngs(seed: int, dropout: int | None = None) -> nnx.Rngs:
    if dropout is None:
        return nnx.Rngs(_key(seed))
    return nnx.Rngs(params=_key(seed), dropout=_key(dropout))


def _x(*shape: int, seed: int = 0, spread: float = 1.5) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=shape) * spread).astype(np.float32)


def _params(linear: nnx.Linear) -> tuple[np.ndarray, np.ndarray]:
    kernel = np.asarray(linear.kernel[...], np.float64)
    bias = 0.0 if linear.bias is None else np.asarray(linear.bias[...], np.float64)
    return kernel, bias


def _dense(x: np.ndarray, linear: nnx.Linear) -> np.ndarray:
    kernel, bias = _params(linear)
    return np.asarray(x, np.float64) @ kernel + bias


def numpy_mlp(model: MLP, x: np.ndarray, activation: str) -> np.ndarray:
    h = NUMPY_ACTIVATIONS[activation](_dense(x, model.input_proj))
    return _dense(h, model.output_proj)


def numpy_gated_mlp(model: GatedMLP, x: np.ndarray, activation: str) -> np.ndarray:
    h = NUMPY_ACTIVATIONS[activation](_dense(x, model.gate_proj)) * _dense(x, model.up_proj)
    return _dense(h, model.down_proj)


def test_registries_hold_the_documented_names():
    assert set(ACTIVATIONS) == {"relu", "gelu", "gelu_tanh", "silu"}
    assert set(GATE_ACTIVATIONS) == set(ACTIVATIONS) | {"sigmoid", "identity"}


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_mlp_matches_numpy(activation):
    model = MLP(D, F, activation=activation, rngs=_rngs(1), **WIDE)
    x = _x(B, T, D)
    got = model(x)
    assert got.shape == (B, T, D) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, numpy_mlp(model, x, activation), rtol=1e-5, atol=1e-5)


def test_mlp_parameters_are_in_out_kernels_with_stable_names():
    model = MLP(D, F, rngs=_rngs(0))
    assert model.input_proj.kernel.shape == (D, F)
    assert model.input_proj.bias.shape == (F,)
    assert model.output_proj.kernel.shape == (F, D)
    assert model.output_proj.bias.shape == (D,)
    params = nnx.state(model, nnx.Param)
    assert set(params) == {"input_proj", "output_proj"}


def test_mlp_gelu_and_gelu_tanh_differ_measurably():
    x = _x(B, T, D, spread=3.0)
    exact = MLP(D, F, activation="gelu", rngs=_rngs(2))(x)
    approx = MLP(D, F, activation="gelu_tanh", rngs=_rngs(2))(x)
    gap = float(jnp.max(jnp.abs(exact - approx)))
    assert 1e-5 < gap < 1e-2  # the tanh approximation is close to, but not exactly, the erf GELU


def test_mlp_without_bias_and_with_custom_kernel_init():
    model = MLP(D, F, use_bias=False, kernel_init=nnx.initializers.normal(0.5), rngs=_rngs(3))
    assert model.input_proj.bias is None and model.output_proj.bias is None
    assert 0.3 < float(jnp.std(model.input_proj.kernel[...])) < 0.7
    x = _x(T, D)
    np.testing.assert_allclose(model(x), numpy_mlp(model, x, "gelu"), rtol=1e-5, atol=1e-5)


def test_mlp_acts_on_last_axis_of_any_rank():
    model = MLP(D, F, activation="relu", rngs=_rngs(4), **WIDE)
    x = _x(3, B, T, D)
    np.testing.assert_allclose(model(x), numpy_mlp(model, x, "relu"), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model(x[0, 0, 0]), model(x)[0, 0, 0], rtol=1e-6, atol=1e-6)


def test_mlp_under_jit_equals_eager():
    model = MLP(D, F, rngs=_rngs(5), **WIDE)
    x = _x(B, T, D)
    np.testing.assert_allclose(nnx.jit(lambda m, x: m(x))(model, x), model(x), rtol=1e-6)


@pytest.mark.parametrize("activation", sorted(GATE_ACTIVATIONS))
def test_gated_mlp_matches_numpy(activation):
    model = GatedMLP(D, F, activation=activation, rngs=_rngs(6), **WIDE)
    x = _x(B, T, D, seed=1)
    got = model(x)
    assert got.shape == (B, T, D)
    np.testing.assert_allclose(got, numpy_gated_mlp(model, x, activation), rtol=1e-5, atol=1e-5)


def test_gated_mlp_parameters_and_default_swiglu():
    model = GatedMLP(D, F, use_bias=False, rngs=_rngs(7))
    assert model.activation == "silu"
    assert model.gate_proj.kernel.shape == (D, F)
    assert model.up_proj.kernel.shape == (D, F)
    assert model.down_proj.kernel.shape == (F, D)
    assert set(nnx.state(model, nnx.Param)) == {"gate_proj", "up_proj", "down_proj"}
    assert model.gate_proj.bias is None
    x = _x(T, D)
    np.testing.assert_allclose(model(x), numpy_gated_mlp(model, x, "silu"), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [MLP, GatedMLP])
def test_dropout_deterministic_is_identity(cls):
    plain = cls(D, F, rngs=_rngs(8), **WIDE)
    dropped = cls(D, F, dropout_rate=0.5, rngs=_rngs(8), **WIDE)
    x = _x(B, T, D)
    want = plain(x)
    np.testing.assert_array_equal(dropped(x, deterministic=True), want)
    np.testing.assert_array_equal(nnx.view(dropped, deterministic=True)(x), want)
    evaluated = cls(D, F, dropout_rate=0.5, deterministic=True, rngs=_rngs(8), **WIDE)
    np.testing.assert_array_equal(evaluated(x), want)


@pytest.mark.parametrize("cls", [MLP, GatedMLP])
def test_dropout_on_output_drops_and_rescales(cls):
    x = _x(4, T, D)
    model = cls(D, F, dropout_rate=0.5, rngs=_rngs(9), **WIDE)
    clean = np.asarray(model(x, deterministic=True))
    got = np.asarray(model(x))  # built in training mode: dropout on
    dropped = got == 0.0
    assert 0.3 < dropped.mean() < 0.7
    # Kept entries of the block's output are scaled by 1 / (1 - rate): dropout acts after the
    # output projection (dropout on the hidden layer would mix zeros into every output entry).
    np.testing.assert_allclose(got[~dropped], 2.0 * clean[~dropped], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [MLP, GatedMLP])
def test_dropout_is_reproducible_from_rngs(cls):
    x = _x(B, T, D)
    a = cls(D, F, dropout_rate=0.5, rngs=_rngs(0, dropout=1))
    b = cls(D, F, dropout_rate=0.5, rngs=_rngs(0, dropout=1))
    first_a, first_b = a(x), b(x)
    np.testing.assert_array_equal(first_a, first_b)
    # The stream advances between calls, so masks differ from step to step.
    assert not np.array_equal(a(x) == 0, first_a == 0)
    # A key passed at call time overrides the module's stream.
    key = _key(3)
    np.testing.assert_array_equal(a(x, rngs=key), b(x, rngs=key))
    other = cls(D, F, dropout_rate=0.5, rngs=_rngs(0, dropout=2))
    assert not np.array_equal(other(x) == 0, first_a == 0)


@pytest.mark.parametrize("cls", [MLP, GatedMLP])
def test_bfloat16_compute_keeps_float32_params(cls):
    x = _x(B, T, D)
    ref = cls(D, F, rngs=_rngs(10), **WIDE)
    model = cls(D, F, dtype=jnp.bfloat16, rngs=_rngs(10), **WIDE)
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert leaves and all(p.dtype == jnp.float32 for p in leaves)
    got = model(x)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(got, np.float32), ref(x), rtol=0.05, atol=0.05)
    bf16_params = cls(D, F, param_dtype=jnp.bfloat16, rngs=_rngs(10))
    leaves = jax.tree.leaves(nnx.state(bf16_params, nnx.Param))
    assert all(p.dtype == jnp.bfloat16 for p in leaves)


@pytest.mark.parametrize("cls", [MLP, GatedMLP])
def test_wrong_width_names_x_the_expected_and_the_given_shape(cls):
    model = cls(D, F, rngs=_rngs(0))
    with pytest.raises(
        ValueError, match=r"x must have shape \[\.\.\., D\] = \[\.\.\., 8\], got shape \(2, 5, 7\)"
    ):
        model(np.zeros((B, T, 7), np.float32))
    with pytest.raises(ValueError, match=r"got shape \(\)"):
        model(np.float32(1.0))
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        model(np.zeros((B, T, D), np.int32))


def test_unknown_activation_lists_the_allowed_names():
    with pytest.raises(
        ValueError,
        match=r"activation must be one of \['gelu', 'gelu_tanh', 'relu', 'silu'\], got 'tanh'",
    ):
        MLP(D, F, activation="tanh", rngs=_rngs(0))
    with pytest.raises(ValueError, match="identity.*sigmoid.*got 'swish'"):
        GatedMLP(D, F, activation="swish", rngs=_rngs(0))
    with pytest.raises(ValueError, match="activation must be one of"):
        MLP(D, F, activation="sigmoid", rngs=_rngs(0))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"model_dim": 0}, ValueError, "model_dim must be >= 1, got 0"),
        ({"mlp_dim": 2.5}, TypeError, "mlp_dim must be an int, got 2.5"),
        ({"dropout_rate": 1.5}, ValueError, r"dropout_rate must be in \[0, 1\), got 1.5"),
        ({"dropout_rate": -0.1}, ValueError, "dropout_rate must be in"),
    ],
)
@pytest.mark.parametrize("cls", [MLP, GatedMLP])
def test_bad_constructor_arguments(cls, kwargs, error, message):
    args = {"model_dim": D, "mlp_dim": F} | kwargs
    with pytest.raises(error, match=message):
        cls(args.pop("model_dim"), args.pop("mlp_dim"), rngs=_rngs(0), **args)


def test_default_kernel_init_is_lecun_normal():
    kernel = MLP(64, 256, rngs=_rngs(0)).input_proj.kernel[...]
    assert abs(float(jnp.std(kernel)) - 1 / math.sqrt(64)) < 0.01
    assert float(jnp.max(jnp.abs(kernel))) <= 2.0 * 1.14 / math.sqrt(64)  # truncated at 2σ
