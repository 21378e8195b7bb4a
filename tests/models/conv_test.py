"""The convolutional contrast: receptive fields and path lengths measured with gradients on built
models against the formulas of attn.models.path_length, the WaveNet stack and ConvS2S."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.layers.attention import MultiHeadAttention
from attn.layers.intermediates import collect_intermediates
from attn.models.conv import ConvS2S, ConvS2SConfig, DilatedCausalConvStack
from attn.models.path_length import PATH_KINDS, max_path_length, receptive_field

C = 3


def _x(n: int, channels: int = C, seed: int = 0) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).normal(size=(1, n, channels)), jnp.float32)


def _dependence(fn, x: jax.Array, *args) -> np.ndarray:
    """bool [T_out, T_in]: whether output position t depends on input position s, measured as a
    nonzero entry of the Jacobian ∂fn(x, *args)[0, t, :] / ∂x[0, s, :] (x [1, T_in, C_in])."""
    return _nonzero(jax.jit(jax.jacobian(lambda x, *args: fn(x, *args)[0]))(x, *args))


def _nonzero(jacobian: jax.Array) -> np.ndarray:
    """[T_out, C_out, 1, T_in, C_in] -> bool [T_out, T_in]."""
    return np.abs(np.asarray(jacobian)).sum(axis=(1, 2, 4)) > 0


def _stack(kernel_size: int, dilations, seed: int = 0) -> DilatedCausalConvStack:
    return DilatedCausalConvStack(
        C,
        residual_channels=4,
        skip_channels=2,
        kernel_size=kernel_size,
        dilations=dilations,
        rngs=nnx.Rngs(seed),
    )


# ------------------------------------------------------------------------ receptive field


@pytest.mark.parametrize(
    "kernel_size, dilations",
    [(2, [1, 2, 4]), (2, [1, 1, 1]), (3, [2, 1, 4]), (1, [1, 5])],
)
def test_measured_receptive_field_equals_the_formula_and_nothing_leaks_from_the_future(
    kernel_size, dilations
):
    stack = _stack(kernel_size, dilations)
    r = receptive_field(kernel_size, dilations)
    assert stack.receptive_field == r
    n = r + 4
    depends = _dependence(stack, _x(n))
    t, s = np.indices((n, n))
    np.testing.assert_array_equal(depends, (s <= t) & (s > t - r))


def test_receptive_field_formula():
    assert receptive_field(2, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]) == 1024  # one WaveNet block
    assert receptive_field(3, [1, 3, 9]) == 27
    assert receptive_field(3, [1, 1, 1, 1]) == 9
    assert receptive_field(5, []) == 1
    assert receptive_field(1, [7, 7]) == 1


def test_default_dilations_are_powers_of_the_kernel_size():
    def build(kernel_size, num_layers):  # shapes only: no parameter initialisation to compile
        return nnx.eval_shape(
            lambda: DilatedCausalConvStack(
                C, kernel_size=kernel_size, num_layers=num_layers, rngs=nnx.Rngs(0)
            )
        )

    wavenet = build(2, 4)
    assert wavenet.dilations == (1, 2, 4, 8) and wavenet.receptive_field == 16
    assert wavenet.convs[3].kernel.shape == (2, 32, 64)
    stack = build(3, 3)
    assert stack.dilations == (1, 3, 9) and stack.receptive_field == 27


# ---------------------------------------------------------------------------- path lengths


def _layers_to_connect(n_max: int, build) -> dict[int, int]:
    """{n: the smallest number of layers L with output n - 1 depending on input 0}, n <= n_max.

    The layers are causal and the same at every position, so output n - 1 depends on input 0 in
    a sequence of n_max positions exactly when it does in one of n: one Jacobian per depth serves
    every n.
    """
    found = {1: 0}
    layers = 0
    while len(found) < n_max:
        layers += 1
        assert layers <= 12, f"position 0 does not reach {n_max - 1} within 12 layers"
        reaches = _dependence(build(layers), _x(n_max))[:, 0]
        for n in range(2, n_max + 1):
            if reaches[n - 1] and n not in found:
                found[n] = layers
    return found


@pytest.mark.parametrize("kernel_size, n_max", [(2, 9), (3, 10)])
def test_dilated_layers_needed_between_the_ends_equal_the_path_length(kernel_size, n_max):
    def build(layers):
        return DilatedCausalConvStack(
            C, residual_channels=4, skip_channels=2, kernel_size=kernel_size, num_layers=layers,
            rngs=nnx.Rngs(0),
        )  # fmt: skip

    measured = _layers_to_connect(n_max, build)
    want = {n: max_path_length("dilated_convolution", n, kernel_size=kernel_size) for n in measured}
    assert measured == want
    assert measured[n_max] == (4 if kernel_size == 2 else 3)  # 2^3 = 8 < 9; 3^2 = 9 < 10


def test_plain_convolution_layers_needed_equal_the_path_length():
    measured = _layers_to_connect(9, lambda layers: _stack(3, [1] * layers))
    assert measured == {n: max_path_length("convolution", n, kernel_size=3) for n in measured}
    assert measured[9] == 4


@pytest.mark.parametrize("is_causal", [False, True])
def test_one_self_attention_layer_connects_every_pair(is_causal):
    n = 9
    layer = MultiHeadAttention(2, 4, rngs=nnx.Rngs(0))
    depends = _dependence(lambda x: layer(x, is_causal=is_causal), _x(n, 4))
    t, s = np.indices((n, n))
    np.testing.assert_array_equal(depends, (s <= t) if is_causal else np.ones((n, n), bool))
    assert max_path_length("self_attention", n) == 1  # the ends are one layer apart
    assert depends[n - 1, 0]


def _tanh_rnn(x: jax.Array, steps_backpropagated: int) -> jax.Array:
    """h_t = tanh(x_t W + h_{t-1} U), with gradients through the last `steps_backpropagated`
    transitions h_{t-1} -> h_t only (truncated backpropagation through time)."""
    n, width = x.shape[1], 5  # steps_backpropagated may be traced
    rng = np.random.default_rng(0)
    W = jnp.asarray(rng.normal(size=(x.shape[2], width)), jnp.float32)
    U = jnp.asarray(rng.normal(size=(width, width)) / width**0.5, jnp.float32)

    def step(h, inputs):
        t, x_t = inputs
        h = jnp.where(t >= n - steps_backpropagated, h, jax.lax.stop_gradient(h))
        h = jnp.tanh(x_t @ W + h @ U)
        return h, h

    _, hs = jax.lax.scan(step, jnp.zeros((1, width)), (jnp.arange(n), jnp.swapaxes(x, 0, 1)))
    return jnp.swapaxes(hs, 0, 1)  # [T, 1, width] -> [1, T, width]


_RNN_JACOBIAN = jax.jit(jax.jacobian(lambda x, steps: _tanh_rnn(x, steps)[0]))


@pytest.mark.parametrize("n", [2, 6])
def test_recurrence_needs_n_minus_one_steps_between_the_ends(n):
    x = _x(n)
    steps = [m for m in range(n + 1) if _nonzero(_RNN_JACOBIAN(x, m))[n - 1, 0]]
    assert steps[0] == max_path_length("recurrent", n) == n - 1
    # With full backpropagation, h_t depends on every x_s with s <= t: causal, path t - s steps.
    t, s = np.indices((n, n))
    np.testing.assert_array_equal(_nonzero(_RNN_JACOBIAN(x, n)), s <= t)


def test_path_length_table():
    n = 1024
    assert max_path_length("self_attention", n) == 1
    assert max_path_length("recurrent", n) == n - 1
    assert max_path_length("convolution", n, kernel_size=3) == 512
    assert max_path_length("dilated_convolution", n, kernel_size=2) == 10
    assert max_path_length("dilated_convolution", 1025, kernel_size=2) == 11
    assert max_path_length("dilated_convolution", 27, kernel_size=3) == 3
    for kind in PATH_KINDS:
        kernel = {"kernel_size": 3} if "convolution" in kind else {}
        assert max_path_length(kind, 1, **kernel) == 0


def test_path_length_bad_arguments():
    with pytest.raises(
        ValueError, match=r"unknown kind 'lstm'; expected one of \['self_attention'"
    ):
        max_path_length("lstm", 5)
    with pytest.raises(ValueError, match="kind='convolution' needs kernel_size"):
        max_path_length("convolution", 5)
    with pytest.raises(ValueError, match="kind='recurrent' takes no kernel_size, got 3"):
        max_path_length("recurrent", 5, kernel_size=3)
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        max_path_length("self_attention", 0)
    with pytest.raises(ValueError, match="kernel_size must be >= 2, got 1"):
        max_path_length("dilated_convolution", 5, kernel_size=1)
    with pytest.raises(ValueError, match="each dilation must be >= 1, got 0"):
        receptive_field(2, [1, 0])
    with pytest.raises(TypeError, match="dilations must be a sequence of ints"):
        receptive_field(2, 4)


# ------------------------------------------------------------------------ WaveNet stack


def test_stack_shapes_dtype_and_bad_input():
    stack = _stack(2, [1, 2])
    out = stack(jnp.zeros((3, 6, C), jnp.bfloat16))
    assert out.shape == (3, 6, 2)
    with pytest.raises(
        ValueError, match=r"x must have shape \[B, T, C\] .*C=3, got shape \(6, 3\)"
    ):
        stack(jnp.zeros((6, C)))
    with pytest.raises(ValueError, match=r"C=3, got shape \(2, 6, 4\)"):
        stack(jnp.zeros((2, 6, 4)))
    with pytest.raises(TypeError, match="x must be floating-point, got int32"):
        stack(jnp.zeros((2, 6, C), jnp.int32))
    with pytest.raises(ValueError, match="give exactly one of num_layers and dilations"):
        DilatedCausalConvStack(C, num_layers=2, dilations=[1, 2], rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="give exactly one of num_layers and dilations"):
        DilatedCausalConvStack(C, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="dilations must name at least one layer"):
        DilatedCausalConvStack(C, dilations=[], rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="each dilation must be >= 1, got -2"):
        DilatedCausalConvStack(C, dilations=[1, -2], rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="kernel_size must be > 0, got 0"):
        DilatedCausalConvStack(C, kernel_size=0, dilations=[1], rngs=nnx.Rngs(0))


# -------------------------------------------------------------------------------- ConvS2S

VOCAB = 13


def _model(seed: int = 0, **overrides) -> ConvS2S:
    config = ConvS2SConfig.named("tiny", vocab_size=VOCAB, max_length=16, **overrides)
    return ConvS2S(config, rngs=nnx.Rngs(seed))


@nnx.jit(static_argnames="deterministic")
def _forward(model, src, tgt, deterministic=True):
    return model(src, tgt, deterministic=deterministic)


def _ids(shape, seed: int) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).integers(1, VOCAB, shape), jnp.int32)


def test_convs2s_forward_and_backward_reach_every_parameter():
    model = _model()
    src, tgt = _ids((2, 6), 1), _ids((2, 5), 2)
    assert _forward(model, src, tgt).shape == (2, 5, VOCAB)

    @nnx.jit
    def gradients(model, src, tgt):
        def loss(model):
            return -jnp.mean(jax.nn.log_softmax(model(src, tgt))[..., 0])

        return nnx.grad(loss)(model)

    grads = gradients(model, src, tgt)
    for path, grad in nnx.to_flat_state(grads):
        grad = np.asarray(grad[...])
        assert np.all(np.isfinite(grad)), path
        if path[-1] == "embedding":  # only the rows of ids that occur get gradients
            continue
        assert np.abs(grad).max() > 0, path


def test_convs2s_decoder_is_causal():
    model = _model(1)
    src, tgt = _ids((2, 6), 3), _ids((2, 7), 4)
    logits = np.asarray(_forward(model, src, tgt))
    for t in range(6):
        changed = tgt.at[:, t + 1 :].set((tgt[:, t + 1 :] + 1) % VOCAB)
        other = np.asarray(_forward(model, src, changed))
        np.testing.assert_allclose(other[:, : t + 1], logits[:, : t + 1], rtol=1e-5, atol=1e-6)
        assert np.abs(other[:, t + 1] - logits[:, t + 1]).max() > 1e-4  # the next one does change


def test_convs2s_encoder_sees_both_sides_with_enough_layers():
    # Two centred width-3 layers: encoder position s sees source positions s-2 .. s+2.
    model = _model(2)
    src = _ids((1, 8), 5)
    z, _ = model.encode(src)
    changed, _ = model.encode(src.at[:, 4].set((src[:, 4] + 1) % VOCAB))
    moved = np.abs(np.asarray(changed - z))[0].max(-1) > 0
    np.testing.assert_array_equal(moved, np.abs(np.arange(8) - 4) <= 2)


def test_convs2s_padding_changes_nothing_and_gets_no_attention():
    model = _model(3)
    src, tgt = _ids((1, 5), 6), _ids((1, 4), 7)
    padded = jnp.concatenate([src, jnp.zeros((1, 3), jnp.int32)], axis=1)
    mask = jnp.asarray([[1] * 5 + [0] * 3])
    want = _forward(model, src, tgt)

    @nnx.jit
    def padded_forward(model, padded, tgt, mask):
        encoded = model.encode(padded, mask)
        return collect_intermediates(model.decode, tgt, encoded, mask, names=("alignment",))

    got, found = padded_forward(model, padded, tgt, mask)
    weights = jnp.stack([found[("attention_in", layer, "alignment")] for layer in range(2)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert weights.shape == (2, 1, 4, 8)
    np.testing.assert_array_equal(weights[..., 5:], 0.0)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)


def test_convs2s_dropout_is_active_only_when_not_deterministic():
    model = _model(4, dropout_rate=0.3)
    src, tgt = _ids((2, 6), 8), _ids((2, 5), 9)
    np.testing.assert_array_equal(_forward(model, src, tgt), _forward(model, src, tgt))
    assert not np.allclose(
        _forward(model, src, tgt, deterministic=False), _forward(model, src, tgt)
    )


def test_convs2s_config_variants_and_bad_input():
    paper = ConvS2SConfig.named("wmt16-en-ro")
    assert (paper.num_encoder_layers, paper.num_decoder_layers, paper.model_dim) == (20, 20, 512)
    assert paper.kernel_size == 3 and paper.embed_dim == 512
    with pytest.raises(ValueError, match="unknown variant 'huge'"):
        ConvS2SConfig.named("huge")
    with pytest.raises(ValueError, match="kernel_size must be > 0, got 0"):
        ConvS2SConfig(kernel_size=0)
    with pytest.raises(ValueError, match=r"dropout_rate must be in \[0, 1\), got 1.0"):
        ConvS2SConfig(dropout_rate=1.0)
    model = _model()
    src, tgt = _ids((2, 6), 1), _ids((2, 5), 2)
    with pytest.raises(ValueError, match=r"src must lie in \[0, vocab_size=13\), got ids from"):
        model(src.at[0, 0].set(VOCAB), tgt)
    with pytest.raises(ValueError, match=r"tgt must be integer token ids \[B, T\]"):
        model(src, tgt[0])
    with pytest.raises(ValueError, match=r"src \[B, S\] must have 1 <= S <= max_length=16"):
        model(_ids((2, 17), 3), tgt)
    with pytest.raises(ValueError, match=r"src_mask must have shape \[B, S\] = \[2, 6\]"):
        model(src, tgt, jnp.ones((2, 5)))
    z, values = model.encode(src)
    with pytest.raises(
        ValueError, match=r"encoded keys z must have shape \[B, S, E\] = \[2, \?, 32"
    ):
        model.decode(tgt, (z[..., :4], values))
