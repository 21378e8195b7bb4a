"""Attention for RNN encoder-decoders: one query per example over its source positions.

    e_j = score(q, h_j),   α = softmax(e) over the real source positions,   c = Σ_j α_j h_j

`BahdanauAttention` scores with the additive form v · tanh(q W_q + h_j W_k) (Bahdanau et al.
2015); `LuongAttention` with "dot" q · h_j, "general" q W h_jᵀ or "concat" v · tanh(W [q; h_j])
(Luong et al. 2015), or "scaled_dot" q · h_j / √H (Vaswani et al. 2017). The score functions are
those of `attn.kernels.scores.SCORES`, the ones multi-head attention uses ("concat" is the
additive score, its W split into W_q and W_k); padded source positions get weight exactly 0
(`attn.kernels.attention.masked_softmax`).

Hard attention (`estimator=`): each decoder step reads one source position, α = one_hot(j*),
trained with the estimator of that name in `attn.kernels.hard.ESTIMATORS` (the names mean the same
in `attn.layers.HardMultiHeadAttention`). "reinforce" also returns log p(j*) so that a loss can add
the score-function term (Williams 1992; Xu et al. 2015). In evaluation every estimator selects the
argmax.

Training and evaluation: a layer's `deterministic` attribute is its mode, False (training) when
built, as for `nnx.Dropout`; `.eval()` / `.train()` (on the layer or on a model that holds it) and
`nnx.view(model, deterministic=...)` set it, and a call's `deterministic=` overrides it. Soft
attention (`estimator=None`) is the same in both modes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from attn.kernels import hard
from attn.kernels.attention import masked_softmax
from attn.kernels.scores import SCORES
from attn.layers.recurrent import check_padding_mask
from attn.typing import Array, ArrayLike, DType, PRNGKey


class Attended(NamedTuple):
    """What an RNN attention layer returns.

    Fields:
      context: [B, Hv] the context vector c = Σ_j α_j v_j.
      weights: [B, S] the alignment α, float32; exactly 0 at padded positions.
      log_prob: [B] log p(j*) of the sampled positions for `estimator="reinforce"` in training,
        else None.
    """

    context: Array
    weights: Array
    log_prob: Array | None


def _normal(fan_in: int) -> nnx.Initializer:
    return nnx.initializers.normal(fan_in**-0.5)


class RNNAttention(nnx.Module):
    """Single-query attention over a batch of encoder annotations; subclasses pick the score.

    Subclasses set `score` (a name in `SCORES`) and hold that score's parameters, whose names are
    its keyword arguments (`W`, `W_q`, `W_k`, `v`).

    Attributes:
      deterministic: the mode (see the module docstring): True evaluates, False trains.
    """

    score: str
    param_names: tuple[str, ...] = ()

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        *,
        estimator: str | None = None,
        temperature: float = 1.0,
        deterministic: bool = False,
        dtype: DType | None = None,
    ):
        name = type(self).__name__
        if estimator is not None:
            hard.check_estimator(name, "estimator", estimator)
        if query_dim < 1 or key_dim < 1:
            raise ValueError(
                f"{name}: query_dim and key_dim must be >= 1, got {query_dim} and {key_dim}"
            )
        if not temperature > 0:
            raise ValueError(f"{name}: temperature must be > 0, got {temperature!r}")
        self.query_dim, self.key_dim = query_dim, key_dim
        self.estimator, self.temperature, self.dtype = estimator, temperature, dtype
        self.deterministic = deterministic

    def set_view(self, deterministic: bool | None = None) -> None:
        """Used by `nnx.view(model, deterministic=...)` to switch the mode of every such layer."""
        if deterministic is not None:
            self.deterministic = deterministic

    def logits(self, query: Array, keys: Array) -> Array:
        """e[b, j] = score(query[b], keys[b, j]): query [B, Hq], keys [B, S, Hk] -> e [B, S]."""
        score = SCORES[self.score]
        params = {name: getattr(self, name)[...] for name in self.param_names}
        if self.dtype is not None:
            params = {name: p.astype(self.dtype) for name, p in params.items()}
            query, keys = query.astype(self.dtype), keys.astype(self.dtype)
        # score(q[1, Hq], k[S, Hk]) -> [1, S], over the batch.
        return jax.vmap(lambda q, k: score(q[None], k, **params)[0])(query, keys)

    def __call__(
        self,
        query: ArrayLike,
        keys: ArrayLike,
        values: ArrayLike | None = None,
        mask: ArrayLike | None = None,
        *,
        key: PRNGKey | None = None,
        deterministic: bool | None = None,
    ) -> Attended:
        """Attend from one query per example to its source positions.

        Args:
          query: [B, Hq] the decoder state.
          keys: [B, S, Hk] the encoder annotations h_j.
          values: [B, S, Hv] what is averaged; default: `keys`.
          mask: [B, S], 1/True = real source position; None = all real.
          key: a `jax.random` key, needed in training by the estimators that sample
            (`attn.kernels.hard.needs_key`).
          deterministic: evaluation (every estimator selects the argmax, no randomness) when
            True, training when False; None: the layer's mode.

        Returns:
          `Attended(context [B, Hv], weights [B, S] float32, log_prob [B] or None)`.
        """
        name = type(self).__name__
        query, keys = jnp.asarray(query), jnp.asarray(keys)
        values = keys if values is None else jnp.asarray(values)
        for arg, x in (("query", query), ("keys", keys), ("values", values)):
            if not jnp.issubdtype(x.dtype, jnp.floating):
                raise TypeError(f"{name}: {arg} must be a floating-point array, got {x.dtype}")
        if query.ndim != 2 or query.shape[-1] != self.query_dim:
            raise ValueError(
                f"{name}: query must have shape [B, Hq] with Hq={self.query_dim}, got shape "
                f"{query.shape}"
            )
        B = query.shape[0]
        if keys.ndim != 3 or keys.shape[0] != B or keys.shape[-1] != self.key_dim:
            raise ValueError(
                f"{name}: keys must have shape [B, S, Hk] = [{B}, S, {self.key_dim}], got shape "
                f"{keys.shape}"
            )
        S = keys.shape[1]
        if values.ndim != 3 or values.shape[:2] != (B, S):
            raise ValueError(
                f"{name}: values must have shape [B, S, Hv] = [{B}, {S}, Hv], got shape "
                f"{values.shape}"
            )
        mask = check_padding_mask(name, "mask", mask, B, S)
        logits = self.logits(query, keys)
        weights, log_prob = self.select(logits, mask, key=key, deterministic=deterministic)
        context = jnp.einsum(
            "BS,BSH->BH", weights.astype(values.dtype), values, preferred_element_type=logits.dtype
        )
        return Attended(context.astype(values.dtype), weights, log_prob)

    def select(
        self,
        logits: Array,
        mask: Array | None,
        *,
        key: PRNGKey | None = None,
        deterministic: bool | None = None,
    ) -> tuple[Array, Array | None]:
        """The attention step: weights from the scores, soft or with the layer's estimator.

            soft: α = softmax(e) over the real positions;   evaluation: α = one_hot(argmax e);
            training: α = ESTIMATORS[estimator].weights(e, mask, key, temperature)

        Args:
          logits: [B, S] the scores e.
          mask: bool [B, S], True = real source position; None = all real.
          key: a `jax.random` key, needed in training by the estimators that sample.
          deterministic: evaluation when True, training when False; None: the layer's mode.

        Returns:
          (weights [B, S] float32, log_prob [B] of the sampled positions for "reinforce" in
          training, else None).
        """
        if self.estimator is None:
            return masked_softmax(logits, mask), None
        deterministic = self.deterministic if deterministic is None else deterministic
        if deterministic:
            return hard.argmax_weights(logits, mask), None
        if hard.needs_key(self.estimator) and key is None:
            raise ValueError(
                f"{type(self).__name__}: estimator={self.estimator!r} samples positions in "
                "training and needs key=, e.g. key=jax.random.key(0) (or evaluate: .eval() or "
                "deterministic=True)"
            )
        weights = hard.training_weights(
            self.estimator, logits, mask, key=key, temperature=self.temperature
        )
        log_prob = None
        if self.estimator == "reinforce":
            log_prob = hard.selection_log_prob(logits, hard.sample_index(key, logits, mask), mask)
        return weights, log_prob

    def _init_additive_score(
        self,
        query_dim: int,
        key_dim: int,
        attention_dim: int | None,
        fan_ins: tuple[int, int],
        param_dtype: DType,
        rngs: nnx.Rngs,
    ) -> None:
        """Creates the parameters of the additive score, W_q [Hq, A], W_k [Hk, A] and v [A]
        (A = `attention_dim`, default Hq), each ~ N(0, 1 / fan_in); `fan_ins` are those of W_q
        and W_k."""
        A = query_dim if attention_dim is None else attention_dim
        if A < 1:
            raise ValueError(f"{type(self).__name__}: attention_dim must be >= 1, got {A}")
        fan_q, fan_k = fan_ins
        self.W_q = nnx.Param(_normal(fan_q)(rngs.params(), (query_dim, A), param_dtype))
        self.W_k = nnx.Param(_normal(fan_k)(rngs.params(), (key_dim, A), param_dtype))
        self.v = nnx.Param(_normal(A)(rngs.params(), (A,), param_dtype))


class BahdanauAttention(RNNAttention):
    """Additive attention (Bahdanau et al. 2015), e_j = v · tanh(q W_q + h_j W_k).

    The query is the previous decoder state s_{t-1}. Parameters: `W_q[Hq, A]`, `W_k[Hk, A]`,
    `v[A]` (the arguments of `attn.kernels.scores.additive`).
    """

    score = "additive"
    param_names = ("W_q", "W_k", "v")

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        attention_dim: int | None = None,
        *,
        estimator: str | None = None,
        temperature: float = 1.0,
        deterministic: bool = False,
        dtype: DType | None = None,
        param_dtype: DType = jnp.float32,
        rngs: nnx.Rngs,
    ):
        """
        Args:
          query_dim: Hq, width of the decoder state.
          key_dim: Hk, width of the encoder annotations.
          attention_dim: A, the hidden width of the score; default Hq.
          estimator: None (soft) or a name in `attn.kernels.hard.ESTIMATORS` (hard attention).
          temperature: τ of the Gumbel estimators.
          deterministic: the initial mode: False trains, True evaluates (the argmax).
          dtype: compute dtype of the score; default: that of the inputs and parameters.
          param_dtype: parameter dtype.
          rngs: parameter random stream.
        """
        super().__init__(
            query_dim,
            key_dim,
            estimator=estimator,
            temperature=temperature,
            deterministic=deterministic,
            dtype=dtype,
        )
        fan_ins = (query_dim, key_dim)
        self._init_additive_score(query_dim, key_dim, attention_dim, fan_ins, param_dtype, rngs)


LUONG_SCORES = {
    "dot": "dot",
    "scaled_dot": "scaled_dot",
    "general": "general",
    "concat": "additive",
}
"""Luong et al.'s score names (and "scaled_dot") -> the `SCORES` function that computes them."""

