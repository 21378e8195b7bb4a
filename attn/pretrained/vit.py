"""ViT (Dosovitskiy et al. 2021) from a Hugging Face `ViTForImageClassification` / `ViTModel`
checkpoint, under the weight names of transformers 5 or of transformers 4.

transformers 5 renamed the encoder weights; both schemes load (`V5_NAMES`, `V4_NAMES`):

    transformers 5                        transformers 4
    layers.{i}.attention.q_proj           encoder.layer.{i}.attention.attention.query
    layers.{i}.attention.k_proj           encoder.layer.{i}.attention.attention.key
    layers.{i}.attention.v_proj           encoder.layer.{i}.attention.attention.value
    layers.{i}.attention.o_proj           encoder.layer.{i}.attention.output.dense
    layers.{i}.mlp.fc1                    encoder.layer.{i}.intermediate.dense
    layers.{i}.mlp.fc2                    encoder.layer.{i}.output.dense
    layers.{i}.layernorm_before / _after  encoder.layer.{i}.layernorm_before / _after

The embeddings (`embeddings.cls_token` [1, 1, D], `embeddings.position_embeddings`
[1, 1 + P, D], `embeddings.patch_embeddings.projection` weight [D, C, p, p] (OIHW) and bias), the
final `layernorm`, the optional `pooler.dense` and `classifier` keep their names.
`ViTForImageClassification` puts everything but `classifier` under `vit.`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from attn.models.vit import ViT, ViTConfig
from attn.pretrained.state_dict import (
    StateDict,
    StateDictReader,
    hf_activation,
    read_config,
    read_state_dict,
)

V5_NAMES = {
    "layer": "layers.{i}.",
    "query": "attention.q_proj",
    "key": "attention.k_proj",
    "value": "attention.v_proj",
    "out": "attention.o_proj",
    "norm_before": "layernorm_before",
    "norm_after": "layernorm_after",
    "fc1": "mlp.fc1",
    "fc2": "mlp.fc2",
}
"""Names of block i's weights in transformers 5, relative to the model (after `vit.`)."""

V4_NAMES = {
    "layer": "encoder.layer.{i}.",
    "query": "attention.attention.query",
    "key": "attention.attention.key",
    "value": "attention.attention.value",
    "out": "attention.output.dense",
    "norm_before": "layernorm_before",
    "norm_after": "layernorm_after",
    "fc1": "intermediate.dense",
    "fc2": "output.dense",
}
"""The same weights under transformers 4 names."""


def vit_config(
    config: Mapping[str, Any],
    *,
    num_classes: int | None = None,
    representation_size: int | None = None,
    **overrides: Any,
) -> ViTConfig:
    """The `ViTConfig` of a Hugging Face ViT `config.json`.

    `num_classes` and `representation_size` (the pooler's width) come from the state dict, since
    a `ViTModel`'s config.json lists labels for a head it does not have.
    """
    config = read_config(
        "load_vit",
        config,
        ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"),
    )
    activation = hf_activation("load_vit", "hidden_act", config.get("hidden_act", "gelu"))
    if not config.get("qkv_bias", True):
        raise ValueError("load_vit: qkv_bias=False (no query/key/value biases) is not supported")
    image_size = config.get("image_size", 224)
    patch_size = config.get("patch_size", 16)
    if not isinstance(patch_size, int):
        if len(set(patch_size)) != 1:
            raise ValueError(f"load_vit: only square patches are supported, got {patch_size!r}")
        patch_size = patch_size[0]
    return ViTConfig(
        **{
            "num_layers": config["num_hidden_layers"],
            "num_heads": config["num_attention_heads"],
            "model_dim": config["hidden_size"],
            "mlp_dim": config["intermediate_size"],
            "image_size": image_size if isinstance(image_size, int) else tuple(image_size),
            "patch_size": patch_size,
            "num_channels": config.get("num_channels", 3),
            "num_classes": num_classes,
            "pooling": "cls",
            "position": "learned",
            "representation_size": representation_size,
            "layer_norm_eps": config.get("layer_norm_eps", 1e-12),
            "activation": activation,
            "dropout_rate": config.get("hidden_dropout_prob", 0.0),
            "attention_dropout_rate": config.get("attention_probs_dropout_prob", 0.0),
            **overrides,
        }
    )


