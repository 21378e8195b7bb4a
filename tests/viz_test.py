"""Tests for attn.viz: the saved PNGs, the plotted arrays against the inputs (from the library's
own models where they exist), tick labels, attention rollout against a float64 NumPy reference of
Abnar & Zuidema's formula, and input validation."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import imread

from attn import viz
from attn.layers import SqueezeExcitation, collect_intermediates
from attn.models import (
    Seq2SeqRNN,
    Seq2SeqRNNConfig,
    Transformer,
    TransformerConfig,
    ViT,
    ViTConfig,
)

T, S, N, L, B, H = 5, 7, 3, 2, 4, 6


def _rngs(seed: int) -> nnx.Rngs:
    """Rngs on an "rbg" key, which compiles much faster than the default threefry on CPU."""
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def _softmax_rows(*shape: int, seed: int = 0, spread: float = 3.0) -> np.ndarray:
    """Random attention weights: rows of a softmax over the last axis, far from uniform."""
    logits = np.random.default_rng(seed).normal(size=shape) * spread
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    return weights / weights.sum(-1, keepdims=True)


def _check_png(path, figure) -> None:
    """A valid PNG of the figure's pixel size that is not blank."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5_000
    pixels = imread(path)
    width, height = figure.get_size_inches() * figure.dpi
    assert pixels.shape[:2] == (round(height), round(width))
    assert pixels[..., :3].std() > 0.05


def _tick_texts(labels) -> list[str]:
    return [label.get_text() for label in labels]


# ---------------------------------------------------------------------------- models' outputs


def _attention_weights(model, *inputs):
    """{layer path: weights [B, N, T, S]}: the collected paths without their NAME."""
    _, found = collect_intermediates(model, *inputs, names=("attention_weights",))
    return {path[:-1]: weights for path, weights in found.items()}


@pytest.fixture(scope="module")
def vit_weights():
    """(images, config, {path: weights [B, N, 1 + P, 1 + P]}) of a small ViT."""
    config = ViTConfig.named("digits", num_layers=3, num_heads=N, model_dim=24, mlp_dim=32)
    model = ViT(config, rngs=_rngs(0))
    images = np.random.default_rng(0).random((2, 8, 8, 1)).astype(np.float32)
    return images, config, _attention_weights(model, images)


@pytest.fixture(scope="module")
def transformer_weights():
    """{path: weights} of an encoder-decoder: self-attention [B, N, S, S] / [B, N, T, T] and
    cross-attention [B, N, T, S]."""
    config = TransformerConfig(
        vocab_size=11,
        num_encoder_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        model_dim=8,
        mlp_dim=16,
        max_length=16,
    )
    model = Transformer(config, rngs=_rngs(1))
    src = jnp.arange(2 * S).reshape(2, S) % 11
    tgt = jnp.arange(2 * T).reshape(2, T) % 11
    return _attention_weights(model, src, tgt)


# ---------------------------------------------------------------------------- plot_attention


def test_plot_attention_saves_the_map_with_token_labels(tmp_path):
    weights = _softmax_rows(T, S)
    queries, keys = [f"q{t}" for t in range(T)], [f"k{s}" for s in range(S)]
    path = tmp_path / "one.png"
    figure = viz.plot_attention(
        weights, query_tokens=queries, key_tokens=keys, title="a map", path=path
    )
    _check_png(path, figure)
    assert isinstance(figure.canvas, FigureCanvasAgg)
    ax = figure.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), weights)
    assert _tick_texts(ax.get_xticklabels()) == keys
    assert _tick_texts(ax.get_yticklabels()) == queries
    assert ax.get_title() == "a map"
    assert len(figure.axes) == 2  # the map and its colorbar


