"""Evaluation metrics: token accuracy, perplexity, exact match and BLEU.

    accuracy     = Σ_t w_t 1[argmax_v z_{t,v} = y_t] / Σ_t w_t
    perplexity   = exp(Σ_t w_t ℓ_t / Σ_t w_t)          (ℓ the unsmoothed cross-entropy)
    exact match  = fraction of sequences whose tokens up to end-of-sequence all equal the target
    BLEU         = BP · exp(Σ_n ¼ log p_n)    (Papineni et al. 2002; sacrebleu, Post 2018)

Sums are accumulated over batches with `MetricSums` so that a mean over an evaluation set weighs
every token (or sequence) once, whatever the batch boundaries.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np
import sacrebleu

from attn.typing import Array, ArrayLike


def token_accuracy(
    logits: ArrayLike, labels: ArrayLike, mask: ArrayLike | None = None
) -> tuple[Array, Array]:
    """Correct predictions among weighted positions.

    Args:
      logits: float [B, T, V] (or [B, V]).
      labels: int [B, T] (or [B]).
      mask: [B, T] (or [B]), 1/True = counted; default all 1.

    Returns:
      (number correct, number counted), float32 scalars.
    """
    logits, labels = jnp.asarray(logits), jnp.asarray(labels)
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"token_accuracy: logits [..., V] must have labels' shape {labels.shape} in front, "
            f"got {logits.shape}"
        )
    weights = jnp.ones(labels.shape) if mask is None else jnp.asarray(mask)
    weights = weights.astype(jnp.float32)
    if weights.shape != labels.shape:
        raise ValueError(
            f"token_accuracy: mask must have labels' shape {labels.shape}, got {weights.shape}"
        )
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    return jnp.sum(correct * weights), jnp.sum(weights)


def perplexity(mean_cross_entropy: float) -> float:
    """exp(mean cross-entropy in nats); inf when it overflows.

    Args:
      mean_cross_entropy: the unsmoothed per-token cross-entropy, >= 0.

    Returns:
      The perplexity, >= 1.
    """
    if not mean_cross_entropy >= 0:
        raise ValueError(f"perplexity: mean_cross_entropy must be >= 0, got {mean_cross_entropy}")
    return math.exp(mean_cross_entropy) if mean_cross_entropy < 700 else math.inf


def truncate_at_eos(tokens: Sequence[int], eos_id: int | None) -> list[int]:
    """The tokens before the first `eos_id` (all of them when there is none or `eos_id` is None)."""
    tokens = [int(t) for t in tokens]
    if eos_id is not None and eos_id in tokens:
        return tokens[: tokens.index(eos_id)]
    return tokens


def exact_match(
    predictions: ArrayLike, targets: ArrayLike, *, eos_id: int | None, pad_id: int = 0
) -> tuple[int, int]:
    """Sequences predicted exactly: each row compared up to its end-of-sequence, padding dropped.

    Args:
      predictions: int [B, T1] decoded tokens (without the start token).
      targets: int [B, T2] reference tokens (may end with `eos_id`, then padding `pad_id`).
      eos_id: end-of-sequence id; None when sequences have no end marker.
      pad_id: padding id, dropped from the end of both.

    Returns:
      (number of exact matches, number of sequences).
    """
    predictions, targets = np.asarray(predictions), np.asarray(targets)
    if predictions.ndim != 2 or targets.ndim != 2 or len(predictions) != len(targets):
        raise ValueError(
            "exact_match: predictions [B, T1] and targets [B, T2] must be 2-D with one batch B, "
            f"got {predictions.shape} and {targets.shape}"
        )
    matches = 0
    for pred, ref in zip(predictions, targets, strict=True):
        p, r = truncate_at_eos(pred, eos_id), truncate_at_eos(ref, eos_id)
        while p and p[-1] == pad_id:
            p.pop()
        while r and r[-1] == pad_id:
            r.pop()
        matches += p == r
    return matches, len(targets)


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU of detokenized text with sacrebleu's defaults (13a tokenization, 4-grams).

    Args:
      hypotheses: one string per sentence.
      references: one reference string per sentence.

    Returns:
      BLEU in [0, 100].
    """
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("bleu: hypotheses and references must be sequences of strings, not str")
    if len(hypotheses) != len(references):
        raise ValueError(
            f"bleu: one reference per hypothesis needed, got {len(hypotheses)} hypotheses and "
            f"{len(references)} references"
        )
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)


@dataclasses.dataclass
class MetricSums:
    """Running (numerator, denominator) pairs: `add(name, total, count)`, `means()`."""

    sums: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def add(self, name: str, total: float, count: float) -> None:
        """Add `total` over `count` items to the metric `name`."""
        pair = self.sums.setdefault(name, [0.0, 0.0])
        pair[0] += float(total)
        pair[1] += float(count)

    def add_all(self, values: Mapping[str, tuple[float, float]]) -> None:
        """`add` every (total, count) pair of a mapping."""
        for name, (total, count) in values.items():
            self.add(name, total, count)

    def means(self) -> dict[str, float]:
        """total / count for every metric with count > 0."""
        return {name: t / c for name, (t, c) in self.sums.items() if c > 0}
