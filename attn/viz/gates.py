"""Gates read as attention: the gates of a recurrent cell over time, and the channel weights of
squeeze-and-excitation; both weigh units in (0, 1) with a sigmoid instead of a softmax."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from flax import nnx
from matplotlib.figure import Figure

from attn.typing import ArrayLike
from attn.viz.canvas import ATTENTION_CMAP, finish, heat_map, new_figure, tick_labels
from attn.viz.captured import layer_items
from attn.viz.inputs import as_array, broadcast_mask, token_labels

GATE_CMAP = "magma"
# Panels of known gates follow the cells' equations (JAX transforms return dicts sorted by key).
GATE_ORDER = ("input", "forget", "output", "reset", "update")


def plot_gates(
    gates: Mapping[str, ArrayLike],
    *,
    tokens: Sequence[Any] | None = None,
    mask: ArrayLike | None = None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Gates as attention maps: the gate activations of a recurrent cell over time, one panel
    per gate, unit h on the rows and step t on the columns. For the LSTM (Hochreiter &
    Schmidhuber 1997; Gers et al. 2000)

        i_t = σ(W_i [h_{t-1}; x_t] + b_i)   what to write
        f_t = σ(W_f [h_{t-1}; x_t] + b_f)   what to keep
        o_t = σ(W_o [h_{t-1}; x_t] + b_o)   what to show
        c_t = f_t ⊙ c_{t-1} + i_t ⊙ tanh(W_c [h_{t-1}; x_t] + b_c),   h_t = o_t ⊙ tanh(c_t)

    each gate weighs every unit in (0, 1) without a softmax, attention over the state's units.

    Args:
      gates: {gate name: activations [T, H]} in (0, 1), e.g. {"input": i, "forget": f,
        "output": o} of one example (GRU: {"reset": r, "update": z}), all of the same shape.
        Panels follow `GATE_ORDER` (input, forget, output; reset, update), then other names.
      tokens: T labels of the steps (the input tokens).
      mask: bool [T], True = a real step; padded steps (False) are left blank.
      title: figure title.
      path: save the figure there as a PNG.

    Returns:
      The figure; `figure.axes[g].images[0].get_array()` is gate g transposed, [H, T].
    """
    fn = "plot_gates"
    if not isinstance(gates, Mapping) or not gates:
        raise TypeError(
            f"{fn}: gates must be a non-empty {{name: [T, H]}} mapping, got {gates!r:.80}"
        )
    known = [name for name in GATE_ORDER if name in gates]
    names = known + [name for name in gates if name not in known]
    arrays = {name: as_array(fn, f"gates[{name!r}]", gates[name], 2, "[T, H]") for name in names}
    shapes = {array.shape for array in arrays.values()}
    if len(shapes) != 1:
        raise ValueError(
            f"{fn}: every gate must have the same shape [T, H], got "
            f"{ {name: array.shape for name, array in arrays.items()} }"
        )
    for name, array in arrays.items():
        if array.min() < 0.0 or array.max() > 1.0:
            raise ValueError(
                f"{fn}: gates[{name!r}] must be activations in [0, 1] (after the sigmoid), got "
                f"values in [{array.min():.3g}, {array.max():.3g}]"
            )
    T, H = shapes.pop()
    tokens = token_labels(fn, "tokens", tokens, T, "T")
    if mask is not None and np.shape(mask) != (T,):
        raise ValueError(f"{fn}: mask must have shape [T] = [{T}], got shape {np.shape(mask)}")
    mask = broadcast_mask(fn, mask, (H, T))  # [T] -> [H, T]
    figure = new_figure(
        2.0 + 0.28 * min(max(T, 10), 50), 0.6 + len(arrays) * (0.9 + 0.12 * min(H, 32))
    )
    axes = figure.subplots(len(arrays), 1, squeeze=False, sharex=True)[:, 0]
    for ax, (name, array) in zip(axes, arrays.items(), strict=True):
        image = heat_map(ax, array.T, mask, cmap=GATE_CMAP, vmin=0.0, vmax=1.0)  # [T, H] -> [H, T]
        ax.set_ylabel(f"{name}\nunit h", fontsize=9)
    tick_labels(axes[-1], tokens, None)
    axes[-1].set_xlabel("step t")
    figure.colorbar(image, ax=list(axes), label="gate activation", shrink=0.8)
    if title is not None:
        figure.suptitle(title)
    return finish(figure, path)


def plot_channel_weights(
    weights: Mapping[Any, Any] | nnx.State | ArrayLike,
    *,
    row_labels: Sequence[Any] | None = None,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """Squeeze-and-excitation channel weights s = σ(relu(z W_1 + b_1) W_2 + b_2) (Hu et al. 2018,
    Figure 6): one row per example, one column per channel c, in (0, 1).

    Args:
      weights: s [C] (drawn as bars), s [B, C] (a heat map), or one [B, C] per layer: a
        {path: [B, C]} dict or the `nnx.State` that `nnx.capture(nnx.view(model,
        sow_weights=True), nnx.Intermediate)` returns (one panel per layer, by layer index).
      row_labels: B labels of the examples (e.g. their classes), for [B, C] inputs.
      title: figure title.
      path: save the figure there as a PNG.

    Returns:
      The figure: for [C] the bar heights of `axes[0].patches`; otherwise
      `figure.axes[i].images[0].get_array()` holds layer i's [B, C].
    """
    fn = "plot_channel_weights"
    if isinstance(weights, Mapping | nnx.State):
        layers = [
            (name, as_array(fn, f"weights[{name!r}]", s, 2, "[B, C]"))
            for name, s in layer_items(fn, weights, "channel_weights")
        ]
    else:
        s = as_array(fn, "weights", weights, (1, 2), "[C] or [B, C]")
        layers = [("", s)]
    if layers[0][1].ndim == 1:
        (_, s), C = layers[0], layers[0][1].shape[0]
        if row_labels is not None:
            raise ValueError(f"{fn}: row_labels need weights [B, C], got shape {s.shape}")
        figure = new_figure(1.5 + 0.12 * min(max(C, 16), 128), 2.8)
        ax = figure.add_subplot()
        ax.bar(np.arange(C), s, width=0.8, color="tab:blue")
        ax.set_ylim(0.0, 1.0)
        ax.set_xlabel("channel c")
        ax.set_ylabel("weight s_c")
    else:
        batches = {s.shape[0] for _, s in layers}
        if len(batches) != 1:
            raise ValueError(f"{fn}: every layer must have the same B, got {sorted(batches)}")
        B = batches.pop()
        row_labels = token_labels(fn, "row_labels", row_labels, B, "B")
        widest = max(s.shape[1] for _, s in layers)
        height = 0.5 + len(layers) * (0.8 + 0.22 * min(B, 24))
        figure = new_figure(2.0 + 0.1 * min(max(widest, 24), 128), height)
        axes = figure.subplots(len(layers), 1, squeeze=False)[:, 0]
        for ax, (name, s) in zip(axes, layers, strict=True):
            image = heat_map(ax, s, None, cmap=ATTENTION_CMAP, vmin=0.0, vmax=1.0)
            tick_labels(ax, None, row_labels)
            ax.set_xlabel("channel c", fontsize=9)
            ax.set_ylabel("example", fontsize=9)
            if name:
                ax.set_title(name, fontsize=9)
        figure.colorbar(image, ax=list(axes), label="channel weight s", shrink=0.8)
    if title is not None:
        figure.suptitle(title)
    return finish(figure, path)
