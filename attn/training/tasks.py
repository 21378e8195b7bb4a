"""How each kind of task feeds a model a batch and scores it: one class per task kind.

    Seq2SeqTask         p(y_t | y_<t, x):  logits = model(inputs, shift_right(targets)),
                        loss over target tokens (Transformer, Seq2SeqRNN)
    LMTask              p(x_{t+1} | x_≤t): logits = model(inputs), loss over the next tokens
                        (TransformerLM)
    MLMTask             p(x_t | x with 15 % of tokens masked): loss over the masked positions
                        only (Devlin et al. 2019; Bert)
    ClassificationTask  p(c | x): one label per sequence (Bert) or per image (ViT)

Each class names the model families it trains (`families`) and the kinds of `attn.data` dataset
it reads (`data_kinds`); `TASKS` maps the name of `config.task` to its class. Batches are the
dicts of `attn.data.load`. A task builds its model from a family name and a config, computes the
training loss with its metric sums, the evaluation metric sums and one attention map per example
for the heatmaps; `Seq2SeqTask` also decodes (for exact match and BLEU).

Training a `Seq2SeqRNN` passes it the step (scheduled sampling reads it), and hard attention with
`estimator="reinforce"` adds the REINFORCE surrogate of `attn.kernels.hard_training.
reinforce_loss` (Williams 1992; Xu et al. 2015) to the cross-entropy, with the reward
R_b = −(mean token cross-entropy of example b) and the moving-average baseline b kept in a
`ReinforceBaseline` that the train state and its checkpoints hold.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from attn import decoding
from attn.data import BOS_ID, EOS_ID, PAD_ID, mask_tokens, shift_right
from attn.kernels.hard_training import reinforce_loss
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

# Model family name -> (model class, config class).
FAMILIES: dict[str, tuple[type, type]] = {
    "Transformer": (Transformer, TransformerConfig),
    "TransformerLM": (TransformerLM, TransformerLMConfig),
    "Bert": (Bert, BertConfig),
    "ViT": (ViT, ViTConfig),
    "Seq2SeqRNN": (Seq2SeqRNN, Seq2SeqRNNConfig),
}


@dataclasses.dataclass(frozen=True)
class LossOptions:
    """label_smoothing ε and z-loss weight α of the training loss (see `attn.training.losses`)."""

    label_smoothing: float = 0.0
    z_loss: float = 0.0
    reinforce_baseline_decay: float = 0.9


class ReinforceBaseline(nnx.Module):
    """b, the moving average of the REINFORCE rewards, b' = β b + (1 − β) mean(R): state of the
    training (not a parameter) that the train state and its checkpoints hold, so that a resumed
    run goes on with the same baseline."""

    def __init__(self):
        self.value = nnx.Variable(jnp.zeros((), jnp.float32))


@dataclasses.dataclass(frozen=True)
class Task(abc.ABC):
    """A task kind bound to a model family; subclasses say how a batch goes through the model.

    Class attributes:
      name: the value of `config.task` that selects the class (a key of `TASKS`).
      families: the model families the task trains.
      data_kinds: the `attn.data` dataset kinds it reads.

    Fields:
      family: the model family, one of `families`.
      loss: the loss options of training (evaluation reports the plain cross-entropy).
      vocab_size: V, for masked-LM random replacements.
    """

    name: ClassVar[str]
    families: ClassVar[tuple[str, ...]]
    data_kinds: ClassVar[tuple[str, ...]]

    family: str
    loss: LossOptions = LossOptions()
    vocab_size: int = 0

    def __post_init__(self):
        self.check_family(self.family)

    @classmethod
    def check_family(cls, family: str) -> None:
        """Raise a one-line ValueError unless `family` is a model family this task trains."""
        if family not in FAMILIES:
            raise ValueError(f"config.model.family must be one of {list(FAMILIES)}, got {family!r}")
        if family not in cls.families:
            raise ValueError(
                f"config.model.family={family!r} cannot train a {cls.name!r} task; use one of "
                f"{list(cls.families)}"
            )

    def train_state(self, model_config: Any) -> nnx.Module | None:
        """Training state besides the model and optimizer (checkpointed with them), or None."""
        del model_config
        return None

    def build_model(self, model_config: Any, rngs: nnx.Rngs) -> nnx.Module:
        """The family's model built from its config object."""
        model_cls, _ = FAMILIES[self.family]
        return model_cls(model_config, rngs=rngs)

    # ------------------------------------------------------------------ what each kind defines

    @abc.abstractmethod
    def inputs_and_labels(self, batch: Mapping[str, Array], key: Array) -> tuple:
        """(model inputs (a tuple), labels, label weights (bool)) of a batch; `key` draws the
        random parts (masked-LM masks)."""

    @abc.abstractmethod
    def logits(self, model: nnx.Module, inputs: tuple, *, deterministic: bool = True) -> Array:
        """Logits [B, T, V] (or [B, classes]) of the model on the task's inputs, in evaluation
        (`deterministic=True`) or training mode whatever the model's `.train()` / `.eval()`
        mode: the train step asks for training, evaluation for evaluation."""

    # ------------------------------------------------------------------ losses and metrics

    def _weights(self, batch: Mapping[str, Array], label_weights: Array) -> Array:
        """Label weights with the padding rows of the last evaluation batch (valid=False) zeroed."""
        if "valid" not in batch:
            return label_weights
        valid = batch["valid"].reshape(batch["valid"].shape + (1,) * (label_weights.ndim - 1))
        return label_weights & valid

    def training_logits(self, model: nnx.Module, inputs: tuple, step: Array | None) -> Array:
        """Logits of the model in training mode (dropout on) at training step `step`."""
        del step
        return self.logits(model, inputs, deterministic=False)

    def train_loss(
        self,
        model: nnx.Module,
        batch: Mapping[str, Array],
        key: Array,
        *,
        step: Array | None = None,
        baseline: Array | None = None,
    ) -> tuple[Array, Metrics]:
        """The training loss (with label smoothing and z-loss) and its metric sums.

        Args:
          model: the model, in training mode (dropout on).
          batch: a batch of `attn.data.load`.
          key: the step's key (masked-LM masks).
          step: the training step (scheduled sampling).
          baseline: the REINFORCE baseline b of tasks with a `train_state` (a float32 scalar).

        Returns:
          (loss, {"loss": (Σ w ℓ, Σ w), "accuracy": (correct, Σ w)}).
        """
        del baseline
        inputs, labels, weights = self.inputs_and_labels(batch, key)
        weights = self._weights(batch, weights)
        logits = self.training_logits(model, inputs, step)
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
        inputs, labels, weights = self.inputs_and_labels(batch, key)
        weights = self._weights(batch, weights)
        logits = self.logits(model, inputs, deterministic=True)
        loss, count = masked_cross_entropy(logits, labels, weights)
        return {"loss": (loss * count, count), "accuracy": token_accuracy(logits, labels, weights)}

    def attention_maps(self, model: nnx.Module, batch: Mapping[str, Array]) -> Array:
        """Head-averaged self-attention weights [B, T, T] of the last layer on a batch
        (the tokens, or the class token and patches of an image).
        """
        inputs, _, _ = self.inputs_and_labels(batch, jax.random.key(0))
        _, weights = collect_intermediates(self.logits, model, inputs, names=("attention_weights",))
        if not weights:
            raise ValueError(
                f"{type(self).__name__}.attention_maps: the {self.family} model has no attention "
                "layers to show"
            )
        chosen = weights[list(weights)[-1]]
        if isinstance(chosen, tuple):
            chosen = chosen[-1]
        return jnp.mean(chosen.astype(jnp.float32), axis=1)  # [B, N, T, S] -> [B, T, S]


