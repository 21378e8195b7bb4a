"""GPT-2 (Radford et al. 2019) from a Hugging Face `GPT2LMHeadModel` / `GPT2Model` checkpoint."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flax import nnx

from attn.models.lm import TransformerLM, TransformerLMConfig
from attn.pretrained.state_dict import (
    HF_ACTIVATIONS,
    StateDict,
    StateDictReader,
    assign,
    hf_activation,
    read_config,
    read_state_dict,
)

_ACTIVATIONS = {name: HF_ACTIVATIONS[name] for name in ("gelu_new", "gelu_pytorch_tanh", "gelu")}
"""The activations GPT-2 checkpoints use."""


def gpt2_config(config: Mapping[str, Any], **overrides: Any) -> TransformerLMConfig:
    """The `TransformerLMConfig` of a Hugging Face GPT-2 `config.json`."""
    config = read_config(
        "load_gpt2", config, ("vocab_size", "n_embd", "n_layer", "n_head", "n_positions")
    )
    activation = hf_activation(
        "load_gpt2",
        "activation_function",
        config.get("activation_function", "gelu_new"),
        _ACTIVATIONS,
    )
    for option, supported in (
        ("scale_attn_weights", True),
        ("scale_attn_by_inverse_layer_idx", False),
    ):
        if config.get(option, supported) != supported:
            raise ValueError(
                f"load_gpt2: {option}={config[option]!r} is not supported (only {supported!r})"
            )
    model_dim = config["n_embd"]
    return TransformerLMConfig(
        **{
            "vocab_size": config["vocab_size"],
            "num_layers": config["n_layer"],
            "num_heads": config["n_head"],
            "model_dim": model_dim,
            "mlp_dim": config.get("n_inner") or 4 * model_dim,
            "max_length": config["n_positions"],
            "activation": activation,
            "layer_norm_eps": config.get("layer_norm_epsilon", 1e-5),
            "position": "learned",
            "tie_embeddings": config.get("tie_word_embeddings", True),
            **overrides,
        }
    )


def load_gpt2(
    state_dict: StateDict | str | os.PathLike,
    config: Mapping[str, Any] | str | os.PathLike,
    **overrides: Any,
) -> TransformerLM:
    """A `TransformerLM` holding the weights of a Hugging Face GPT-2 checkpoint.

    Its logits equal `GPT2LMHeadModel`'s on the same ids (and the same `attention_mask`, at the
    real tokens). Conv1D weights are already (in, out), the JAX layout; the fused `c_attn` is split
    into query, key and value.

    Args:
      state_dict: name -> array (`GPT2LMHeadModel` or `GPT2Model` names), or a `.safetensors` path.
      config: the checkpoint's `config.json` as a dict, or the path of the file.
      **overrides: `TransformerLMConfig` fields to change (e.g. dtype="bfloat16").

    Returns:
      The model, ready to call, in evaluation mode (`.eval()`, as Hugging Face's
      `from_pretrained`; `.train()` turns dropout on for fine-tuning).
    """
    config = read_config("load_gpt2", config, ())
    cfg = gpt2_config(config, **overrides)
    reader = StateDictReader(
        read_state_dict(state_dict), owner="load_gpt2", prefixes=("transformer.", "")
    )
    model = TransformerLM(cfg, rngs=nnx.Rngs(0))
    D, F = cfg.model_dim, cfg.mlp_dim
    assign(model.token_embedding.embedding, reader.take("wte.weight", (cfg.vocab_size, D)))
    assign(model.position_embedding.embedding, reader.take("wpe.weight", (cfg.max_length, D)))
    for i, block in enumerate(model.blocks):
        prefix = f"h.{i}."
        _layer_norm(block.self_attention_norm, reader, prefix + "ln_1", D)
        qkv_weight = reader.take(prefix + "attn.c_attn.weight", (D, 3 * D))
        qkv_bias = reader.take(prefix + "attn.c_attn.bias", (3 * D,))
        attention = block.self_attention
        for j, linear in enumerate((attention.query, attention.key, attention.value)):
            assign(linear.kernel, qkv_weight[:, j * D : (j + 1) * D])
            assign(linear.bias, qkv_bias[j * D : (j + 1) * D])
        _linear(attention.out, reader, prefix + "attn.c_proj", D, D)
        _layer_norm(block.mlp_norm, reader, prefix + "ln_2", D)
        _linear(block.mlp.input_proj, reader, prefix + "mlp.c_fc", D, F)
        _linear(block.mlp.output_proj, reader, prefix + "mlp.c_proj", F, D)
        reader.skip(prefix + "attn.bias", prefix + "attn.masked_bias")
    _layer_norm(model.final_norm, reader, "ln_f", D)
    if cfg.tie_embeddings:
        reader.prefix, tied = "", "lm_head.weight"
        reader.skip(tied)
    else:
        reader.prefix = ""
        assign(model.lm_head.kernel, reader.take("lm_head.weight", (cfg.vocab_size, D)).T)
    reader.check_all_used()
    model.eval()
    return model


def _linear(linear: nnx.Linear, reader: StateDictReader, name: str, d_in: int, d_out: int) -> None:
    """A GPT-2 Conv1D: weight [in, out] (already the JAX layout), bias [out]."""
    assign(linear.kernel, reader.take(name + ".weight", (d_in, d_out)))
    assign(linear.bias, reader.take(name + ".bias", (d_out,)))


def _layer_norm(norm: nnx.LayerNorm, reader: StateDictReader, name: str, dim: int) -> None:
    assign(norm.scale, reader.take(name + ".weight", (dim,)))
    assign(norm.bias, reader.take(name + ".bias", (dim,)))


__all__ = ["gpt2_config", "load_gpt2"]
