"""How each kind of task feeds a model a batch and scores it.

    seq2seq         p(y_t | y_<t, x):  logits = model(inputs, shift_right(targets)),
                    loss over target tokens (Transformer, Seq2SeqRNN)
    lm              p(x_{t+1} | x_≤t): logits = model(inputs), loss over the next tokens
                    (TransformerLM)
    mlm             p(x_t | x with 15 % of tokens masked): loss over the masked positions only
                    (Devlin et al. 2019; Bert)
    classification  p(c | x): one label per sequence (Bert) or per image (ViT)

Batches are the dicts of `attn.data.load`. A `Task` builds its model from a family name and a
config, computes the training loss with its metric sums, the evaluation metric sums, greedy
predictions (for exact match and BLEU) and one attention map per example for the heatmaps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from attn import decoding
from attn.data import BOS_ID, EOS_ID, PAD_ID, mask_tokens, shift_right
from attn.layers.intermediates import collect_intermediates
from attn.models import (
    Bert,
    BertConfig,
    Seq2SeqRNN,
    Seq2SeqRNNConfig,
    Transformer,
    TransformerConfig,
    TransformerLM,
    TransformerLMConfig,
    ViT,
    ViTConfig,
)
from attn.training.losses import masked_cross_entropy
from attn.training.metrics import token_accuracy
from attn.typing import Array

Metrics = dict[str, tuple[Array, Array]]

# The model families, and the task kinds each can train on.
FAMILIES: dict[str, tuple[type, type]] = {
    "Transformer": (Transformer, TransformerConfig),
    "TransformerLM": (TransformerLM, TransformerLMConfig),
    "Bert": (Bert, BertConfig),
    "ViT": (ViT, ViTConfig),
    "Seq2SeqRNN": (Seq2SeqRNN, Seq2SeqRNNConfig),
}
KINDS: dict[str, tuple[str, ...]] = {
    "seq2seq": ("Transformer", "Seq2SeqRNN"),
    "lm": ("TransformerLM",),
    "mlm": ("Bert",),
    "classification": ("Bert", "ViT"),
}


def model_family(name: str) -> tuple[type, type]:
    """(model class, config class) of a family name such as "Transformer"."""
    if name not in FAMILIES:
        raise ValueError(f"config.model.family must be one of {list(FAMILIES)}, got {name!r}")
    return FAMILIES[name]


@dataclasses.dataclass(frozen=True)
class LossOptions:
    """label_smoothing ε and z-loss weight α of the training loss (see `attn.training.losses`)."""

    label_smoothing: float = 0.0
    z_loss: float = 0.0


@dataclasses.dataclass(frozen=True)
class Task:
    """A task kind ("seq2seq", "lm", "mlm", "classification") bound to a model family.

    Fields:
      kind: the task kind, a key of `KINDS`.
      family: the model family, one of `KINDS[kind]`.
      loss: the loss options of training (evaluation reports the plain cross-entropy).
      vocab_size: V, for masked-LM random replacements.
      mask_rate: fraction of tokens masked for "mlm".
    """

    kind: str
    family: str
    loss: LossOptions = LossOptions()
    vocab_size: int = 0
    mask_rate: float = 0.15

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"config.task must be one of {sorted(KINDS)}, got {self.kind!r}")
        if self.family not in KINDS[self.kind]:
            raise ValueError(
                f"config.model.family={self.family!r} cannot train a {self.kind!r} task; use one "
                f"of {list(KINDS[self.kind])}"
            )

    def build_model(self, model_config: Any, rngs: nnx.Rngs) -> nnx.Module:
        """The family's model built from its config object."""
        model_cls, _ = model_family(self.family)
        return model_cls(model_config, rngs=rngs)

    # ------------------------------------------------------------------ forward

    def _inputs_and_labels(self, batch: Mapping[str, Array], key: Array):
        """(model inputs, labels, label weights) of a batch; `key` draws the MLM masks."""
        if self.kind == "seq2seq":
            targets = batch["targets"]
            return (batch["inputs"], shift_right(targets, BOS_ID)), targets, targets != PAD_ID
        if self.kind == "lm":
            return (batch["inputs"],), batch["targets"], batch["targets"] != PAD_ID
        if self.kind == "mlm":
            masked = mask_tokens(
                batch["inputs"], key, vocab_size=self.vocab_size, rate=self.mask_rate
            )
            return (masked["inputs"],), masked["targets"], masked["weights"] > 0
        data = batch["image"] if "image" in batch else batch["inputs"]
        return (data,), batch["label"], jnp.ones(batch["label"].shape, bool)

    def logits(self, model: nnx.Module, inputs: tuple, *, deterministic: bool) -> Array:
        """Logits [B, T, V] (or [B, classes]) of the model on the task's inputs."""
        if self.kind == "seq2seq":
            src, tgt = inputs
            src_mask, tgt_mask = src != PAD_ID, tgt != PAD_ID
            if self.family == "Seq2SeqRNN":  # a recurrent decoder never reads later positions
                return model(src, tgt, src_mask, deterministic=deterministic)
            tgt_mask = tgt_mask.at[:, 0].set(True)  # BOS is real even for an empty target
            return model(src, tgt, src_mask, tgt_mask, deterministic=deterministic)
        if self.kind == "lm":
            (ids,) = inputs
            return model(ids, ids != PAD_ID, deterministic=deterministic)
        if self.kind == "mlm":
            (ids,) = inputs
            return model(ids, None, ids != PAD_ID, deterministic=deterministic)
        (data,) = inputs
        if self.family == "Bert":
            hidden = model.encode(data, None, data != PAD_ID, deterministic=deterministic)
            return model.classify(hidden, deterministic=deterministic)
        return model(data, deterministic=deterministic)

    def _weights(self, batch: Mapping[str, Array], label_weights: Array) -> Array:
        """Label weights with the padding rows of the last evaluation batch (valid=False) zeroed."""
        if "valid" not in batch:
            return label_weights
        valid = batch["valid"].reshape(batch["valid"].shape + (1,) * (label_weights.ndim - 1))
        return label_weights & valid

    def train_loss(
        self, model: nnx.Module, batch: Mapping[str, Array], key: Array
    ) -> tuple[Array, Metrics]:
        """The training loss (with label smoothing and z-loss) and its metric sums.

        Args:
          model: the model, in training mode (dropout on).
          batch: a batch of `attn.data.load`.
          key: the step's key (masked-LM masks).

        Returns:
          (loss, {"loss": (Σ w ℓ, Σ w), "accuracy": (correct, Σ w)}).
        """
        inputs, labels, weights = self._inputs_and_labels(batch, key)
        weights = self._weights(batch, weights)
        logits = self.logits(model, inputs, deterministic=False)
        loss, count = masked_cross_entropy(
            logits,
            labels,
            weights,
            label_smoothing=self.loss.label_smoothing,
            z_loss=self.loss.z_loss,
        )
        accuracy = token_accuracy(logits, labels, weights)
        return loss, {"loss": (loss * count, count), "accuracy": accuracy}

    def eval_metrics(self, model: nnx.Module, batch: Mapping[str, Array], key: Array) -> Metrics:
        """Metric sums of an evaluation batch: plain cross-entropy ("loss") and accuracy.

        Returns:
          {"loss": (Σ w ℓ, Σ w), "accuracy": (correct, Σ w)}.
        """
        inputs, labels, weights = self._inputs_and_labels(batch, key)
        weights = self._weights(batch, weights)
        logits = self.logits(model, inputs, deterministic=True)
        loss, count = masked_cross_entropy(logits, labels, weights)
        return {"loss": (loss * count, count), "accuracy": token_accuracy(logits, labels, weights)}

    # ------------------------------------------------------------------ decoding and attention

    def predict(
        self,
        model: nnx.Module,
        batch: Mapping[str, Array],
        *,
        max_new_tokens: int,
        beam_size: int = 1,
        return_weights: bool = False,
    ) -> tuple[Array, Array | None]:
        """Decoded targets of a seq2seq batch (`attn.decoding`: greedy, or beam search for
        beam_size > 1), starting from BOS and stopping at EOS.

        Args:
          model: the seq2seq model.
          batch: a batch with `inputs` int [B, S].
          max_new_tokens: M, the longest output.
          beam_size: K; 1 is greedy search.
          return_weights: also return the attention weights (models with attention only).

        Returns:
          (tokens int32 [B, M], pad after EOS; the cross-attention weights float32 [B, M, S]
          behind each token, or None without `return_weights`).
        """
        if self.kind != "seq2seq":
            raise ValueError(f"Task.predict decodes seq2seq tasks, not {self.kind!r}")
        src = jnp.asarray(batch["inputs"])
        prompt = jnp.full((src.shape[0], 1), BOS_ID, jnp.int32)
        options = dict(
            max_new_tokens=max_new_tokens,
            eos_id=EOS_ID,
            source=src,
            source_mask=src != PAD_ID,
            pad_id=PAD_ID,
            return_weights=return_weights,
        )
        if beam_size > 1:
            result = decoding.beam_search(model, prompt, beam_size=beam_size, **options)
        else:
            result = decoding.greedy(model, prompt, **options)
        tokens, weights = result if return_weights else (result, None)
        return tokens[:, 1:], weights

    def attention_maps(self, model: nnx.Module, batch: Mapping[str, Array]) -> Array:
        """Head-averaged self-attention weights [B, T, T] of the last layer on a batch
        (the tokens, or the class token and patches of an image).
        """
        inputs, _, _ = self._inputs_and_labels(batch, jax.random.key(0))
        _, weights = collect_intermediates(
            _LogitsOf(self, model), *inputs, names=("attention_weights",)
        )
        if not weights:
            raise ValueError(
                f"Task.attention_maps: the {self.family} model has no attention layers to show"
            )
        chosen = weights[list(weights)[-1]]
        if isinstance(chosen, tuple):
            chosen = chosen[-1]
        return jnp.mean(chosen.astype(jnp.float32), axis=1)  # [B, N, T, S] -> [B, T, S]


class _LogitsOf(nnx.Module):
    """A module whose call is `task.logits(model, inputs)`, so attention weights can be captured."""

    def __init__(self, task: Task, model: nnx.Module):
        self.task = task
        self.model = model

    def __call__(self, *inputs):
        return self.task.logits(self.model, inputs, deterministic=True)