@dataclasses.dataclass(frozen=True)
class Seq2SeqTask(Task):
    """p(y_t | y_<t, x): teacher-forced logits of the targets given the source."""

    name: ClassVar[str] = "seq2seq"
    families: ClassVar[tuple[str, ...]] = ("Transformer", "Seq2SeqRNN")
    data_kinds: ClassVar[tuple[str, ...]] = ("seq2seq",)

    def inputs_and_labels(self, batch, key):
        targets = batch["targets"]
        return (batch["inputs"], shift_right(targets, BOS_ID)), targets, targets != PAD_ID

    def logits(self, model, inputs, *, deterministic=True, step=None):
        src, tgt = inputs
        src_mask, tgt_mask = src != PAD_ID, tgt != PAD_ID
        if self.family == "Seq2SeqRNN":  # a recurrent decoder never reads later positions
            return model(src, tgt, src_mask=src_mask, deterministic=deterministic, step=step)
        tgt_mask = tgt_mask.at[:, 0].set(True)  # BOS is real even for an empty target
        return model(src, tgt, src_mask=src_mask, tgt_mask=tgt_mask, deterministic=deterministic)

    def training_logits(self, model, inputs, step):
        return self.logits(model, inputs, deterministic=False, step=step)

    def train_state(self, model_config):
        """A `ReinforceBaseline` for a Seq2SeqRNN with estimator="reinforce", else None."""
        if self.family == "Seq2SeqRNN" and model_config.estimator == "reinforce":
            return ReinforceBaseline()
        return None

    def train_loss(self, model, batch, key, *, step=None, baseline=None):
        """The cross-entropy; with estimator="reinforce" plus the REINFORCE surrogate

            L = CE − mean_{b,t}[stop_gradient(R_b − b) · w_bt log p(i_bt)],
            R_b = −Σ_t w_bt ℓ_bt / Σ_t w_bt,   b' = β b + (1 − β) mean_b R_b

        (w: the target weights, i_bt: the source position sampled at target step t). The
        metrics then add "reinforce_loss", "reward" (mean R) and "reinforce_baseline" (b',
        count 1), which the train step writes back to the `ReinforceBaseline`.
        """
        if baseline is None:
            return super().train_loss(model, batch, key, step=step)
        inputs, labels, weights = self.inputs_and_labels(batch, key)
        weights = self._weights(batch, weights)
        logits, found = collect_intermediates(
            self.training_logits, model, inputs, step, names=("log_prob",)
        )
        if ("log_prob",) not in found:
            raise ValueError(
                "Seq2SeqTask: a REINFORCE baseline needs a Seq2SeqRNN with estimator='reinforce' "
                "that sows its log_prob in training"
            )
        loss, count = masked_cross_entropy(
            logits,
            labels,
            weights,
            label_smoothing=self.loss.label_smoothing,
            z_loss=self.loss.z_loss,
        )
        w = weights.astype(jnp.float32)
        token_losses = optax.softmax_cross_entropy_with_integer_labels(
            logits.astype(jnp.float32), labels
        )
        reward = -jnp.sum(token_losses * w, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)
        log_prob = found[("log_prob",)] * w  # [B, T]; no term at padded steps
        surrogate, new_baseline = reinforce_loss(
            log_prob, reward, baseline, decay=self.loss.reinforce_baseline_decay
        )
        one = jnp.ones((), jnp.float32)
        metrics = {
            "loss": (loss * count, count),
            "accuracy": token_accuracy(logits, labels, weights),
            "reinforce_loss": (surrogate, one),
            "reward": (jnp.sum(reward), jnp.asarray(reward.shape[0], jnp.float32)),
            "reinforce_baseline": (new_baseline, one),
        }
        return loss + surrogate, metrics

    def predict(
        self,
        model: nnx.Module,
        batch: Mapping[str, Array],
        *,
        max_new_tokens: int,
        beam_size: int = 1,
        return_weights: bool = False,
    ) -> tuple[Array, Array | None]:
        """Decoded targets of a batch (`attn.decoding`: greedy, or beam search for
        beam_size > 1), starting from BOS and stopping at EOS.

        Args:
          model: the seq2seq model.
          batch: a batch with `inputs` int [B, S].
          max_new_tokens: M, the longest output.
          beam_size: the number of beams; 1 is greedy search.
          return_weights: also return the attention over the source behind each token, read
            by running the model on its output, teacher forced (models with attention only).

        Returns:
          (tokens int32 [B, M], pad after EOS; the cross-attention weights float32 [B, M, S]
          behind each token, or None without `return_weights`).
        """
        src = jnp.asarray(batch["inputs"])
        prompt = jnp.full((src.shape[0], 1), BOS_ID, jnp.int32)
        options = dict(
            max_new_tokens=max_new_tokens,
            eos_id=EOS_ID,
            source=src,
            source_mask=src != PAD_ID,
            pad_id=PAD_ID,
        )
        if beam_size > 1:
            tokens = decoding.beam_search(model, prompt, beam_size=beam_size, **options).tokens
        else:
            tokens = decoding.greedy(model, prompt, **options)
        weights = None
        if return_weights:  # the model rerun on its output, teacher forced
            weights = _cross_attention(self.family, *nnx.split(model), src, tokens[:, :-1])
        return tokens[:, 1:], weights


