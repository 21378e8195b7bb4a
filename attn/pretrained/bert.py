"""BERT (Devlin et al. 2019) from a Hugging Face `BertModel`, `BertForMaskedLM`,
`BertForPreTraining` or `BertForSequenceClassification` checkpoint."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import nnx

from attn.models.bert import Bert, BertConfig
from attn.pretrained.state_dict import (
    StateDict,
    StateDictReader,
    assign,
    hf_activation,
    read_config,
    read_state_dict,
)

_CLASSIFIERS = ("classifier", "cls.seq_relationship")  # sequence classification, NSP
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")


def bert_config(
    config: Mapping[str, Any], state_dict: StateDict | None = None, **overrides: Any
) -> BertConfig:
    """The `BertConfig` of a Hugging Face BERT `config.json`.

    With `state_dict`, the heads follow the weights it holds: the pooler when it has
    `pooler.dense`, the masked-LM head when it has `cls.predictions`, and a classifier with as many
    classes as `classifier.weight` (`BertForSequenceClassification`) or `cls.seq_relationship`
    (next-sentence prediction, 2 classes) has rows. `overrides` win over both; a `num_classes`
    override also turns the pooler on unless `use_pooler` is given too.
    """
    config = read_config(
        "load_bert",
        config,
        (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
        ),
    )
    activation = hf_activation("load_bert", "hidden_act", config.get("hidden_act", "gelu"))
    position_type = config.get("position_embedding_type", "absolute")
    if position_type != "absolute":
        raise ValueError(
            f"load_bert: position_embedding_type {position_type!r} is not supported; only "
            "'absolute' (learned positions) is"
        )
    if config.get("is_decoder", False) or config.get("add_cross_attention", False):
        raise ValueError(
            "load_bert: decoder BERT configurations (is_decoder / add_cross_attention) are not "
            "supported; Bert is a bidirectional encoder"
        )
    fields: dict[str, Any] = {
        "vocab_size": config["vocab_size"],
        "num_layers": config["num_hidden_layers"],
        "num_heads": config["num_attention_heads"],
        "model_dim": config["hidden_size"],
        "mlp_dim": config["intermediate_size"],
        "max_length": config["max_position_embeddings"],
        "type_vocab_size": config.get("type_vocab_size", 2),
        "layer_norm_eps": config.get("layer_norm_eps", 1e-12),
        "activation": activation,
        "dropout_rate": config.get("hidden_dropout_prob", 0.1),
        "attention_dropout_rate": config.get("attention_probs_dropout_prob", 0.1),
        "classifier_dropout_rate": config.get("classifier_dropout"),
        "tie_embeddings": config.get("tie_word_embeddings", True),
    }
    if state_dict is not None:
        fields.update(_heads_present(state_dict))
    if overrides.get("num_classes") is not None and "use_pooler" not in overrides:
        fields["use_pooler"] = True  # a classifier asked for brings the pooler it reads
    return BertConfig(**{**fields, **overrides})


def load_bert(
    state_dict: StateDict | str | os.PathLike,
    config: Mapping[str, Any] | str | os.PathLike,
    **overrides: Any,
) -> Bert:
    """A `Bert` holding the weights of a Hugging Face BERT checkpoint.

    `model.encode(ids, token_type_ids, attention_mask)` equals `BertModel`'s last hidden state,
    `model.pool(hidden)` its pooler output, `model(ids, ...)` `BertForMaskedLM`'s logits, and
    `model.classify(hidden)` the logits of `BertForSequenceClassification` (or the next-sentence
    logits of `BertForPreTraining`). Torch Linear weights [out, in] are transposed to the JAX
    (in, out) layout.

    Heads: the model gets the heads whose weights the state dict holds (see `bert_config`). A
    head turned off by an override (`use_pooler=False`, `use_mlm_head=False`,
    `num_classes=None`) drops its weights; a head turned on by an override that the checkpoint
    lacks (`num_classes=5` on a masked-LM checkpoint, for fine-tuning: the classifier and the
    pooler it reads) keeps its random initialization. Every other weight must be present, with
    its shape from `config.json`.

    Names: `BertModel` names (`embeddings.*`, `encoder.layer.{i}.*`, `pooler.dense.*`), or the
    same under `bert.` with the heads `cls.predictions.*` (masked LM), `cls.seq_relationship.*`
    (next sentence) or `classifier.*` (sequence classification). LayerNorm parameters may be named
    `weight`/`bias` or, in older checkpoints, `gamma`/`beta`. Buffers (`position_ids`) are
    ignored; any other weight the model does not use is an error (a KeyError for a missing one,
    a ValueError for an unused or misshaped one).

    Args:
      state_dict: name -> array, or the path of a `.safetensors` file.
      config: the checkpoint's `config.json` as a dict, or the path of the file.
      **overrides: `BertConfig` fields to change (e.g. dtype="bfloat16").

    Returns:
      The model, ready to call, in evaluation mode (`.eval()`, as Hugging Face's
      `from_pretrained`; `.train()` turns dropout on for fine-tuning).
    """
    config = read_config("load_bert", config, ())
    arrays = read_state_dict(state_dict)
    cfg = bert_config(config, arrays, **overrides)
    reader = StateDictReader(arrays, owner="load_bert", prefixes=("bert.", ""))
    model = Bert(cfg, rngs=nnx.Rngs(0))
    V, D, F = cfg.vocab_size, cfg.model_dim, cfg.mlp_dim

    embeddings = model.embeddings
    assign(embeddings.word.embedding, reader.take("embeddings.word_embeddings.weight", (V, D)))
    assign(
        embeddings.position.embedding,
        reader.take("embeddings.position_embeddings.weight", (cfg.max_length, D)),
    )
    assign(
        embeddings.token_type.embedding,
        reader.take("embeddings.token_type_embeddings.weight", (cfg.type_vocab_size, D)),
    )
    _layer_norm(embeddings.norm, reader, "embeddings.LayerNorm", D)
    reader.skip(*_BUFFERS)

    for i, block in enumerate(model.blocks):
        prefix = f"encoder.layer.{i}."
        attention = block.self_attention
        for name, linear in (
            ("query", attention.query),
            ("key", attention.key),
            ("value", attention.value),
        ):
            _linear(linear, reader, f"{prefix}attention.self.{name}", D, D)
        _linear(attention.out, reader, prefix + "attention.output.dense", D, D)
        _layer_norm(block.self_attention_norm, reader, prefix + "attention.output.LayerNorm", D)
        _linear(block.mlp.input_proj, reader, prefix + "intermediate.dense", D, F)
        _linear(block.mlp.output_proj, reader, prefix + "output.dense", F, D)
        _layer_norm(block.mlp_norm, reader, prefix + "output.LayerNorm", D)

    present = _heads_present(arrays)
    if model.pooler is not None and present["use_pooler"]:
        _linear(model.pooler, reader, "pooler.dense", D, D)
    elif model.pooler is None:
        reader.skip("pooler.dense.weight", "pooler.dense.bias")

    reader.prefix = ""  # the heads sit outside the `bert.` prefix
    if model.mlm_head is not None and present["use_mlm_head"]:
        _masked_lm_head(model.mlm_head, reader, V, D, tied=cfg.tie_embeddings)
    elif model.mlm_head is None:
        reader.skip(*(n for n in arrays if n.startswith("cls.predictions.")))
    classifiers = [head for head in _CLASSIFIERS if reader.has(head + ".weight")]
    if model.classifier is not None and classifiers:
        _linear(model.classifier, reader, classifiers[0], D, cfg.num_classes)
    elif model.classifier is None:
        reader.skip(*(f"{head}.{p}" for head in _CLASSIFIERS for p in ("weight", "bias")))
    reader.check_all_used()
    model.eval()
    return model


def _masked_lm_head(head, reader: StateDictReader, V: int, D: int, *, tied: bool) -> None:
    """`cls.predictions.*`: transform dense + LayerNorm, decoder (tied or not) and bias [V]."""
    prefix = "cls.predictions."
    _linear(head.transform, reader, prefix + "transform.dense", D, D)
    _layer_norm(head.norm, reader, prefix + "transform.LayerNorm", D)
    # The output bias is `cls.predictions.bias`; `decoder.bias` is the same tensor, tied to it.
    bias_name = "bias" if reader.has(prefix + "bias") else "decoder.bias"
    assign(head.bias, reader.take(prefix + bias_name, (V,)))
    reader.skip(prefix + "decoder.bias")
    if tied:  # the decoder is the token table, as in Hugging Face (which re-ties it on load)
        reader.skip(prefix + "decoder.weight")
    else:
        assign(head.decoder.kernel, reader.take(prefix + "decoder.weight", (V, D)).T)


def _heads_present(state_dict: StateDict) -> dict[str, Any]:
    """`use_pooler`, `use_mlm_head` and `num_classes` as the weights in `state_dict` give them."""
    names = list(state_dict)
    num_classes = None
    for head in _CLASSIFIERS:
        if head + ".weight" in state_dict:
            num_classes = int(np.shape(state_dict[head + ".weight"])[0])
    return {
        "use_pooler": any(n.removeprefix("bert.").startswith("pooler.dense.") for n in names),
        "use_mlm_head": any(n.startswith("cls.predictions.") for n in names),
        "num_classes": num_classes,
    }


def _linear(linear: nnx.Linear, reader: StateDictReader, name: str, d_in: int, d_out: int) -> None:
    """A torch Linear: weight [out, in] -> kernel [in, out]; bias [out]."""
    assign(linear.kernel, reader.take(name + ".weight", (d_out, d_in)).T)
    assign(linear.bias, reader.take(name + ".bias", (d_out,)))


def _layer_norm(norm: nnx.LayerNorm, reader: StateDictReader, name: str, dim: int) -> None:
    """`weight`/`bias`, or `gamma`/`beta` in checkpoints converted from TensorFlow."""
    scale, shift = ("weight", "bias") if reader.has(name + ".weight") else ("gamma", "beta")
    assign(norm.scale, reader.take(f"{name}.{scale}", (dim,)))
    assign(norm.bias, reader.take(f"{name}.{shift}", (dim,)))


__all__ = ["bert_config", "load_bert"]