def _num_labels(config: Mapping[str, Any]) -> int | None:
    if "id2label" in config:
        return len(config["id2label"])
    return config.get("num_labels")


def _block_names(arrays: Mapping[str, np.ndarray]) -> dict[str, str]:
    """V5_NAMES or V4_NAMES, whichever scheme the state dict uses; an error if it mixes both."""
    v4 = any("encoder.layer." in name for name in arrays)
    v5 = any(name.startswith(("layers.", "vit.layers.")) for name in arrays)
    if v4 and v5:
        raise ValueError(
            "load_vit: the state dict mixes transformers-4 names (encoder.layer.{i}...) and "
            "transformers-5 names (layers.{i}...)"
        )
    return V4_NAMES if v4 else V5_NAMES


def load_vit(
    state_dict: StateDict | str | os.PathLike,
    config: Mapping[str, Any] | str | os.PathLike,
    **overrides: Any,
) -> ViT:
    """A `ViT` holding the weights of a Hugging Face ViT checkpoint.

    Its `encode(images)` equals `ViTModel`'s last hidden state, and `model(images)` equals
    `ViTForImageClassification`'s logits (classifier on the class token), on the same images in
    NHWC layout: `images = pixel_values.transpose(0, 2, 3, 1)`. With a `ViTModel` pooler in the
    state dict the model gets a pre-logits layer and `model.pool(hidden)` equals the pooler output
    tanh(h_cls W + b). Torch Linear weights [out, in] are transposed; the patch convolution's OIHW
    weight [D, C, p, p] becomes the [p, p, C, D] kernel of `nnx.Conv`. A masked-image-modeling
    `embeddings.mask_token` is skipped (no `attn` model uses it). For another image size, load at
    the checkpoint's and call `model.resize_positions(image_size)`.

    Args:
      state_dict: name -> array (transformers 5 or 4 names, with or without the `vit.` prefix),
        or a `.safetensors` path.
      config: the checkpoint's `config.json` as a dict, or the path of the file.
      **overrides: `ViTConfig` fields to change (e.g. dtype="bfloat16").

    Returns:
      The model, ready to call, in evaluation mode (`.eval()`, as Hugging Face's
      `from_pretrained`; `.train()` turns dropout on for fine-tuning); `num_classes` is the
      classifier's width (None without one).

    Raises:
      KeyError: a weight the config calls for is missing.
      ValueError: a weight has the wrong shape, the state dict holds weights the model has no
        place for, or the config is unsupported (qkv_bias=False, another activation).
    """
    config = read_config("load_vit", config, ())
    arrays = read_state_dict(state_dict)
    reader = StateDictReader(arrays, owner="load_vit", prefixes=("vit.", ""))
    names = _block_names(arrays)
    num_classes = representation_size = None
    if "classifier.weight" in arrays:
        num_classes = int(arrays["classifier.weight"].shape[0])
        labels = _num_labels(config)
        if labels is not None and labels != num_classes:
            raise ValueError(
                f"load_vit: 'classifier.weight' has {num_classes} rows but config.json lists "
                f"{labels} labels"
            )
    if reader.has("pooler.dense.weight"):
        representation_size = int(arrays[reader.prefix + "pooler.dense.weight"].shape[0])
        if config.get("pooler_act", "tanh") != "tanh":
            raise ValueError(
                f"load_vit: pooler_act {config['pooler_act']!r} is not supported; only 'tanh'"
            )
    cfg = vit_config(
        config,
        **{"num_classes": num_classes, "representation_size": representation_size, **overrides},
    )
    if cfg.pooling != "cls" or cfg.position != "learned":
        raise ValueError(
            "load_vit: Hugging Face ViT uses a class token and learned positions; pooling and "
            "position cannot be overridden"
        )
    # Built abstractly: no random initialisation of weights that are overwritten at once.
    model = nnx.eval_shape(lambda: ViT(cfg, rngs=nnx.Rngs(0)))
    D, F, C, p = cfg.model_dim, cfg.mlp_dim, cfg.num_channels, cfg.patch_size

    conv = reader.take("embeddings.patch_embeddings.projection.weight", (D, C, p, p))
    _assign(model.patch_embedding.kernel, conv.transpose(2, 3, 1, 0))  # OIHW -> HWIO
    _assign(
        model.patch_embedding.bias, reader.take("embeddings.patch_embeddings.projection.bias", (D,))
    )
    _assign(model.class_token, reader.take("embeddings.cls_token", (1, 1, D)))
    positions = reader.take("embeddings.position_embeddings", (1, cfg.max_length, D))
    _assign(model.position_embedding.embedding, positions[0])
    reader.skip("embeddings.mask_token")
    for i, block in enumerate(model.blocks):
        prefix = names["layer"].format(i=i)
        attention = block.self_attention
        _linear(attention.query, reader, prefix + names["query"], D, D)
        _linear(attention.key, reader, prefix + names["key"], D, D)
        _linear(attention.value, reader, prefix + names["value"], D, D)
        _linear(attention.out, reader, prefix + names["out"], D, D)
        _layer_norm(block.self_attention_norm, reader, prefix + names["norm_before"], D)
        _layer_norm(block.mlp_norm, reader, prefix + names["norm_after"], D)
        _linear(block.mlp.input_proj, reader, prefix + names["fc1"], D, F)
        _linear(block.mlp.output_proj, reader, prefix + names["fc2"], F, D)
    _layer_norm(model.final_norm, reader, "layernorm", D)
    if model.pre_logits is not None:
        _linear(model.pre_logits, reader, "pooler.dense", D, cfg.representation_size)
    if model.head is not None:
        reader.prefix = ""
        _linear(model.head, reader, "classifier", cfg.representation_size or D, cfg.num_classes)
    reader.check_all_used()
    _seed_dropout_streams(model, seed=0)
    missing = [
        path
        for path, node in nnx.iter_graph(model)
        if isinstance(node, nnx.Variable) and isinstance(node.get_value(), jax.ShapeDtypeStruct)
    ]
    if missing:  # every parameter must have come from the state dict
        raise RuntimeError(f"load_vit: no weights were loaded into {missing[:5]}")
    model.eval()
    return model


