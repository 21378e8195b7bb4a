"""Hard multi-head attention: each query head selects exactly one position.

    i* = argmax_j s_j (evaluation)   or   i* ~ softmax(s) (training),   out = v[i*]

(Xu et al. 2015, "Show, Attend and Tell"). Selecting is not differentiable; in training the
scores learn through the estimator named by `estimator`, one of `attn.kernels.hard.ESTIMATORS`
(the same names, with the same meaning, as in the RNN attention layers):

    straight_through_argmax   one_hot(argmax s), gradient of softmax(s) (Bengio et al. 2013)
    straight_through_sample   one_hot(i), i ~ softmax(s), gradient of softmax(s)
    gumbel_relaxed            softmax((s + g) / τ), g ~ Gumbel (Jang et al. 2017)
    gumbel_straight_through   one_hot(argmax(s + g)), gradient of softmax((s + g) / τ)
    reinforce                 one_hot(i), i ~ softmax(s), no gradient to the scores through the
                              output: train them with `attn.kernels.hard_training.reinforce_loss`
                              on the sown `HardSelection.log_prob` (Williams 1992)

The value and output projections learn through the output with every estimator.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from flax import nnx

from attn.kernels import hard
from attn.kernels.masks import causal_mask, combine_masks
from attn.layers.attention import MultiHeadAttention, weighted_values
from attn.typing import Array, PRNGKey


class HardSelection(NamedTuple):
    """What `HardMultiHeadAttention` selected, per query head (sown as "selection").

    index: int32 [B, N, T], the selected key position (-1 where a query may attend nowhere).
    log_prob: float32 [B, N, T], log p(index) under the softmax of the scores, for REINFORCE.
    entropy: float32 [B, N, T], the entropy of that softmax, for the entropy bonus.
    """

    index: Array
    log_prob: Array
    entropy: Array


class HardMultiHeadAttention(MultiHeadAttention):
    """`MultiHeadAttention` whose attention step selects one position per query head.

    In evaluation (`deterministic` True) the position is the argmax of the scores (no gradient to
    the scores); in training (`deterministic` False) the weights are those of the layer's
    `estimator` (see the module docstring), drawing from the `key` argument of the call, else
    from the "dropout" stream of the `rngs` given at construction. Dropout, when set, applies to
    the selected weights in training. The mode follows `MultiHeadAttention`'s convention: the
    layer is built in training mode, `.eval()` / `.train()` switch it, and a call's
    `deterministic=` overrides it.

    Looking inside: with `sow_weights` on, every call sows "attention_weights" [B, N, T, S]
    (float32) and "selection" (`HardSelection`); a REINFORCE loss reads the latter with
    `attn.layers.collect_intermediates(..., names=("selection",))`.
    """

    def __init__(
        self, num_heads: int, model_dim: int, *, estimator: str, temperature=1.0, **kwargs
    ):
        """
        Args:
          num_heads: N query heads.
          model_dim: D, width of the input and the output.
          estimator: the training estimator, a name in `attn.kernels.hard.ESTIMATORS`.
          temperature: τ > 0 of the Gumbel estimators when a call gives none.
          **kwargs: the other arguments of `MultiHeadAttention` (heads, score, dropout, rngs...).
        """
        hard.check_estimator("HardMultiHeadAttention", "estimator", estimator)
        if not temperature > 0:
            raise ValueError(
                f"HardMultiHeadAttention: temperature must be > 0, got {temperature!r}"
            )
        super().__init__(num_heads, model_dim, **kwargs)
        self.estimator = estimator
        self.temperature = temperature

    def __call__(
        self,
        x: Array,
        context: Array | None = None,
        *,
        mask: Array | None = None,
        bias: Array | None = None,
        is_causal: bool = False,
        positions: Array | None = None,
        decode: bool = False,
        deterministic: bool | None = None,
        key: PRNGKey | None = None,
        temperature: float | Array | None = None,
    ) -> Array:
        """Attend from `x` [B, T, D] to `context` [B, S, Dc] (default: `x` itself), one position
        per query head.

        Args:
          x, context, mask, bias, is_causal, positions, decode, deterministic: as for
            `MultiHeadAttention`.
          key: the `jax.random` key of the selection in training; default: drawn from the
            module's "dropout" stream.
          temperature: τ > 0 of the Gumbel estimators for this call (a number or a traced scalar,
            e.g. from `attn.kernels.hard_training.gumbel_temperature`); default: the layer's.

        Returns:
          out [B, T, D].
        """
        return self._run(
            x,
            context,
            mask,
            bias,
            is_causal,
            positions,
            decode,
            deterministic,
            key=key,
            temperature=temperature,
        )

    def select(
        self,
        logits: Array,
        mask: Array | None,
        *,
        key: PRNGKey | None = None,
        deterministic: bool | None = None,
        temperature: float | Array | None = None,
    ) -> tuple[Array, HardSelection]:
        """The selection step: one-hot (or, for "gumbel_relaxed", relaxed) weights from scores.

            evaluation: w = one_hot(argmax s);   training: w = ESTIMATORS[estimator].weights(s)

        Args:
          logits: [..., S] the scores s ([B, N, T, S] inside the layer).
          mask: bool, broadcastable to `logits`, True = may be selected; None = all.
          key: a `jax.random` key for the sampling estimators in training; default: drawn from
            the "dropout" stream.
          deterministic: evaluation (argmax) when True, training (the estimator) when False;
            None: the layer's mode.
          temperature: τ of the Gumbel estimators; default: the layer's.

        Returns:
          (weights [..., S] float32, `HardSelection` with fields [...]: the argmax in evaluation
          and for "straight_through_argmax", else the sampled position).
        """
        deterministic = self.deterministic if deterministic is None else deterministic
        if deterministic or self.estimator == "straight_through_argmax":
            index = hard.argmax_index(logits, mask)
        if deterministic:
            weights = hard.argmax_weights(logits, mask)
        else:
            if hard.needs_key(self.estimator):
                key = self.dropout.rngs() if key is None else key
                index = hard.sample_index(key, logits, mask)
            weights = hard.training_weights(
                self.estimator,
                logits,
                mask,
                key=key,
                temperature=self.temperature if temperature is None else temperature,
            )
        selection = HardSelection(
            index=index,
            log_prob=hard.selection_log_prob(logits, index, mask),
            entropy=hard.selection_entropy(logits, mask),
        )
        return weights, selection

    def _attend(self, q, k, v, mask, bias, is_causal, deterministic, *, key, temperature):
        """The attention step: q [B, T, N, H] over k, v [B, S, K, H] -> out [B, T, N, H]."""
        T, S = q.shape[1], k.shape[1]
        logits = self._score_logits(q, k)  # [B, N, T, S]
        if bias is not None:
            logits = logits + bias
        full_mask = combine_masks(mask, causal_mask(T, S) if is_causal else None)
        if full_mask is not None:
            full_mask = jnp.broadcast_to(full_mask, logits.shape)
        weights, selection = self.select(
            logits, full_mask, key=key, deterministic=deterministic, temperature=temperature
        )
        if not deterministic and self.dropout_rate > 0.0:
            weights = self.dropout(weights, deterministic=False)
        if self.sow_weights:
            self.sow(nnx.Intermediate, "attention_weights", weights)
            self.sow(nnx.Intermediate, "selection", selection)
        return weighted_values(weights, v, self.num_heads).astype(v.dtype)
