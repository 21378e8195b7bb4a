"""The decoding methods by name, for a method chosen in a configuration file or on the command
line: `decode(model, prompt, method="beam_search", beam_size=4, ...)`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attn.decoding.beam import beam_search
from attn.decoding.sampling import greedy, sample
from attn.typing import ArrayLike

DECODING_METHODS: dict[str, Callable[..., Any]] = {
    "greedy": greedy,
    "sample": sample,
    "beam_search": beam_search,
}


def decode(model: Any, prompt: ArrayLike, *, method: str, **options: Any) -> Any:
    """`DECODING_METHODS[method](model, prompt, **options)`: a decoding method chosen by name.

    Args:
      model, prompt: as in `greedy`.
      method: "greedy", "sample" or "beam_search".
      **options: the keyword arguments of that method.

    Returns:
      what the method returns: tokens int32 [B, T0 + M] for "greedy" and "sample", a
      `BeamSearchResult` for "beam_search".
    """
    if method not in DECODING_METHODS:
        raise ValueError(
            f"decode: method must be one of {sorted(DECODING_METHODS)}, got {method!r}"
        )
    return DECODING_METHODS[method](model, prompt, **options)