def _assign(variable: nnx.Variable, array: np.ndarray) -> None:
    """Write `array` into a (possibly abstract) variable, checking the shape, keeping its dtype."""
    current = variable.get_value()
    if tuple(current.shape) != tuple(array.shape):
        raise ValueError(
            f"load_vit: cannot load an array of shape {tuple(array.shape)} into a parameter of "
            f"shape {tuple(current.shape)}"
        )
    variable.set_value(jnp.asarray(array, current.dtype))


def _seed_dropout_streams(model: nnx.Module, seed: int) -> None:
    """Concrete dropout streams for a model built by `nnx.eval_shape`: stream i gets the key
    fold_in(key(seed), i) and the count 0."""
    base = jax.random.key(seed)
    streams = 0
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.RngKey):
            node.set_value(jax.random.fold_in(base, streams))
            streams += 1
        elif isinstance(node, nnx.RngCount):
            node.set_value(jnp.zeros((), jnp.uint32))


def _linear(linear: nnx.Linear, reader: StateDictReader, name: str, d_in: int, d_out: int) -> None:
    """A torch `nn.Linear`: weight [out, in], transposed to the JAX (in, out) layout; bias [out]."""
    _assign(linear.kernel, reader.take(name + ".weight", (d_out, d_in)).T)
    _assign(linear.bias, reader.take(name + ".bias", (d_out,)))


def _layer_norm(norm: nnx.LayerNorm, reader: StateDictReader, name: str, dim: int) -> None:
    _assign(norm.scale, reader.take(name + ".weight", (dim,)))
    _assign(norm.bias, reader.take(name + ".bias", (dim,)))


__all__ = ["V4_NAMES", "V5_NAMES", "load_vit", "vit_config"]
