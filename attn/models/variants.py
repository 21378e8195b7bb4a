"""Named variants of model configs: `<Family>Config.named("gpt2")`, with field overrides."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self

import jax.numpy as jnp

from attn.kernels.validation import check_dropout_rate, check_positive
from attn.layers.feedforward import ACTIVATIONS, get_activation


class NamedVariants:
    """Mixin for frozen config dataclasses with a `VARIANTS` table of named field overrides."""

    VARIANTS: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def named(cls, name: str, **overrides: Any) -> Self:
        """The config of variant `name`, with any field overridden by keyword."""
        if name not in cls.VARIANTS:
            raise ValueError(
                f"{cls.__name__}.named: unknown variant {name!r}; expected one of "
                f"{sorted(cls.VARIANTS)}"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(
                f"{cls.__name__}.named: unknown field(s) {unknown}; the fields are {sorted(fields)}"
            )
        return cls(**{**cls.VARIANTS[name], **overrides})


def check_transformer_fields(owner: str, config: Any) -> None:
    """The checks of the fields that `TransformerBlock.from_config` reads, shared by every
    transformer family: model_dim, num_heads, mlp_dim and layer_norm_eps > 0, both dropout rates
    in [0, 1), N dividing D and K (`num_kv_heads`, where the config has it) dividing N, and a known
    MLP activation. A ValueError names `owner` and the field."""
    for name in ("num_heads", "model_dim", "mlp_dim", "layer_norm_eps"):
        check_positive(owner, name, getattr(config, name))
    for name in ("dropout_rate", "attention_dropout_rate"):
        check_dropout_rate(owner, name, getattr(config, name))
    check_heads(owner, config.model_dim, config.num_heads, getattr(config, "num_kv_heads", None))
    get_activation(config.activation, ACTIVATIONS, arg=f"{owner}: activation")


def check_heads(
    owner: str, model_dim: int, num_heads: int, num_kv_heads: int | None = None
) -> None:
    """Raise unless num_heads divides model_dim and num_kv_heads (default num_heads) divides
    num_heads."""
    if model_dim % num_heads:
        raise ValueError(
            f"{owner}: model_dim ({model_dim}) must be divisible by num_heads ({num_heads})"
        )
    kv_heads = num_heads if num_kv_heads is None else num_kv_heads
    if kv_heads < 1 or num_heads % kv_heads:
        raise ValueError(
            f"{owner}: num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})"
        )


def dtype_of(name: str | None):
    """A dtype from its name ("float32", "bfloat16", ...), None stays None."""
    return None if name is None else jnp.dtype(name)
