"""Checks of what the plotting functions take: numeric arrays of a given rank, token labels of
the right length and boolean masks, each error naming the argument and the expected shape."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from attn.typing import ArrayLike


def as_array(fn: str, name: str, x: Any, rank: int | tuple[int, ...], shape_key: str) -> np.ndarray:
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


def token_labels(fn: str, name: str, labels: Sequence[Any] | None, size: int, letter: str):
    """`labels` as a list of str of length `size` (the size of axis `letter`), or None."""
    if labels is None:
        return None
    if isinstance(labels, str):
        raise TypeError(f"{fn}: {name} must be a sequence of tokens, not one string {labels!r:.40}")
    labels = [str(label) for label in labels]
    if len(labels) != size:
        raise ValueError(f"{fn}: {name} must have {letter}={size} entries, got {len(labels)}")
    return labels


def broadcast_mask(fn: str, mask: ArrayLike | None, shape: tuple[int, int]) -> np.ndarray | None:
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
