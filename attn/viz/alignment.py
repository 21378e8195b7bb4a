"""Seq2seq alignments in the style of Bahdanau et al. (2015), Figure 3."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from attn.typing import ArrayLike
from attn.viz.canvas import finish, heat_map, new_figure, tick_labels
from attn.viz.captured import layer_items
from attn.viz.inputs import as_array, token_labels


def plot_alignment(
    weights: Mapping[Any, Any] | ArrayLike,
    source_tokens: Sequence[Any],
    target_tokens: Sequence[Any],
    *,
    batch_index: int = 0,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """A seq2seq alignment in the style of Bahdanau et al. 2015 (Figure 3): source words along
    the top, generated target words down the side, α[t, s] in grey (white = 1).

    Args:
      weights: α [T, S], the attention of target step t over source position s; or the output
        of `collect_intermediates` holding one "alignment" [B, T, S], of which example
        `batch_index` is drawn.
      source_tokens: S source tokens (columns).
      target_tokens: T target tokens (rows).
      batch_index: the example b to show, for collected alignments.
      title: figure title.
      path: save the figure there as a PNG.

    Returns:
      The figure; `figure.axes[0].images[0].get_array()` holds α.
    """
    fn = "plot_alignment"
    if isinstance(weights, Mapping):
        layers = layer_items(fn, weights, "alignment")
        if len(layers) != 1:
            raise ValueError(
                f"{fn}: weights must hold one alignment, got {len(layers)}: "
                f"{[name for name, _ in layers]}"
            )
        batch = as_array(fn, "the collected alignment", layers[0][1], 3, "[B, T, S]")
        B = batch.shape[0]
        if not -B <= batch_index < B:
            raise ValueError(f"{fn}: batch_index must be in [-B, B) with B={B}, got {batch_index}")
        weights = batch[batch_index]  # [B, T, S] -> [T, S]
    weights = as_array(fn, "weights", weights, 2, "[T, S] (target steps by source positions)")
    T, S = weights.shape
    source_tokens = token_labels(fn, "source_tokens", source_tokens, S, "S")
    target_tokens = token_labels(fn, "target_tokens", target_tokens, T, "T")
    figure = new_figure(1.5 + 0.35 * min(max(S, 6), 40), 1.2 + 0.35 * min(max(T, 6), 40))
    ax = figure.add_subplot()
    image = heat_map(ax, weights, None, cmap="gray", vmin=0.0, vmax=1.0)
    tick_labels(ax, source_tokens, target_tokens, top=True)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    figure.colorbar(image, ax=ax, label="alignment weight", shrink=0.8)
    if title is not None:
        figure.suptitle(title)
    return finish(figure, path)
