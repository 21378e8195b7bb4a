"""Reading Hugging Face state dicts and writing their arrays into `flax.nnx` parameters."""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from attn.extras import require

StateDict = Mapping[str, np.ndarray]


def read_state_dict(source: StateDict | str | os.PathLike) -> dict[str, np.ndarray]:
    """A state dict as name -> numpy array, from a mapping or a `.safetensors` file path."""
    if isinstance(source, str | os.PathLike):
        require("hf", "reading a .safetensors file")
        from safetensors.numpy import load_file

        return dict(load_file(os.fspath(source)))
    return {name: np.asarray(value) for name, value in source.items()}


class StateDictReader:
    """Hands out the arrays of a state dict by name and checks that every one was used."""

    def __init__(self, state_dict: StateDict, *, owner: str, prefixes: tuple[str, ...] = ("",)):
        self.arrays = dict(state_dict)
        self.owner = owner
        self.prefix = self._detect_prefix(prefixes)
        self.used: set[str] = set()

    def _detect_prefix(self, prefixes: tuple[str, ...]) -> str:
        for prefix in prefixes:
            if any(name.startswith(prefix) for name in self.arrays):
                return prefix
        return ""

    def has(self, name: str) -> bool:
        return self.prefix + name in self.arrays

    def take(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        """The array `name` (after the detected prefix), checked against `shape` when given."""
        full = self.prefix + name
        if full not in self.arrays:
            raise KeyError(f"{self.owner}: the state dict has no {full!r}")
        array = np.asarray(self.arrays[full], np.float32)
        if shape is not None and tuple(array.shape) != tuple(shape):
            raise ValueError(
                f"{self.owner}: {full!r} has shape {tuple(array.shape)}, expected {tuple(shape)} "
                "from config.json"
            )
        self.used.add(full)
        return array

    def skip(self, *names: str) -> None:
        """Mark arrays the model does not need (buffers such as causal-mask tables)."""
        for name in names:
            full = self.prefix + name
            if full in self.arrays:
                self.used.add(full)

    def check_all_used(self, ignore_suffixes: tuple[str, ...] = ()) -> None:
        """Raise if the state dict holds weights the loader did not place."""
        left = sorted(
            name
            for name in self.arrays
            if name not in self.used and not name.endswith(ignore_suffixes)
        )
        if left:
            raise ValueError(f"{self.owner}: unused weights in the state dict: {left[:10]}")


def assign(param: nnx.Variable, array: np.ndarray) -> None:
    """Write `array` into `param`, checking the shape and keeping the parameter's dtype."""
    current = param[...]
    if tuple(current.shape) != tuple(array.shape):
        raise ValueError(
            f"cannot load an array of shape {tuple(array.shape)} into a parameter of shape "
            f"{tuple(current.shape)}"
        )
    param[...] = jnp.asarray(array, current.dtype)