DOT_SCORES = ("dot", "scaled_dot")
"""The Luong scores without parameters, which need Hq = Hk."""


class LuongAttention(RNNAttention):
    """Multiplicative and concat attention (Luong et al. 2015), with the current decoder state
    s_t as the query:

        dot:        e_j = s_t · h_j                   (needs Hq = Hk)
        scaled_dot: e_j = s_t · h_j / √H              (needs Hq = Hk = H; Vaswani et al. 2017)
        general:    e_j = s_t W h_jᵀ,                 `W[Hq, Hk]`
        concat:     e_j = v · tanh(W [s_t; h_j]) = v · tanh(s_t W_q + h_j W_k),
                    `W_q[Hq, A]`, `W_k[Hk, A]`, `v[A]`

    "scaled_dot" is not in Luong et al.; it is the dot score with the 1/√H of Transformer
    attention, which keeps the logits' variance near 1 when s_t and h_j have unit-variance
    components (the dot product's variance grows as H).
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        score: str = "general",
        *,
        attention_dim: int | None = None,
        estimator: str | None = None,
        temperature: float = 1.0,
        deterministic: bool = False,
        dtype: DType | None = None,
        param_dtype: DType = jnp.float32,
        rngs: nnx.Rngs,
    ):
        """
        Args:
          query_dim: Hq, width of the decoder state.
          key_dim: Hk, width of the encoder annotations.
          score: "dot", "scaled_dot", "general" or "concat".
          attention_dim: A, the hidden width of the "concat" score; default Hq.
          estimator, temperature, deterministic, dtype, param_dtype, rngs: as for
            `BahdanauAttention`.
        """
        if score not in LUONG_SCORES:
            raise ValueError(
                f"LuongAttention: unknown score {score!r}; expected one of {sorted(LUONG_SCORES)}"
            )
        super().__init__(
            query_dim,
            key_dim,
            estimator=estimator,
            temperature=temperature,
            deterministic=deterministic,
            dtype=dtype,
        )
        if score in DOT_SCORES and query_dim != key_dim:
            raise ValueError(
                f"LuongAttention: the {score} score needs query_dim == key_dim, got query_dim="
                f"{query_dim} and key_dim={key_dim}; use score='general' or 'concat'"
            )
        self.luong_score = score
        self.score = LUONG_SCORES[score]
        if score == "general":
            self.param_names = ("W",)
            self.W = nnx.Param(_normal(key_dim)(rngs.params(), (query_dim, key_dim), param_dtype))
        if score == "concat":
            self.param_names = ("W_q", "W_k", "v")
            fan_ins = (query_dim + key_dim,) * 2  # both halves of W [Hq + Hk, A]
            self._init_additive_score(query_dim, key_dim, attention_dim, fan_ins, param_dtype, rngs)
