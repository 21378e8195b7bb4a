"""Reading what the models' layers sowed: `attn.layers.collect_intermediates` returns
{path tuple ending in the sown NAME: value, or a tuple of values with one per call}, e.g.

    {("blocks", 0, "self_attention", "attention_weights"): [B, N, T, S], ...}

`layer_items` turns that into (layer name, value) pairs in layer order, keeping the entries of one
NAME; `stack_layers` stacks the attention weights of every layer. The older forms are accepted
too: a {path: value} dict without the NAME, and an `nnx.State` from `nnx.capture`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from flax import nnx

from attn.typing import ArrayLike
from attn.viz.inputs import as_array


def path_name(path: Any) -> str:
    """("blocks", 0, "self_attention") -> "blocks/0/self_attention"."""
    return "/".join(str(part) for part in path) if isinstance(path, tuple) else str(path)


def _layer_order(path: Any) -> tuple:
    """Sort key: the integer entries of a path (the layer indices; none sorts first), then its
    name."""
    parts = path if isinstance(path, tuple) else (path,)
    return tuple(part for part in parts if isinstance(part, int)), path_name(path)


def _single_call(fn: str, path: Any, value: Any) -> Any:
    """The array of a layer that ran once; captured values come as a tuple with one per call."""
    if isinstance(value, nnx.Variable):
        value = value.get_value()
    if isinstance(value, tuple | list):
        if len(value) != 1:
            raise ValueError(
                f"{fn}: the layer at {path_name(path)!r} ran {len(value)} times (one entry per "
                "call); pass the weights of one call"
            )
        value = value[0]
    return value


def layer_items(fn: str, captured: Mapping | nnx.State, name: str) -> list[tuple[str, Any]]:
    """(layer name, value) per layer, in layer order, of the values sown under NAME `name`.

    Args:
      fn: the caller, named in errors.
      captured: the {path ending in NAME: value or (one value per call,)} dict of
        `collect_intermediates`; when no path ends in `name`, every entry is a layer (a {path:
        value} dict without the NAME, or an `nnx.State` of `nnx.capture`, whose paths end in the
        variable's name).
      name: the sown NAME to keep, e.g. "attention_weights".

    Returns:
      [(path without the NAME as "a/0/b", value of the layer's one call)].
    """
    if isinstance(captured, nnx.State):
        items = [(tuple(path), value) for path, value in nnx.to_flat_state(captured)]
    else:
        items = [(p if isinstance(p, tuple) else (p,), value) for p, value in captured.items()]
    if not items:
        raise ValueError(f"{fn}: weights is an empty mapping; expected {{path: array}} per layer")
    named = [(path[:-1], value) for path, value in items if path and path[-1] == name]
    if named:
        items = named
    elif isinstance(captured, nnx.State):
        items = [(path[:-1], value) for path, value in items]  # drop the variable's name
    items.sort(key=lambda item: _layer_order(item[0]))
    return [(path_name(path), _single_call(fn, path, value)) for path, value in items]


def stack_layers(
    weights: Mapping[Any, ArrayLike] | ArrayLike, *, select: str | Sequence[str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Stacks per-layer attention weights in layer order.

    Args:
      weights: the {path: weights [B, N, T, S]} dict of `collect_intermediates` (its
        "attention_weights" entries, layers sorted by the layer index in their path), or an array
        [L, B, N, T, S] already in layer order.
      select: keep only the paths that contain this name, or all of these names (e.g.
        "cross_attention", or ("encoder_blocks", "self_attention")); for dicts only.

    Returns:
      (weights [L, B, N, T, S] float64, names of the L layers).
    """
    fn = "stack_layers"
    if not isinstance(weights, Mapping):
        if select is not None:
            raise ValueError(f"{fn}: select applies to a {{path: weights}} dict, not an array")
        stacked = as_array(fn, "weights", weights, 5, "[L, B, N, T, S]")
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
            f"{fn}: no path contains {list(names)}; paths are {[path_name(p) for p in weights]}"
        )
    layers = layer_items(fn, kept, "attention_weights")
    arrays = [as_array(fn, f"weights[{n!r}]", w, 4, "[B, N, T, S]") for n, w in layers]
    shapes = {array.shape for array in arrays}
    if len(shapes) != 1:
        raise ValueError(
            f"{fn}: every layer must have the same shape [B, N, T, S] to stack, got "
            f"{ {name: array.shape for (name, _), array in zip(layers, arrays, strict=True)} }; "
            "pick one kind of layer with select="
        )
    return np.stack(arrays), [name for name, _ in layers]
