"""Attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in Transformers"), which
follows the attention through the residual stream of every layer:

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
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure

from attn.typing import ArrayLike
from attn.viz.canvas import finish, new_figure
from attn.viz.captured import stack_layers
from attn.viz.inputs import as_array

HEAD_FUSIONS = ("mean", "max", "min")


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
    image = as_array(fn, "image", image, (2, 3), "[H, W] or [H, W, C] with C in {1, 3}")
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
    patch_weights = as_array(fn, "patch_weights", patch_weights, 1, "[P]")
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
    figure = new_figure(6.0, 3.2)
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
    return finish(figure, path)
