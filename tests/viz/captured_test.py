"""attn.viz reads the collector's output, {path ending in the sown NAME: value or (one value per
call,)}: layers in index order, the NAME dropped from their names, other NAMEs left out."""

from __future__ import annotations

import numpy as np
import pytest

from attn import viz

B, N, T, S = 2, 3, 4, 5


def _softmax_rows(*shape: int, seed: int) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=shape) * 3.0
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    return weights / weights.sum(-1, keepdims=True)


def _collected() -> dict:
    """What a two-block model gives out: attention weights (block 0 as a one-call tuple) and a
    gates entry that the attention plots must leave out."""
    return {
        ("blocks", 10, "self_attention", "attention_weights"): _softmax_rows(B, N, T, T, seed=2),
        ("blocks", 2, "self_attention", "attention_weights"): (_softmax_rows(B, N, T, T, seed=1),),
        ("blocks", 2, "mlp", "gates"): np.full((B, T, 7), 0.5),
    }


def test_stack_layers_reads_the_collector_output_in_layer_order():
    collected = _collected()
    stacked, names = viz.stack_layers(collected)
    assert names == ["blocks/2/self_attention", "blocks/10/self_attention"]
    np.testing.assert_array_equal(stacked[0], _softmax_rows(B, N, T, T, seed=1))
    np.testing.assert_array_equal(stacked[1], _softmax_rows(B, N, T, T, seed=2))
    rollout = viz.attention_rollout(collected)
    np.testing.assert_allclose(rollout, viz.attention_rollout(stacked), rtol=1e-12)
    figure = viz.plot_heads(collected, batch_index=1)
    np.testing.assert_array_equal(figure.axes[N + 2].images[0].get_array(), stacked[1, 1, 2])


def test_a_layer_that_ran_twice_is_an_error():
    twice = {("attention", "attention_weights"): (np.zeros((B, N, T, S)), np.zeros((B, N, T, S)))}
    with pytest.raises(ValueError, match="'attention' ran 2 times"):
        viz.stack_layers(twice)


def test_plot_channel_weights_reads_collected_channel_weights():
    first, block = np.random.default_rng(3).random((2, B, 6))
    collected = {
        ("blocks", 0, "channel_weights"): (block,),
        ("first", "channel_weights"): first,
        ("first", "gates"): np.zeros((B, 6)),
    }
    figure = viz.plot_channel_weights(collected)
    assert [ax.get_title() for ax in figure.axes[:2]] == ["first", "blocks/0"]
    np.testing.assert_array_equal(figure.axes[0].images[0].get_array(), first)
    np.testing.assert_array_equal(figure.axes[1].images[0].get_array(), block)


def test_plot_alignment_reads_one_collected_alignment():
    alignment = _softmax_rows(B, T, S, seed=4)
    collected = {("decoder", "attention", "alignment"): (alignment,)}
    source, target = list("abcde"), list("wxyz")
    figure = viz.plot_alignment(collected, source, target, batch_index=1)
    np.testing.assert_array_equal(figure.axes[0].images[0].get_array(), alignment[1])
    two = {**collected, ("other", "alignment"): alignment}
    with pytest.raises(ValueError, match="must hold one alignment, got 2"):
        viz.plot_alignment(two, source, target)
    with pytest.raises(ValueError, match=r"batch_index must be in \[-B, B\) with B=2, got 2"):
        viz.plot_alignment(collected, source, target, batch_index=2)