@functools.partial(jax.jit, static_argnums=(0, 1))
def _cross_attention(family: str, graphdef, state, src: Array, tgt_in: Array) -> Array:
    """The attention over the source [B, T, S] behind the logits of `tgt_in` [B, T]: the RNN
    alignment, or the last decoder block's cross-attention averaged over heads."""
    model, src_mask = nnx.merge(graphdef, state), src != PAD_ID
    _, found = collect_intermediates(model, src, tgt_in, src_mask, deterministic=True)
    if family == "Seq2SeqRNN":
        return found[("alignment",)]
    last = [path for path in found if path[-2:] == ("cross_attention", "attention_weights")][-1]
    return jnp.mean(found[last].astype(jnp.float32), axis=1)  # [B, N, T, S] -> [B, T, S]


@dataclasses.dataclass(frozen=True)
class LMTask(Task):
    """p(x_{t+1} | x_≤t): next-token logits of a causal language model."""

    name: ClassVar[str] = "lm"
    families: ClassVar[tuple[str, ...]] = ("TransformerLM",)
    data_kinds: ClassVar[tuple[str, ...]] = ("lm",)

    def inputs_and_labels(self, batch, key):
        return (batch["inputs"],), batch["targets"], batch["targets"] != PAD_ID

    def logits(self, model, inputs, *, deterministic=True):
        (ids,) = inputs
        return model(ids, attention_mask=ids != PAD_ID, deterministic=deterministic)