def test_plot_attention_leaves_masked_cells_blank():
    causal = np.tril(np.ones((T, T), bool))
    weights = _softmax_rows(T, T) * causal
    figure = viz.plot_attention(weights, mask=causal)
    shown = figure.axes[0].images[0].get_array()
    np.testing.assert_array_equal(np.ma.getmaskarray(shown), ~causal)
    np.testing.assert_array_equal(shown.data, weights)
    padding = np.array([True] * (S - 2) + [False] * 2)  # [S]: broadcast over the queries
    shown = viz.plot_attention(_softmax_rows(T, S), mask=padding).axes[0].images[0].get_array()
    np.testing.assert_array_equal(np.ma.getmaskarray(shown), np.broadcast_to(~padding, (T, S)))


def test_plot_attention_rejects_bad_input():
    weights = _softmax_rows(T, S)
    with pytest.raises(ValueError, match=r"\[T, S\].*got shape \(1, 5, 7\)"):
        viz.plot_attention(weights[None])
    with pytest.raises(ValueError, match="key_tokens must have S=7 entries, got 6"):
        viz.plot_attention(weights, key_tokens=list("abcdef"))
    with pytest.raises(ValueError, match="query_tokens must have T=5 entries, got 7"):
        viz.plot_attention(weights, query_tokens=list("abcdefg"))
    with pytest.raises(TypeError, match="query_tokens must be a sequence of tokens"):
        viz.plot_attention(weights, query_tokens="abcde")
    with pytest.raises(TypeError, match="mask must be boolean"):
        viz.plot_attention(weights, mask=np.ones((T, S)))
    with pytest.raises(ValueError, match=r"mask must broadcast to \[T, S\] = \[5, 7\]"):
        viz.plot_attention(weights, mask=np.ones((T, T), bool))
    with pytest.raises(ValueError, match="finite"):
        viz.plot_attention(np.full((T, S), np.nan))


# ---------------------------------------------------------------------------- plot_heads


def test_plot_heads_draws_every_layer_and_head_of_a_model(tmp_path, vit_weights):
    _, config, weights = vit_weights
    path = tmp_path / "heads" / "vit.png"  # the folder is created
    figure = viz.plot_heads(weights, batch_index=1, title="ViT", path=path)
    _check_png(path, figure)
    assert len(figure.axes) == config.num_layers * N + 1  # + the colorbar
    for layer in range(config.num_layers):
        for head in range(N):
            expected = weights[("blocks", layer, "self_attention")][1, head]
            np.testing.assert_allclose(
                figure.axes[layer * N + head].images[0].get_array(), expected, rtol=1e-6
            )
    assert figure.axes[N].get_ylabel() == "blocks/1/self_attention"


def test_plot_heads_orders_layers_by_index_not_by_name():
    layers = (10, 2, 0)
    maps = {("blocks", l, "attention"): _softmax_rows(1, N, T, T, seed=l) for l in layers}
    figure = viz.plot_heads(maps)
    rows = [figure.axes[layer * N].get_ylabel() for layer in range(3)]
    assert rows == ["blocks/0/attention", "blocks/2/attention", "blocks/10/attention"]
    np.testing.assert_array_equal(
        figure.axes[2 * N + 1].images[0].get_array(), maps[("blocks", 10, "attention")][0, 1]
    )


def test_plot_heads_takes_an_array_tokens_and_a_mask():
    maps = _softmax_rows(L, N, T, S, seed=3)
    queries, keys = list("abcde"), list("ABCDEFG")
    mask = np.arange(S) < 5
    figure = viz.plot_heads(maps, query_tokens=queries, key_tokens=keys, mask=mask)
    corner = figure.axes[(L - 1) * N]
    assert _tick_texts(corner.get_xticklabels()) == keys
    assert _tick_texts(corner.get_yticklabels()) == queries
    shown = figure.axes[N + 2].images[0].get_array()
    np.testing.assert_array_equal(shown.data, maps[1, 2])
    np.testing.assert_array_equal(np.ma.getmaskarray(shown)[0], ~mask)
    assert figure.axes[0].get_title() == "head 0"


