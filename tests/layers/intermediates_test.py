"""collect_intermediates: paths into a model, one entry per call, the `names` filter, several
modules, sowing switched back even on error, and bad arguments."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.layers.attention import MultiHeadAttention
from attn.layers.gating import SqueezeExcitation
from attn.layers.intermediates import collect_intermediates

B, T, D, N = 2, 5, 16, 4


def _x(seed=0, shape=(B, T, D)):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


class Two(nnx.Module):
    """Two attention layers in a list and a squeeze-and-excitation layer."""

    def __init__(self):
        self.layers = nnx.List([MultiHeadAttention(N, D, rngs=nnx.Rngs(i)) for i in range(2)])
        self.excite = SqueezeExcitation(D, reduction=4, rngs=nnx.Rngs(2))

    def __call__(self, x, fail: bool = False):
        for layer in self.layers:
            x = layer(x, is_causal=True)
        if fail:
            raise RuntimeError("stop")
        return self.excite(x)


def test_collects_every_layer_by_path_and_switches_sowing_off_again():
    model = Two()
    x = _x(1)
    out, found = collect_intermediates(model, x)
    np.testing.assert_allclose(out, model(x), rtol=1e-5, atol=1e-6)
    assert sorted(found, key=str) == [
        ("excite", "channel_weights"),
        ("layers", 0, "attention_weights"),
        ("layers", 1, "attention_weights"),
    ]
    for path in (("layers", 0, "attention_weights"), ("layers", 1, "attention_weights")):
        weights = found[path]
        assert weights.shape == (B, N, T, T)
        np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    assert found["excite", "channel_weights"].shape == (B, D)
    assert not model.layers[0].sow_weights and not model.excite.sow_weights
    assert not nnx.state(model, nnx.Intermediate)


def test_names_keeps_only_those_names():
    _, found = collect_intermediates(Two(), _x(2), names=("channel_weights",))
    assert list(found) == [("excite", "channel_weights")]


def test_a_layer_that_runs_twice_gives_a_tuple_of_calls():
    layer = MultiHeadAttention(N, D, rngs=nnx.Rngs(3))

    def twice(layer, x):
        return layer(layer(x))

    x = _x(3)
    _, found = collect_intermediates(twice, layer, x)
    first, second = found[("attention_weights",)]
    _, once = collect_intermediates(layer, x)
    np.testing.assert_allclose(first, once[("attention_weights",)], rtol=1e-6)
    assert not np.allclose(first, second)


def test_several_modules_are_told_apart_by_their_position():
    a, b = MultiHeadAttention(N, D, rngs=nnx.Rngs(4)), MultiHeadAttention(N, D, rngs=nnx.Rngs(5))
    _, found = collect_intermediates(lambda a, b, x: b(a(x)), a, b, _x(4))
    assert sorted(found) == [(0, "attention_weights"), (1, "attention_weights")]


def test_a_bound_method_sows_into_its_module():
    model = Two()
    _, found = collect_intermediates(model.__call__, _x(5))
    assert ("layers", 1, "attention_weights") in found


def test_sowing_is_switched_off_even_when_the_call_raises():
    model = Two()
    model.layers[1].sow_weights = True  # a layer built sowing stays sowing
    with pytest.raises(RuntimeError, match="stop"):
        collect_intermediates(model, _x(6), fail=True)
    assert not model.layers[0].sow_weights and model.layers[1].sow_weights


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(TypeError, match="must be an nnx.Module"):
        collect_intermediates(lambda x: x, _x(7))
    with pytest.raises(TypeError, match="names must be a sequence of NAMEs"):
        collect_intermediates(Two(), _x(7), names="attention_weights")