@dataclasses.dataclass(frozen=True)
class MLMTask(Task):
    """Masked language modelling (Devlin et al. 2019): of the `mask_rate` tokens chosen, 80 %
    become [MASK], 10 % a random token, 10 % stay; the loss counts the chosen positions only.

    Fields (besides `Task`'s):
      mask_rate: the fraction of tokens chosen.
    """

    name: ClassVar[str] = "mlm"
    families: ClassVar[tuple[str, ...]] = ("Bert",)
    data_kinds: ClassVar[tuple[str, ...]] = ("lm",)

    mask_rate: float = 0.15

    def inputs_and_labels(self, batch, key):
        masked = mask_tokens(batch["inputs"], key, vocab_size=self.vocab_size, rate=self.mask_rate)
        return (masked["inputs"],), masked["targets"], masked["weights"] > 0

    def logits(self, model, inputs, *, deterministic=True):
        (ids,) = inputs
        return model(ids, attention_mask=ids != PAD_ID, deterministic=deterministic)


@dataclasses.dataclass(frozen=True)
class ClassificationTask(Task):
    """p(c | x): one label per sequence (Bert's pooled [CLS]) or per image (ViT)."""

    name: ClassVar[str] = "classification"
    families: ClassVar[tuple[str, ...]] = ("Bert", "ViT")
    data_kinds: ClassVar[tuple[str, ...]] = ("classification", "image_classification")

    def inputs_and_labels(self, batch, key):
        data = batch["image"] if "image" in batch else batch["inputs"]
        return (data,), batch["label"], jnp.ones(batch["label"].shape, bool)

    def logits(self, model, inputs, *, deterministic=True):
        (data,) = inputs
        if self.family == "Bert":
            hidden = model.encode(data, attention_mask=data != PAD_ID, deterministic=deterministic)
            return model.classify(hidden, deterministic=deterministic)
        return model(data, deterministic=deterministic)


# `config.task` -> the task class.
TASKS: dict[str, type[Task]] = {
    cls.name: cls for cls in (Seq2SeqTask, LMTask, MLMTask, ClassificationTask)
}


def task_class(name: str) -> type[Task]:
    """The task class of a `config.task` name such as "seq2seq"."""
    if name not in TASKS:
        raise ValueError(f"config.task must be one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name]
