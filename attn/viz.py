"""Pictures of attention: heat maps, head grids, seq2seq alignments, ViT attention rollout, gates.

Every plotting function takes what the models return (weights from
`attn.layers.collect_intermediates`, gates and channel weights captured with `nnx.capture`),
draws on a new `matplotlib.figure.Figure` with the Agg canvas (headless, no pyplot and no global
backend switch), saves a PNG when `path` is given and returns the figure.

    weights a[t, s] = softmax_s(score(q_t, k_s))      one map: query t (row) over keys s (columns)

Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers") follows
the attention through the residual stream of every layer:

    Â_l = norm_rows(½ A_l + ½ I)    A_l the heads of layer l fused by mean / max / min
    R   = Â_L Â_{L-1} ··· Â_1       R[t, s]: how much of token s flows into output token t

For a ViT with a class token, R[0, 1:] spread over the patch grid shows where the class token
looked (`plot_rollout_on_image`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from flax import nnx
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

from attn.typing import ArrayLike

HEAD_FUSIONS = ("mean", "max", "min")
ATTENTION_CMAP = "viridis"
GATE_CMAP = "magma"
# Panels of known gates follow the cells' equations (JAX transforms return dicts sorted by key).
GATE_ORDER = ("input", "forget", "output", "reset", "update")

__all__ = [
    "attention_rollout",
    "plot_alignment",
    "plot_attention",
    "plot_channel_weights",
    "plot_gates",
    "plot_heads",
    "plot_rollout_on_image",
    "stack_layers",
]


# ---------------------------------------------------------------------------- inputs


def _as_array(
    fn: str, name: str, x: Any, rank: int | tuple[int, ...], shape_key: str
) -> np.ndarray:
    """`x` as a float64 NumPy array of the given rank(s), or a ValueError naming the shape."""
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"{fn}: {name} must be a numeric array {shape_key}, got {x!r:.80}"
        ) from error
    ranks = (rank,) if isinstance(rank, int) else rank
    if array.ndim not in ranks:
        raise ValueError(f"{fn}: {name} must have shape {shape_key}, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{fn}: {name} must be finite, got NaN or infinite values")
    return array


def _labels(fn: str, name: str, labels: Sequence[Any] | None, size: int, letter: str):
    """`labels` as a list of str of length `size` (the size of axis `letter`), or None."""
    if labels is None:
        return None
    if isinstance(labels, str):
        raise TypeError(f"{fn}: {name} must be a sequence of tokens, not one string {labels!r:.40}")
    labels = [str(label) for label in labels]
    if len(labels) != size:
        raise ValueError(f"{fn}: {name} must have {letter}={size} entries, got {len(labels)}")
    return labels


def _mask(fn: str, mask: ArrayLike | None, shape: tuple[int, int]) -> np.ndarray | None:
    """A boolean mask broadcast to [T, S] (True = attended), or None."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise TypeError(f"{fn}: mask must be boolean (True = attend), got dtype {mask.dtype}")
    try:
        return np.broadcast_to(mask, shape)
    except ValueError:
        raise ValueError(
            f"{fn}: mask must broadcast to [T, S] = {list(shape)}, got shape {mask.shape}"
        ) from None


def _path_name(path: Any) -> str:
    """("blocks", 0, "self_attention") -> "blocks/0/self_attention"."""
    return "/".join(str(part) for part in path) if isinstance(path, tuple) else str(path)


def _layer_order(path: Any) -> tuple:
    """Sort key: the integer entries of a path (the layer indices; none sorts first), then its
    name."""
    parts = path if isinstance(path, tuple) else (path,)
    return tuple(part for part in parts if isinstance(part, int)), _path_name(path)


def _single_call(fn: str, path: Any, value: Any) -> Any:
    """The array of a layer that ran once; captured values come as a tuple with one per call."""
    if isinstance(value, nnx.Variable):
        value = value.get_value()
    if isinstance(value, tuple | list):
        if len(value) != 1:
            raise ValueError(
                f"{fn}: the layer at {_path_name(path)!r} ran {len(value)} times (one entry per "
                "call); pass the weights of one call"
            )
        value = value[0]
    return value