def test_plot_heads_selects_one_kind_of_layer(transformer_weights):
    with pytest.raises(ValueError, match="same shape .*select="):
        viz.plot_heads(transformer_weights)
    figure = viz.plot_heads(transformer_weights, select="cross_attention")
    np.testing.assert_allclose(
        figure.axes[2 + 1].images[0].get_array(),
        transformer_weights[("decoder_blocks", 1, "cross_attention")][0, 1],
        rtol=1e-6,
    )
    assert figure.axes[0].images[0].get_array().shape == (T, S)
    figure = viz.plot_heads(transformer_weights, select=("encoder_blocks", "self_attention"))
    assert figure.axes[0].images[0].get_array().shape == (S, S)
    with pytest.raises(ValueError, match="no path contains"):
        viz.plot_heads(transformer_weights, select="missing")


def test_plot_heads_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[L, N, T, S\].*got shape \(5, 7\)"):
        viz.plot_heads(_softmax_rows(T, S))
    with pytest.raises(ValueError, match=r"batch_index must be in \[-B, B\) with B=1, got 1"):
        viz.plot_heads({("blocks", 0): _softmax_rows(1, N, T, S)}, batch_index=1)
    with pytest.raises(ValueError, match=r"weights\['blocks/0'\] must have shape \[B, N, T, S\]"):
        viz.plot_heads({("blocks", 0): _softmax_rows(N, T, S)})
    twice = {("blocks", 0): (_softmax_rows(1, N, T, S), _softmax_rows(1, N, T, S))}
    with pytest.raises(ValueError, match="ran 2 times"):
        viz.plot_heads(twice)
    with pytest.raises(ValueError, match="key_tokens must have S=7"):
        viz.plot_heads(_softmax_rows(L, N, T, S), key_tokens=list("abc"))
    with pytest.raises(ValueError, match="select applies to a"):
        viz.plot_heads(_softmax_rows(L, N, T, S), select="blocks")
    with pytest.raises(ValueError, match="empty mapping"):
        viz.plot_heads({})


# ---------------------------------------------------------------------------- plot_alignment


def test_plot_alignment_labels_source_and_target(tmp_path):
    source = ["la", "maison", "bleue", "est", "là", ".", "<eos>"]
    target = ["the", "blue", "house", "is", "<eos>"]
    weights = _softmax_rows(len(target), len(source), seed=4)
    path = tmp_path / "alignment.png"
    figure = viz.plot_alignment(weights, source, target, path=path)
    _check_png(path, figure)
    ax = figure.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), weights)
    assert _tick_texts(ax.get_xticklabels()) == source
    assert _tick_texts(ax.get_yticklabels()) == target
    assert ax.xaxis.get_label_position() == "top"


def test_plot_alignment_rejects_bad_input():
    weights = _softmax_rows(T, S)
    source, target = list("abcdefg"), list("vwxyz")
    with pytest.raises(ValueError, match="source_tokens must have S=7 entries, got 5"):
        viz.plot_alignment(weights, target, target)
    with pytest.raises(ValueError, match="target_tokens must have T=5 entries, got 7"):
        viz.plot_alignment(weights, source, source)
    with pytest.raises(ValueError, match=r"\[T, S\].*got shape \(2, 5, 7\)"):
        viz.plot_alignment(np.stack([weights, weights]), source, target)


