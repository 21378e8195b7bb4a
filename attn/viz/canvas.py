"""Figures on the Agg canvas (headless: no pyplot, no global backend switch), heat maps with
masked cells left blank, token tick labels, and saving as PNG."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

ATTENTION_CMAP = "viridis"


def new_figure(width: float, height: float) -> Figure:
    """A new figure on the Agg canvas: no pyplot, no global backend state."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def finish(figure: Figure, path: str | os.PathLike | None) -> Figure:
    """Save `figure` as a PNG when `path` is given, creating its folder; return it."""
    if path is not None:
        folder = os.path.dirname(os.fspath(path))
        if folder:
            os.makedirs(folder, exist_ok=True)
        figure.savefig(path, format="png", dpi=figure.dpi)
    return figure


def heat_map(
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


def tick_labels(ax, x_labels: list[str] | None, y_labels: list[str] | None, *, top: bool = False):
    """Token labels on the axes (one tick per token); keys rotated so that words do not overlap."""
    if x_labels is not None:
        ax.set_xticks(range(len(x_labels)), labels=x_labels, rotation=90)
        if top:
            ax.xaxis.tick_top()
            ax.xaxis.set_label_position("top")
    if y_labels is not None:
        ax.set_yticks(range(len(y_labels)), labels=y_labels)