def _flat_layers(fn: str, weights: Mapping | nnx.State) -> list[tuple[str, Any]]:
    """(name, array) per layer of a {path: array} dict or a captured `nnx.State`, by layer index."""
    if isinstance(weights, nnx.State):
        # A captured state's leaves sit under their variable name ("channel_weights"): drop it.
        items = [(tuple(path[:-1]), value) for path, value in nnx.to_flat_state(weights)]
    else:
        items = list(weights.items())
    if not items:
        raise ValueError(f"{fn}: weights is an empty mapping; expected {{path: array}} per layer")
    items.sort(key=lambda item: _layer_order(item[0]))
    return [(_path_name(path), _single_call(fn, path, value)) for path, value in items]


def stack_layers(
    weights: Mapping[Any, ArrayLike] | ArrayLike, *, select: str | Sequence[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Stacks per-layer attention weights in layer order.

    Args:
      weights: the {path: weights [B, N, T, S]} dict of `collect_intermediates` (layers sorted
        by the layer index in their path), or an array [L, B, N, T, S] already in layer order.
      select: keep only the paths that contain this name, or all of these names (e.g.
        "cross_attention", or ("encoder_blocks", "self_attention")); for dicts only.

    Returns:
      (weights [L, B, N, T, S] float64, names of the L layers).
    """
    fn = "stack_layers"
    if not isinstance(weights, Mapping):
        if select is not None:
            raise ValueError(f"{fn}: select applies to a {{path: weights}} dict, not an array")
        stacked = _as_array(fn, "weights", weights, 5, "[L, B, N, T, S]")
        return stacked, [f"layer {layer}" for layer in range(stacked.shape[0])]
    if not weights:
        raise ValueError(f"{fn}: weights is an empty mapping; expected {{path: array}} per layer")
    names = (select,) if isinstance(select, str) else tuple(select or ())
    kept = {
        path: value
        for path, value in weights.items()
        if all(name in (path if isinstance(path, tuple) else (path,)) for name in names)
    }
    if not kept:
        raise ValueError(
            f"{fn}: no path contains {list(names)}; paths are {[_path_name(p) for p in weights]}"
        )
    layers = _flat_layers(fn, kept)
    arrays = [_as_array(fn, f"weights[{n!r}]", w, 4, "[B, N, T, S]") for n, w in layers]
    shapes = {array.shape for array in arrays}
    if len(shapes) != 1:
        raise ValueError(
            f"{fn}: every layer must have the same shape [B, N, T, S] to stack, got "
            f"{ {name: array.shape for (name, _), array in zip(layers, arrays, strict=True)} }; "
            "pick one kind of layer with select="
        )
    return np.stack(arrays), [name for name, _ in layers]


# ---------------------------------------------------------------------------- figures


def _figure(width: float, height: float) -> Figure:
    """A new figure on the Agg canvas: no pyplot, no global backend state."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _finish(figure: Figure, path: str | os.PathLike | None) -> Figure:
    """Save `figure` as a PNG when `path` is given, creating its folder; return it."""
    if path is not None:
        folder = os.path.dirname(os.fspath(path))
        if folder:
            os.makedirs(folder, exist_ok=True)
        figure.savefig(path, format="png", dpi=figure.dpi)
    return figure


def _heat_map(
    ax,
    values: np.ndarray,
    mask: np.ndarray | None,
    *,
    cmap: str,
    vmin: float,
    vmax: float,
):
    """imshow of values [rows, cols] with masked (False) cells left blank."""
    shown = values if mask is None else np.ma.masked_array(values, mask=~mask)
    return ax.imshow(shown, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")


def _tick_labels(ax, x_labels: list[str] | None, y_labels: list[str] | None, *, top: bool = False):
    """Token labels on the axes (one tick per token); keys rotated so that words do not overlap."""
    if x_labels is not None:
        ax.set_xticks(range(len(x_labels)), labels=x_labels, rotation=90)
        if top:
            ax.xaxis.tick_top()
            ax.xaxis.set_label_position("top")
    if y_labels is not None:
        ax.set_yticks(range(len(y_labels)), labels=y_labels)


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
    weights = _as_array(fn, "weights", weights, 2, "[T, S] (one example, one head)")
    T, S = weights.shape
    query_tokens = _labels(fn, "query_tokens", query_tokens, T, "T")
    key_tokens = _labels(fn, "key_tokens", key_tokens, S, "S")
    mask = _mask(fn, mask, (T, S))
    figure = _figure(1.5 + 0.3 * min(max(S, 8), 40), 1.0 + 0.3 * min(max(T, 8), 40))
    ax = figure.add_subplot()
    image = _heat_map(ax, weights, mask, cmap=ATTENTION_CMAP, vmin=0.0, vmax=weights.max() or 1.0)
    _tick_labels(ax, key_tokens, query_tokens)
    ax.set_xlabel("key s")
    ax.set_ylabel("query t")
    figure.colorbar(image, ax=ax, label="attention weight")
    if title is not None:
        ax.set_title(title)
    return _finish(figure, path)


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
        maps = _as_array(fn, "weights", weights, 4, "[L, N, T, S] (one example)")
        names = [f"layer {layer}" for layer in range(maps.shape[0])]
    L, N, T, S = maps.shape
    query_tokens = _labels(fn, "query_tokens", query_tokens, T, "T")
    key_tokens = _labels(fn, "key_tokens", key_tokens, S, "S")
    mask = _mask(fn, mask, (T, S))
    side = 2.2 if max(T, S) <= 24 else 3.0
    figure = _figure(0.8 + side * N, 0.6 + side * L)
    axes = figure.subplots(L, N, squeeze=False, sharex=True, sharey=True)
    vmax = maps.max() or 1.0
    for layer in range(L):
        for head in range(N):
            ax = axes[layer, head]
            image = _heat_map(ax, maps[layer, head], mask, cmap=ATTENTION_CMAP, vmin=0.0, vmax=vmax)
            ax.tick_params(labelsize=7)
            if layer == 0:
                ax.set_title(f"head {head}", fontsize=9)
            if head == 0:
                ax.set_ylabel(names[layer], fontsize=8)
    for ax in axes[-1]:  # the axes are shared: label every one so that all rotate alike
        _tick_labels(ax, key_tokens, None)
    for ax in axes[:, 0]:
        _tick_labels(ax, None, query_tokens)
    figure.colorbar(image, ax=axes, label="attention weight", shrink=0.8)
    if title is not None:
        figure.suptitle(title)
    return _finish(figure, path)


def plot_alignment(
    weights: ArrayLike,
    source_tokens: Sequence[Any],
    target_tokens: Sequence[Any],
    *,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """A seq2seq alignment in the style of Bahdanau et al. 2015 (Figure 3): source words along
    the top, generated target words down the side, α[t, s] in grey (white = 1).

    Args:
      weights: α [T, S], the attention of target step t over source position s.
      source_tokens: S source tokens (columns).
      target_tokens: T target tokens (rows).
      title: figure title.
      path: save the figure there as a PNG.

    Returns:
      The figure; `figure.axes[0].images[0].get_array()` holds α.
    """
    fn = "plot_alignment"
    weights = _as_array(fn, "weights", weights, 2, "[T, S] (target steps by source positions)")
    T, S = weights.shape
    source_tokens = _labels(fn, "source_tokens", source_tokens, S, "S")
    target_tokens = _labels(fn, "target_tokens", target_tokens, T, "T")
    figure = _figure(1.5 + 0.35 * min(max(S, 6), 40), 1.2 + 0.35 * min(max(T, 6), 40))
    ax = figure.add_subplot()
    image = _heat_map(ax, weights, None, cmap="gray", vmin=0.0, vmax=1.0)
    _tick_labels(ax, source_tokens, target_tokens, top=True)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    figure.colorbar(image, ax=ax, label="alignment weight", shrink=0.8)
    if title is not None:
        figure.suptitle(title)
    return _finish(figure, path)


# ---------------------------------------------------------------------------- rollout


def attention_rollout(
    weights: Mapping[Any, ArrayLike] | ArrayLike,
    *,
    head_fusion: str = "mean",
    add_residual: bool = True,
    select: str | Sequence[str] | None = None,
) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"):

        A_l = fuse_n a_l[n]                  heads fused by mean, max or min   [B, T, T]
        Â_l = norm_rows(½ A_l + ½ I)         the residual connection (or norm_rows(A_l) without)
        R   = Â_L Â_{L-1} ··· Â_1            [B, T, T], every row sums to 1

    Args:
      weights: self-attention weights per layer, the {path: weights [B, N, T, T]} dict of
        `collect_intermediates` (sorted by layer index), or an array [L, B, N, T, T] in layer
        order.
      head_fusion: "mean" (the paper), "max" or "min".
      add_residual: mix in the identity for the residual stream.
      select: which paths of a dict to use, e.g. ("encoder_blocks", "self_attention").

    Returns:
      R [B, T, T] float64: R[b, t, s] is the share of input token s in output token t. For a
      ViT with a class token, `R[:, 0, 1:]` [B, P] is the class token's view of the patches.
    """
    fn = "attention_rollout"
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"{fn}: head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    stacked, _ = stack_layers(weights, select=select)
    _, B, _, T, S = stacked.shape  # [L, B, N, T, S]
    if T != S:
        raise ValueError(
            f"{fn}: rollout needs self-attention weights [L, B, N, T, T], got T={T} != S={S} "
            "(cross-attention? use select=)"
        )
    fused = getattr(np, head_fusion)(stacked, axis=2)  # [L, B, N, T, T] -> [L, B, T, T]
    if add_residual:
        fused = 0.5 * fused + 0.5 * np.eye(T)
    row_sums = fused.sum(axis=-1, keepdims=True)
    fused = fused / np.where(row_sums > 0.0, row_sums, 1.0)
    rollout = np.broadcast_to(np.eye(T), (B, T, T))
    for layer in fused:  # R_l = Â_l R_{l-1}
        rollout = layer @ rollout
    return rollout


def _display_image(fn: str, image: ArrayLike) -> np.ndarray:
    """An image [H, W], [H, W, 1] or [H, W, 3] scaled to [0, 1] for display."""
    image = _as_array(fn, "image", image, (2, 3), "[H, W] or [H, W, C] with C in {1, 3}")
    if image.ndim == 3:
        if image.shape[-1] not in (1, 3):
            raise ValueError(
                f"{fn}: image must have shape [H, W, C] with C in {{1, 3}}, got {image.shape}"
            )
        if image.shape[-1] == 1:
            image = image[..., 0]
    low, high = image.min(), image.max()
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def plot_rollout_on_image(
    image: ArrayLike,
    patch_weights: ArrayLike,
    grid: tuple[int, int],
    *,
    alpha: float = 0.6,
    title: str | None = None,
    path: str | os.PathLike | None = None,
) -> Figure:
    """The image and, beside it, the image under a heat map of one weight per patch: the class
    token's attention rollout over the patches of a ViT (Abnar & Zuidema 2020, Figure 5;
    Dosovitskiy et al. 2021, Figure 6), each patch's weight spread over its p×p pixels.

    Args:
      image: [H, W] or [H, W, C] with C in {1, 3}, channels last as `ViT` takes it (min-max
        scaled for display).
      patch_weights: [P] with P = rows·cols, row-major as the ViT reads patches, e.g.
        `attention_rollout(weights)[b, 0, 1:]`.
      grid: (rows, cols) of the patch grid, `ViTConfig.grid`.
      alpha: opacity of the heat map over the image.
      title: figure title.
      path: save the figure there as a PNG.

    Returns:
      The figure: `axes[0]` the image, `axes[1]` the image with the heat map
      (`axes[1].images[1].get_array()` holds patch_weights as [rows, cols]).
    """
    fn = "plot_rollout_on_image"
    shown = _display_image(fn, image)
    patch_weights = _as_array(fn, "patch_weights", patch_weights, 1, "[P]")
    if (
        not isinstance(grid, tuple | list)
        or len(grid) != 2
        or not all(isinstance(g, int | np.integer) and g > 0 for g in grid)
    ):
        raise ValueError(f"{fn}: grid must be a pair of positive ints (rows, cols), got {grid!r}")
    rows, cols = grid
    if patch_weights.shape[0] != rows * cols:
        hint = (
            " (drop the class token: rollout[b, 0, 1:])"
            if patch_weights.shape[0] == rows * cols + 1
            else ""
        )
        raise ValueError(
            f"{fn}: patch_weights must have shape [P] = [{rows * cols}] for grid {tuple(grid)}, "
            f"got shape {patch_weights.shape}{hint}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"{fn}: alpha must be in [0, 1], got {alpha}")
    heat = patch_weights.reshape(rows, cols)  # [P] -> [rows, cols], row-major like the patches
    H, W = shown.shape[:2]
    extent = (-0.5, W - 0.5, H - 0.5, -0.5)  # heat-map cells cover whole patches of pixels
    figure = _figure(6.0, 3.2)
    axes = figure.subplots(1, 2)
    gray = {"cmap": "gray"} if shown.ndim == 2 else {}
    for ax in axes:
        ax.imshow(shown, interpolation="nearest", **gray)
        ax.set_xticks([])
        ax.set_yticks([])
    overlay = axes[1].imshow(
        heat, cmap="inferno", alpha=alpha, extent=extent, interpolation="nearest"
    )
    axes[0].set_title("image", fontsize=10)
    axes[1].set_title("attention rollout", fontsize=10)
    opaque = ScalarMappable(norm=overlay.norm, cmap=overlay.get_cmap())  # a bar without the alpha
    figure.colorbar(opaque, ax=axes[1], label="class token → patch", shrink=0.8)
    if title is not None:
        figure.suptitle(title)
    return _finish(figure, path)


# ---------------------------------------------------------------------------- gates


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
    arrays = {name: _as_array(fn, f"gates[{name!r}]", gates[name], 2, "[T, H]") for name in names}
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
    tokens = _labels(fn, "tokens", tokens, T, "T")
    if mask is not None and np.shape(mask) != (T,):
        raise ValueError(f"{fn}: mask must have shape [T] = [{T}], got shape {np.shape(mask)}")
    mask = _mask(fn, mask, (H, T))  # [T] -> [H, T]
    figure = _figure(
        2.0 + 0.28 * min(max(T, 10), 50), 0.6 + len(arrays) * (0.9 + 0.12 * min(H, 32))
    )
    axes = figure.subplots(len(arrays), 1, squeeze=False, sharex=True)[:, 0]
    for ax, (name, array) in zip(axes, arrays.items(), strict=True):
        image = _heat_map(ax, array.T, mask, cmap=GATE_CMAP, vmin=0.0, vmax=1.0)  # [T, H] -> [H, T]
        ax.set_ylabel(f"{name}\nunit h", fontsize=9)
    _tick_labels(axes[-1], tokens, None)
    axes[-1].set_xlabel("step t")
    figure.colorbar(image, ax=list(axes), label="gate activation", shrink=0.8)
    if title is not None:
        figure.suptitle(title)
    return _finish(figure, path)


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
            (name, _as_array(fn, f"weights[{name!r}]", s, 2, "[B, C]"))
            for name, s in _flat_layers(fn, weights)
        ]
    else:
        s = _as_array(fn, "weights", weights, (1, 2), "[C] or [B, C]")
        layers = [("", s)]
    if layers[0][1].ndim == 1:
        (_, s), C = layers[0], layers[0][1].shape[0]
        if row_labels is not None:
            raise ValueError(f"{fn}: row_labels need weights [B, C], got shape {s.shape}")
        figure = _figure(1.5 + 0.12 * min(max(C, 16), 128), 2.8)
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
        row_labels = _labels(fn, "row_labels", row_labels, B, "B")
        widest = max(s.shape[1] for _, s in layers)
        height = 0.5 + len(layers) * (0.8 + 0.22 * min(B, 24))
        figure = _figure(2.0 + 0.1 * min(max(widest, 24), 128), height)
        axes = figure.subplots(len(layers), 1, squeeze=False)[:, 0]
        for ax, (name, s) in zip(axes, layers, strict=True):
            image = _heat_map(ax, s, None, cmap=ATTENTION_CMAP, vmin=0.0, vmax=1.0)
            _tick_labels(ax, None, row_labels)
            ax.set_xlabel("channel c", fontsize=9)
            ax.set_ylabel("example", fontsize=9)
            if name:
                ax.set_title(name, fontsize=9)
        figure.colorbar(image, ax=list(axes), label="channel weight s", shrink=0.8)
    if title is not None:
        figure.suptitle(title)
    return _finish(figure, path)