def test_plot_alignment_and_gates_of_a_seq2seq_rnn(tmp_path):
    config = Seq2SeqRNNConfig.named("luong", vocab_size=13, embed_dim=8, hidden_dim=H, num_layers=1)
    model = Seq2SeqRNN(config, rngs=_rngs(3))
    src = jnp.arange(2 * S).reshape(2, S) % 13
    lengths = np.array([S, 4])
    src_mask = np.arange(S)[None] < lengths[:, None]  # [B, S]: the second source is padded
    tgt_in = jnp.arange(2 * T).reshape(2, T) % 13
    _, found = collect_intermediates(model, src, tgt_in, src_mask)
    alignment, gates = found[("alignment",)], found[("gates",)]
    top_encoder_gates = found[("encoder", "cells", 0, "gates")]  # one layer, one direction
    source = [f"s{s}" for s in range(lengths[1])]
    target = [f"t{t}" for t in range(T)]
    alignment = np.asarray(alignment[1, :, : lengths[1]])  # [T, S] without the padding
    path = tmp_path / "rnn_alignment.png"
    figure = viz.plot_alignment(alignment, source, target, path=path)
    _check_png(path, figure)
    np.testing.assert_array_equal(figure.axes[0].images[0].get_array(), alignment)

    decoder = viz.plot_gates({name: g[1] for name, g in gates.items()}, tokens=target)
    assert [ax.get_ylabel().split()[0] for ax in decoder.axes[:3]] == ["input", "forget", "output"]
    np.testing.assert_array_equal(decoder.axes[1].images[0].get_array(), gates["forget"][1].T)
    encoder_gates = {name: g[1] for name, g in top_encoder_gates.items()}  # [S, H], 0 at padding
    encoder = viz.plot_gates(encoder_gates, mask=src_mask[1])
    shown = encoder.axes[0].images[0].get_array()
    np.testing.assert_array_equal(shown.data, encoder_gates["input"].T)
    assert np.ma.getmaskarray(shown)[:, lengths[1] :].all()
    assert not np.ma.getmaskarray(shown)[:, : lengths[1]].any()


# ---------------------------------------------------------------------------- rollout


