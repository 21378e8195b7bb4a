"""Attention maps: one map a[t, s] with token labels, and a grid of every head of every layer.

weights a[t, s] = softmax_s(score(q_t, k_s))      one map: query t (row) over keys s (columns)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.figure import Figure

from attn.typing import ArrayLike
from attn.viz.canvas import ATTENTION_CMAP, finish, heat_map, new_figure, tick_labels
from attn.viz.captured import stack_layers
from attn.viz.inputs import as_array, broadcast_mask, token_labels


def plot_attention(
    weights: ArrayLike,
    *,
    query_tokens: Sequence[Any] | None = None,
    key_tokens: Sequence[Any] | None = None,
    mask: ArrayLike | None = None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """One attention map a[t, s] (Bahdanau et al. 2015, Vaswani et al. 2017): query t on the rows,
    key s on the columns, with a colorbar on [0, max a].

    Args:
      weights: [T, S] one example and one head, e.g. `weights[b, n]` of a [B, N, T, S] result.
      query_tokens: T labels of the rows.
      key_tokens: S labels of the columns.
      mask: bool, broadcastable to [T, S], True = attended; masked cells (padding, the future under
        a causal mask) are left blank.
      title: figure title.
      path: save the figure there as a PNG.

    Returns:
      The figure; `figure.axes[0].images[0].get_array()` holds the plotted map.
    """
    fn = "plot_attention"
    weights = as_array(fn, "weights", weights, 2, "[T, S] (one example, one head)")
    T, S = weights.shape
    query_tokens = token_labels(fn, "query_tokens", query_tokens, T, "T")
    key_tokens = token_labels(fn, "key_tokens", key_tokens, S, "S")
    mask = broadcast_mask(fn, mask, (T, S))
    figure = new_figure(1.5 + 0.3 * min(max(S, 8), 40), 1.0 + 0.3 * min(max(T, 8), 40))
    ax = figure.add_subplot()
    image = heat_map(ax, weights, mask, cmap=ATTENTION_CMAP, vmin=0.0, vmax=weights.max() or 1.0)
    tick_labels(ax, key_tokens, query_tokens)
    ax.set_xlabel("key s")
    ax.set_ylabel("query t")
    figure.colorbar(image, ax=ax, label="attention weight")
    if title is not None:
        ax.set_title(title)
    return finish(figure, path)


def plot_heads(
    weights: Mapping[Any, ArrayLike] | ArrayLike,
    *,
    batch_index: int = 0,
    select: str | Sequence[str] | None = None,
    query_tokens: Sequence[Any] | None = None,
    key_tokens: Sequence[Any] | None = None,
    mask: ArrayLike | None = None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Every head of every layer (Vaswani et al. 2017, §3.2.2; Clark et al. 2019, "What Does BERT
    Look At?"): a grid with layer l on row l and head n on column n, all on one color scale.

    Args:
      weights: the {path: weights [B, N, T, S]} dict of `collect_intermediates` (rows sorted
        by the layer index in each path), or an array [L, N, T, S] of one example.
      batch_index: the example b to show, for the dict.
      select: keep only the paths containing this name (or all these names), e.g.
        "cross_attention"; see `stack_layers`.
      query_tokens: T labels of the rows, shown on the first column.
      key_tokens: S labels of the columns, shown on the last row.
      mask: bool, broadcastable to [T, S], True = attended; masked cells are left blank.
      title: figure title.
      path: save the figure there as a PNG.

    Returns:
      The figure; `figure.axes[l * N + n].images[0].get_array()` is the map of layer l, head n.
    """
    fn = "plot_heads"
    if isinstance(weights, Mapping):
        stacked, names = stack_layers(weights, select=select)  # [L, B, N, T, S]
        B = stacked.shape[1]
        if not -B <= batch_index < B:
            raise ValueError(f"{fn}: batch_index must be in [-B, B) with B={B}, got {batch_index}")
        maps = stacked[:, batch_index]  # [L, N, T, S]
    else:
        if select is not None:
            raise ValueError(f"{fn}: select applies to a {{path: weights}} dict, not an array")
        maps = as_array(fn, "weights", weights, 4, "[L, N, T, S] (one example)")
        names = [f"layer {layer}" for layer in range(maps.shape[0])]
    L, N, T, S = maps.shape
    query_tokens = token_labels(fn, "query_tokens", query_tokens, T, "T")
    key_tokens = token_labels(fn, "key_tokens", key_tokens, S, "S")
    mask = broadcast_mask(fn, mask, (T, S))
    side = 2.2 if max(T, S) <= 24 else 3.0
    figure = new_figure(0.8 + side * N, 0.6 + side * L)
    axes = figure.subplots(L, N, squeeze=False, sharex=True, sharey=True)
    vmax = maps.max() or 1.0
    for layer in range(L):
        for head in range(N):
            ax = axes[layer, head]
            image = heat_map(ax, maps[layer, head], mask, cmap=ATTENTION_CMAP, vmin=0.0, vmax=vmax)
            ax.tick_params(labelsize=7)
            if layer == 0:
                ax.set_title(f"head {head}", fontsize=9)
            if head == 0:
                ax.set_ylabel(names[layer], fontsize=8)
    for ax in axes[-1]:  # the axes are shared: label every one so that all rotate alike
        tick_labels(ax, key_tokens, None)
    for ax in axes[:, 0]:
        tick_labels(ax, None, query_tokens)
    figure.colorbar(image, ax=axes, label="attention weight", shrink=0.8)
    if title is not None:
        figure.suptitle(title)
    return finish(figure, path)
