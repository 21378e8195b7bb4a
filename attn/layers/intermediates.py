"""The one way to look inside a model: layers sow what they have to show, one collector gathers it.

Every layer with something to show has a boolean `sow_weights` (default False; switched over a
whole model with `nnx.view(model, sow_weights=True)`, each such layer implementing
`set_view(sow_weights=...)`). When it is on, each call does `self.sow(nnx.Intermediate, NAME,
value)`, with one meaning per NAME:

    NAME                 sown by                                 value
    "attention_weights"  MultiHeadAttention, HardMultiHeadAttention  [B, N, T, S] float32
    "selection"          HardMultiHeadAttention                  HardSelection(index, log_prob,
                                                                 entropy), each [B, N, T]
    "alignment"          Seq2SeqRNN (its Bahdanau/Luong           [B, T, S] over the original
                         attention); ConvS2S (on attention_in[l]) source positions, float32
    "log_prob"           Seq2SeqRNN, estimator="reinforce",       [B, T] log p of the sampled
                         in training                              source positions
    "gates"              RNN (on each cell: ("cells", i, "gates")),  {gate name: [B, S, H]}
                         Seq2SeqRNN (its decoder's top layer)     {gate name: [B, T, H]}
                         GatedLinearUnit                          g [..., F]
    "channel_weights"    SqueezeExcitation                        [B, C]

`collect_intermediates` switches sowing on for one call and returns what was sown, by path.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from flax import nnx


def collect_intermediates(
    fn: Callable[..., Any], *args: Any, names: Sequence[str] | None = None, **kwargs: Any
) -> tuple[Any, dict[tuple, Any]]:
    """Run `fn(*args, **kwargs)` with every layer sowing, and gather what the layers sowed.

    Every `nnx.Module` among `fn` (a module, or the module of a bound method) and `args` sows
    during the call: `sow_weights` is switched on in each of their layers that has it, and back
    to what it was afterwards, even when the call raises.

    Args:
      fn: an `nnx.Module`, a bound method of one, or a function taking modules among `args`.
      *args: the positional arguments of `fn`.
      names: keep only these NAMEs (e.g. ("attention_weights",)); None keeps everything.
      **kwargs: the keyword arguments of `fn`.

    Returns:
      (outputs, found): `fn`'s outputs, and a dict mapping a path — the attribute names and list
      indices down to the layer, then the NAME, e.g. ("decoder_blocks", 5, "cross_attention",
      "attention_weights") — to the value sown, or to a tuple of values (one per call) when the
      layer ran more than once. With several modules, each path starts with the module's
      position among them (`fn` first, then `args` in order; a module inside another counts as
      part of it).
    """
    if names is not None and (isinstance(names, str) or not isinstance(names, Sequence)):
        raise TypeError(
            f"collect_intermediates: names must be a sequence of NAMEs such as "
            f"('attention_weights',), got {names!r}"
        )
    modules = _modules_among(fn, args)
    if not modules:
        raise TypeError(
            "collect_intermediates: fn or one of args must be an nnx.Module (or fn a bound "
            f"method of one), got fn={fn!r:.80} and {len(args)} args of types "
            f"{[type(a).__name__ for a in args]}"
        )
    layers = [
        layer
        for module in modules
        for _, layer in nnx.iter_modules(module)
        if hasattr(layer, "sow_weights") and hasattr(layer, "set_view")
    ]
    before = [layer.sow_weights for layer in layers]
    for layer in layers:
        layer.set_view(sow_weights=True)
    try:
        outputs, states = _run_capturing(modules, lambda: fn(*args, **kwargs))
    finally:
        for layer, was in zip(layers, before, strict=True):
            layer.set_view(sow_weights=was)
    found = {}
    for position, state in enumerate(states):
        prefix = (position,) if len(modules) > 1 else ()
        for path, variable in nnx.to_flat_state(state):
            if names is not None and path[-1] not in names:
                continue
            calls = variable.get_value()  # a tuple: one entry per call
            found[prefix + tuple(path)] = calls[0] if len(calls) == 1 else calls
    return outputs, found


def _modules_among(fn: Any, args: tuple) -> list[nnx.Module]:
    """The distinct modules among `fn` (or its bound instance) and `args`, outermost ones only."""
    candidates = [fn.__self__ if inspect.ismethod(fn) else fn, *args]
    modules = []
    for candidate in candidates:
        if isinstance(candidate, nnx.Module) and all(candidate is not m for m in modules):
            modules.append(candidate)
    inner = {
        id(sub)
        for module in modules
        for path, sub in nnx.iter_modules(module)
        if path  # a proper submodule of another module
    }
    return [module for module in modules if id(module) not in inner]


def _run_capturing(modules: list[nnx.Module], call: Callable[[], Any]) -> tuple[Any, list]:
    """(call(), [the nnx.Intermediate state each module sowed]), with `nnx.capture` per module."""
    if not modules:
        return call(), []
    first, rest = modules[0], modules[1:]
    (outputs, inner), state = nnx.capture(
        lambda module: _run_capturing(rest, call), nnx.Intermediate
    )(first)
    return outputs, [state, *inner]