def _rollout_reference(layers: np.ndarray, fusion, add_residual: bool) -> np.ndarray:
    """Abnar & Zuidema's rollout per example: multi_dot(Â_L, ..., Â_1), in float64."""
    out = []
    for example in np.moveaxis(layers, 1, 0):  # [L, B, N, T, T] -> B × [L, N, T, T]
        fused = []
        for heads in example:
            a = fusion(heads, axis=0)
            if add_residual:
                a = 0.5 * a + 0.5 * np.eye(a.shape[0])
            fused.append(a / a.sum(axis=1, keepdims=True))
        out.append(np.linalg.multi_dot(fused[::-1]) if len(fused) > 1 else fused[0])
    return np.stack(out)


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("add_residual", [True, False])
def test_attention_rollout_matches_the_formula(fusion, add_residual):
    layers = _softmax_rows(3, 2, N, T, T, seed=5)
    rollout = viz.attention_rollout(layers, head_fusion=fusion, add_residual=add_residual)
    expected = _rollout_reference(layers, getattr(np, fusion), add_residual)
    assert rollout.shape == (2, T, T)
    np.testing.assert_allclose(rollout, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(rollout.sum(-1), 1.0, rtol=1e-12)


def test_attention_rollout_of_one_layer_is_the_residual_mix():
    layers = _softmax_rows(1, 2, N, T, T, seed=6)
    rollout = viz.attention_rollout(layers)
    np.testing.assert_allclose(rollout, 0.5 * layers[0].mean(1) + 0.5 * np.eye(T), rtol=1e-12)
    np.testing.assert_allclose(viz.attention_rollout(layers, add_residual=False), layers[0].mean(1))


def test_attention_rollout_of_a_vit_follows_its_layers(vit_weights):
    _, config, weights = vit_weights
    rollout = viz.attention_rollout(weights)
    tokens = config.max_length
    assert rollout.shape == (2, tokens, tokens)
    np.testing.assert_allclose(rollout.sum(-1), 1.0, rtol=1e-6)
    ordered = np.stack(
        [np.asarray(weights[("blocks", l, "self_attention")]) for l in range(config.num_layers)]
    )
    np.testing.assert_allclose(
        rollout, _rollout_reference(ordered.astype(np.float64), np.mean, True), rtol=1e-10
    )
    shuffled = {path: weights[path] for path in reversed(list(weights))}
    np.testing.assert_array_equal(viz.attention_rollout(shuffled), rollout)


def test_attention_rollout_rejects_bad_input(transformer_weights):
    with pytest.raises(ValueError, match="head_fusion must be one of"):
        viz.attention_rollout(_softmax_rows(L, B, N, T, T), head_fusion="sum")
    with pytest.raises(ValueError, match=r"\[L, B, N, T, S\].*got shape \(2, 3, 5, 5\)"):
        viz.attention_rollout(_softmax_rows(L, N, T, T))
    with pytest.raises(ValueError, match="T=5 != S=7"):
        viz.attention_rollout(transformer_weights, select="cross_attention")
    decoder = viz.attention_rollout(
        transformer_weights, select=("decoder_blocks", "self_attention")
    )
    assert decoder.shape == (2, T, T)


def test_plot_rollout_on_image_overlays_the_patch_grid(tmp_path, vit_weights):
    images, config, weights = vit_weights
    cls_row = viz.attention_rollout(weights)[0, 0, 1:]  # [P]
    path = tmp_path / "rollout.png"
    figure = viz.plot_rollout_on_image(images[0], cls_row, config.grid, path=path)
    _check_png(path, figure)
    image_ax, overlay_ax = figure.axes[:2]
    rows, cols = config.grid
    np.testing.assert_array_equal(overlay_ax.images[1].get_array(), cls_row.reshape(rows, cols))
    assert overlay_ax.images[1].get_extent() == [-0.5, 7.5, 7.5, -0.5]  # the whole 8×8 image
    pixels = images[0, ..., 0]
    scaled = (pixels - pixels.min()) / (pixels.max() - pixels.min())
    np.testing.assert_allclose(image_ax.images[0].get_array(), scaled, rtol=1e-6)
    rgb = np.random.default_rng(7).random((8, 12, 3))
    figure = viz.plot_rollout_on_image(rgb, np.arange(6.0), (2, 3))
    assert figure.axes[1].images[0].get_array().shape == (8, 12, 3)
    np.testing.assert_array_equal(figure.axes[1].images[1].get_array(), [[0, 1, 2], [3, 4, 5]])


def test_plot_rollout_on_image_rejects_bad_input():
    image = np.zeros((8, 8, 1))
    with pytest.raises(ValueError, match=r"\[P\] = \[16\].*drop the class token"):
        viz.plot_rollout_on_image(image, np.ones(17), (4, 4))
    with pytest.raises(ValueError, match=r"\[P\] = \[16\] for grid \(4, 4\), got shape \(9,\)"):
        viz.plot_rollout_on_image(image, np.ones(9), (4, 4))
    with pytest.raises(ValueError, match="C in"):
        viz.plot_rollout_on_image(np.zeros((8, 8, 2)), np.ones(16), (4, 4))
    with pytest.raises(ValueError, match="grid must be a pair"):
        viz.plot_rollout_on_image(image, np.ones(16), 4)
    with pytest.raises(ValueError, match="alpha must be in"):
        viz.plot_rollout_on_image(image, np.ones(16), (4, 4), alpha=2.0)


# ---------------------------------------------------------------------------- gates


def test_plot_gates_draws_each_gate_over_time(tmp_path):
    rng = np.random.default_rng(8)
    gates = {name: rng.random((T, H)) for name in ("output", "extra", "forget", "input")}
    tokens = list("hello")
    path = tmp_path / "gates.png"
    figure = viz.plot_gates(gates, tokens=tokens, path=path)
    _check_png(path, figure)
    panels = ("input", "forget", "output", "extra")  # the LSTM's order, then the others
    for ax, name in zip(figure.axes, panels, strict=False):
        np.testing.assert_array_equal(ax.images[0].get_array(), gates[name].T)  # [H, T]
        assert ax.get_ylabel().split()[0] == name
    assert _tick_texts(figure.axes[3].get_xticklabels()) == tokens


def test_plot_gates_leaves_padded_steps_blank():
    gate = np.random.default_rng(12).random((T, H))
    real = np.arange(T) < 3
    shown = viz.plot_gates({"forget": gate}, mask=real).axes[0].images[0].get_array()
    np.testing.assert_array_equal(shown.data, gate.T)
    np.testing.assert_array_equal(np.ma.getmaskarray(shown), np.broadcast_to(~real, (H, T)))
    with pytest.raises(ValueError, match=r"mask must have shape \[T\] = \[5\], got shape \(6,\)"):
        viz.plot_gates({"forget": gate}, mask=np.ones(H, bool))


def test_plot_gates_rejects_bad_input():
    gate = np.full((T, H), 0.5)
    with pytest.raises(ValueError, match=r"same shape \[T, H\]"):
        viz.plot_gates({"input": gate, "forget": gate[:, :2]})
    with pytest.raises(ValueError, match=r"gates\['forget'\] must be activations in \[0, 1\]"):
        viz.plot_gates({"input": gate, "forget": gate * 3})
    with pytest.raises(ValueError, match=r"gates\['input'\] must have shape \[T, H\]"):
        viz.plot_gates({"input": gate[None]})
    with pytest.raises(ValueError, match="tokens must have T=5 entries, got 2"):
        viz.plot_gates({"input": gate}, tokens=["a", "b"])
    with pytest.raises(TypeError, match="non-empty"):
        viz.plot_gates(gate)


# ---------------------------------------------------------------------------- channel weights


class _TwoSqueezes(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        wide = nnx.initializers.normal(1.0)
        self.first = SqueezeExcitation(8, reduction=2, kernel_init=wide, bias_init=wide, rngs=rngs)
        self.blocks = nnx.List(
            [SqueezeExcitation(8, reduction=4, bias_init=wide, rngs=rngs) for _ in range(2)]
        )

    def __call__(self, x):
        x = self.first(x)
        for block in self.blocks:
            x = block(x)
        return x


def test_plot_channel_weights_of_captured_squeeze_excitation(tmp_path):
    model = _TwoSqueezes(_rngs(2))
    x = np.random.default_rng(9).normal(size=(3, 4, 4, 8)).astype(np.float32) + 1.0
    _, captured = nnx.capture(nnx.view(model, sow_weights=True), nnx.Intermediate)(x)
    path = tmp_path / "se.png"
    figure = viz.plot_channel_weights(captured, row_labels=["cat", "dog", "car"], path=path)
    _check_png(path, figure)
    _, found = collect_intermediates(model, x)
    first, block0, block1 = (
        found[(*path, "channel_weights")] for path in (("first",), ("blocks", 0), ("blocks", 1))
    )
    expected = {"first": first, "blocks/0": block0, "blocks/1": block1}  # by layer index
    assert [ax.get_title() for ax in figure.axes[:3]] == list(expected)
    for ax, weights in zip(figure.axes, expected.values(), strict=False):
        np.testing.assert_allclose(ax.images[0].get_array(), weights, rtol=1e-6)
    assert _tick_texts(figure.axes[0].get_yticklabels()) == ["cat", "dog", "car"]


def test_plot_channel_weights_of_one_example_is_a_bar_chart():
    s = np.random.default_rng(10).random(12)
    figure = viz.plot_channel_weights(s)
    np.testing.assert_allclose([bar.get_height() for bar in figure.axes[0].patches], s)
    table = np.random.default_rng(11).random((B, 12))
    np.testing.assert_array_equal(
        viz.plot_channel_weights(table).axes[0].images[0].get_array(), table
    )


def test_plot_channel_weights_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[C\] or \[B, C\].*got shape \(2, 3, 4\)"):
        viz.plot_channel_weights(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="row_labels need weights"):
        viz.plot_channel_weights(np.zeros(4), row_labels=["a"])
    with pytest.raises(ValueError, match="row_labels must have B=2 entries, got 1"):
        viz.plot_channel_weights(np.zeros((2, 4)), row_labels=["a"])
    with pytest.raises(ValueError, match="same B"):
        viz.plot_channel_weights({"a": np.zeros((2, 4)), "b": np.zeros((3, 4))})


# ---------------------------------------------------------------------------- imports


def test_importing_attn_loads_no_plotting_and_viz_no_pyplot():
    code = (
        "import sys, attn; assert 'matplotlib' not in sys.modules; "
        "import attn.viz; assert 'matplotlib.pyplot' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
