"""Reading Hugging Face state dicts and writing their arrays into `flax.nnx` parameters, and
translating the activation names of their `config.json`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from attn.extras import require

StateDict = Mapping[str, np.ndarray]

HF_ACTIVATIONS: Mapping[str, str] = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
"""Hugging Face activation names (`hidden_act`, `activation_function`) -> names in
`attn.layers.feedforward.ACTIVATIONS`."""


def hf_activation(
    owner: str, field: str, name: str, supported: Mapping[str, str] = HF_ACTIVATIONS
) -> str:
    """The `ACTIVATIONS` name of the Hugging Face activation `name`, read from config `field`;
    a ValueError naming `owner` and the supported names otherwise."""
    if name not in supported:
        raise ValueError(
            f"{owner}: {field} {name!r} is not supported; expected one of {sorted(supported)}"
        )
    return supported[name]


def read_config(
    owner: str, config: Mapping[str, Any] | str | os.PathLike, required: Sequence[str]
) -> Mapping[str, Any]:
    """A checkpoint's `config.json`, given as a dict or as the file's path, with `required` keys.

    Raises one ValueError or TypeError naming the file, the missing keys or the given type.
    """
    if isinstance(config, (str, os.PathLike)):
        try:
            with open(config) as f:
                config = json.load(f)
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(
                f"{owner}: cannot read config.json {os.fspath(config)!r}: {error}"
            ) from None
    if not isinstance(config, Mapping):
        raise TypeError(
            f"{owner}: config must be the checkpoint's config.json as a dict or a path, "
            f"got {type(config).__name__}"
        )
    missing = [key for key in required if key not in config]
    if missing:
        raise ValueError(f"{owner}: config.json lacks {missing}; it needs {list(required)}")
    return config


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
