"""Attention for RNN encoder-decoders, and the decoder cells built on it.

    e_j = score(q, h_j),   α = softmax(e) over the real source positions,   c = Σ_j α_j h_j

`BahdanauAttention` scores with the additive form v · tanh(q W_q + h_j W_k) (Bahdanau et al.
2015); `LuongAttention` with "dot" q · h_j, "general" q W h_jᵀ or "concat" v · tanh(W [q; h_j])
(Luong et al. 2015). The score functions are those of `attn.kernels.scores.SCORES`, the ones
multi-head attention uses ("concat" is the additive score, its W split into W_q and W_k); padded
source positions get weight exactly 0 (`attn.kernels.attention.masked_softmax`).

Hard attention (`hard=`): each decoder step reads one source position, α = one_hot(j*), using the
estimators of `attn.kernels.hard`. In training (`deterministic=False`): "straight_through"
selects the argmax with the softmax's gradient (Bengio et al. 2013); "gumbel" the straight-through
Gumbel-softmax sample (Jang et al. 2017); "reinforce" samples j* ~ softmax(e) and returns
log p(j*) so that a loss can add the score-function term (Williams 1992; Xu et al. 2015). At
evaluation every hard mode selects the argmax.

Decoder cells, one per way of using the source (`DECODER_CELLS`):

    none (bottleneck):  s_t = RNN([y_{t-1}; c], s_{t-1}), c = the final encoder state
                        (Sutskever et al. 2014; Cho et al. 2014);             features s_t
    bahdanau:           c_t = Attend(s_{t-1}, h),  s_t = RNN([y_{t-1}; c_t], s_{t-1});
                                                                          features [s_t; c_t]
    luong:              s_t = RNN([y_{t-1}; h̃_{t-1}], s_{t-1}) (input feeding),
                        c_t = Attend(s_t, h),  h̃_t = tanh(W_c [c_t; s_t]);     features h̃_t
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from attn.kernels import hard as hard_lib
from attn.kernels.attention import masked_softmax
from attn.kernels.scores import SCORES
from attn.layers.recurrent import check_cell_name, check_padding_mask
from attn.typing import Array, ArrayLike, DType, PRNGKey

HARD_MODES = (None, "straight_through", "gumbel", "reinforce")
"""Values of `hard`: None for soft attention, else the training-time estimator."""

NEEDS_KEY = ("gumbel", "reinforce")
"""Hard modes that draw random positions in training and therefore need a key."""


class Attended(NamedTuple):
    """What an RNN attention layer returns.

    Fields:
      context: [B, Hv] the context vector c = Σ_j α_j v_j.
      weights: [B, S] the alignment α, float32; exactly 0 at padded positions.
      log_prob: [B] log p(j*) of the sampled positions for `hard="reinforce"` in training,
        else None.
    """

    context: Array
    weights: Array
    log_prob: Array | None


def _soft(logits, mask, key, temperature):
    return masked_softmax(logits, mask), None


def _straight_through(logits, mask, key, temperature):
    return hard_lib.straight_through_weights(logits, mask), None


def _gumbel(logits, mask, key, temperature):
    return hard_lib.gumbel_softmax_weights(key, logits, temperature, mask, hard=True), None


def _reinforce(logits, mask, key, temperature):
    index = hard_lib.sample_index(key, logits, mask)
    weights = jax.lax.stop_gradient(jax.nn.one_hot(index, logits.shape[-1], dtype=logits.dtype))
    return weights, hard_lib.selection_log_prob(logits, index, mask)


TRAINING_WEIGHTS = {
    None: _soft,
    "straight_through": _straight_through,
    "gumbel": _gumbel,
    "reinforce": _reinforce,
}
"""Hard mode -> (logits [B, S], mask [B, S], key, temperature) -> (weights [B, S], log_prob)."""


def check_hard(owner: str, hard: str | None) -> None:
    """Raise a ValueError listing `HARD_MODES` unless `hard` is one of them."""
    if hard not in HARD_MODES:
        raise ValueError(f"{owner}: unknown hard={hard!r}; expected one of {list(HARD_MODES)}")


def _normal(fan_in: int) -> nnx.Initializer:
    return nnx.initializers.normal(fan_in**-0.5)


class RNNAttention(nnx.Module):
    """Single-query attention over a batch of encoder annotations; subclasses pick the score.

    Subclasses set `score` (a name in `SCORES`) and hold that score's parameters, whose names are
    its keyword arguments (`W`, `W_q`, `W_k`, `v`).
    """

    score: str
    param_names: tuple[str, ...] = ()

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        *,
        hard: str | None = None,
        temperature: float = 1.0,
        dtype: DType | None = None,
    ):
        name = type(self).__name__
        check_hard(name, hard)
        if query_dim < 1 or key_dim < 1:
            raise ValueError(
                f"{name}: query_dim and key_dim must be >= 1, got {query_dim} and {key_dim}"
            )
        if not temperature > 0:
            raise ValueError(f"{name}: temperature must be > 0, got {temperature!r}")
        self.query_dim, self.key_dim = query_dim, key_dim
        self.hard, self.temperature, self.dtype = hard, temperature, dtype

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
        deterministic: bool = True,
    ) -> Attended:
        """Attend from one query per example to its source positions.

        Args:
          query: [B, Hq] the decoder state.
          keys: [B, S, Hk] the encoder annotations h_j.
          values: [B, S, Hv] what is averaged; default: `keys`.
          mask: [B, S], 1/True = real source position; None = all real.
          key: a `jax.random` key, needed in training by `hard="gumbel"` and `"reinforce"`.
          deterministic: evaluation mode (hard modes select the argmax, no randomness).

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
        if not deterministic and self.hard in NEEDS_KEY and key is None:
            raise ValueError(
                f"{name}: hard={self.hard!r} samples positions in training and needs key=, "
                "e.g. key=jax.random.key(0)"
            )
        logits = self.logits(query, keys)
        if deterministic and self.hard is not None:
            weights, log_prob = hard_lib.argmax_weights(logits, mask), None
        else:
            weights, log_prob = TRAINING_WEIGHTS[self.hard](logits, mask, key, self.temperature)
        context = jnp.einsum(
            "BS,BSH->BH", weights.astype(values.dtype), values, preferred_element_type=logits.dtype
        )
        return Attended(context.astype(values.dtype), weights, log_prob)


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
        hard: str | None = None,
        temperature: float = 1.0,
        dtype: DType | None = None,
        param_dtype: DType = jnp.float32,
        rngs: nnx.Rngs,
    ):
        """
        Args:
          query_dim: Hq, width of the decoder state.
          key_dim: Hk, width of the encoder annotations.
          attention_dim: A, the hidden width of the score; default Hq.
          hard: None (soft) or a hard mode of `HARD_MODES`.
          temperature: τ of the Gumbel-softmax (`hard="gumbel"`).
          dtype: compute dtype of the score; default: that of the inputs and parameters.
          param_dtype: parameter dtype.
          rngs: parameter random stream.
        """
        super().__init__(query_dim, key_dim, hard=hard, temperature=temperature, dtype=dtype)
        A = query_dim if attention_dim is None else attention_dim
        if A < 1:
            raise ValueError(f"BahdanauAttention: attention_dim must be >= 1, got {A}")
        self.W_q = nnx.Param(_normal(query_dim)(rngs.params(), (query_dim, A), param_dtype))
        self.W_k = nnx.Param(_normal(key_dim)(rngs.params(), (key_dim, A), param_dtype))
        self.v = nnx.Param(_normal(A)(rngs.params(), (A,), param_dtype))


LUONG_SCORES = {"dot": "dot", "general": "general", "concat": "additive"}
"""Luong et al.'s score names -> the `SCORES` function that computes them."""


class LuongAttention(RNNAttention):
    """Multiplicative and concat attention (Luong et al. 2015), with the current decoder state
    s_t as the query:

        dot:     e_j = s_t · h_j                      (needs Hq = Hk)
        general: e_j = s_t W h_jᵀ,                    `W[Hq, Hk]`
        concat:  e_j = v · tanh(W [s_t; h_j]) = v · tanh(s_t W_q + h_j W_k),
                 `W_q[Hq, A]`, `W_k[Hk, A]`, `v[A]`
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        score: str = "general",
        *,
        attention_dim: int | None = None,
        hard: str | None = None,
        temperature: float = 1.0,
        dtype: DType | None = None,
        param_dtype: DType = jnp.float32,
        rngs: nnx.Rngs,
    ):
        """
        Args:
          query_dim: Hq, width of the decoder state.
          key_dim: Hk, width of the encoder annotations.
          score: "dot", "general" or "concat".
          attention_dim: A, the hidden width of the "concat" score; default Hq.
          hard: None (soft) or a hard mode of `HARD_MODES`.
          temperature: τ of the Gumbel-softmax (`hard="gumbel"`).
          dtype: compute dtype of the score; default: that of the inputs and parameters.
          param_dtype: parameter dtype.
          rngs: parameter random stream.
        """
        if score not in LUONG_SCORES:
            raise ValueError(
                f"LuongAttention: unknown score {score!r}; expected one of {sorted(LUONG_SCORES)}"
            )
        super().__init__(query_dim, key_dim, hard=hard, temperature=temperature, dtype=dtype)
        if score == "dot" and query_dim != key_dim:
            raise ValueError(
                f"LuongAttention: the dot score needs query_dim == key_dim, got query_dim="
                f"{query_dim} and key_dim={key_dim}; use score='general' or 'concat'"
            )
        self.luong_score = score
        self.score = LUONG_SCORES[score]
        if score == "general":
            self.param_names = ("W",)
            self.W = nnx.Param(_normal(key_dim)(rngs.params(), (query_dim, key_dim), param_dtype))
        if score == "concat":
            A = query_dim if attention_dim is None else attention_dim
            if A < 1:
                raise ValueError(f"LuongAttention: attention_dim must be >= 1, got {A}")
            fan_in = query_dim + key_dim
            self.param_names = ("W_q", "W_k", "v")
            self.W_q = nnx.Param(_normal(fan_in)(rngs.params(), (query_dim, A), param_dtype))
            self.W_k = nnx.Param(_normal(fan_in)(rngs.params(), (key_dim, A), param_dtype))
            self.v = nnx.Param(_normal(A)(rngs.params(), (A,), param_dtype))


# ------------------------------------------------------------------------------------ decoders


class DecoderStep(NamedTuple):
    """What one step of a decoder cell returns besides its new carry.

    Fields:
      features: [B, F] what the output layer reads (`features_dim` = F).
      weights: [B, S] the alignment, or None for the bottleneck decoder.
      gates: {name: [B, H]} the gate activations of the top layer ("input", "forget", "output"
        for the LSTM; "reset", "update" for the GRU).
      log_prob: [B] log p(j*) for `hard="reinforce"` in training, else None.
    """

    features: Array
    weights: Array | None
    gates: dict[str, Array]
    log_prob: Array | None


class DecoderCell(nnx.Module):
    """A stack of L GRU or LSTM cells run one target step at a time; subclasses decide how the
    source enters (see the module docstring).

    The carry is a dict of arrays with the batch on axis 0: "hidden" [B, L, H] (and "cell"
    [B, L, H] for the LSTM; "feed" [B, H] for Luong input feeding). The memory is a dict:
    "annotations" [B, S, Hm] (the encoder outputs), "mask" bool [B, S] (True = real source
    position) and "summary" [B, Hm] (the final encoder state, the bottleneck's context).
    """

    def __init__(
        self,
        cell: str,
        input_dim: int,
        hidden_dim: int,
        memory_dim: int,
        *,
        num_layers: int = 1,
        extra_input_dim: int = 0,
        dtype: DType | None = None,
        param_dtype: DType = jnp.float32,
        rngs: nnx.Rngs,
    ):
        name = type(self).__name__
        cell_class = check_cell_name(name, cell)
        if min(input_dim, hidden_dim, memory_dim, num_layers) < 1:
            raise ValueError(
                f"{name}: input_dim, hidden_dim, memory_dim and num_layers must be >= 1, got "
                f"{input_dim}, {hidden_dim}, {memory_dim}, {num_layers}"
            )
        self.cell_name = cell
        self.input_dim, self.hidden_dim, self.memory_dim = input_dim, hidden_dim, memory_dim
        self.num_layers = num_layers
        common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.cells = nnx.List(
            [
                cell_class(
                    input_dim + extra_input_dim if layer == 0 else hidden_dim, hidden_dim, **common
                )
                for layer in range(num_layers)
            ]
        )

    @property
    def features_dim(self) -> int:
        """F, the width of `DecoderStep.features`."""
        return self.hidden_dim

    def initial_carry(self, hidden: ArrayLike, cell: ArrayLike | None = None) -> dict[str, Array]:
        """The carry before the first target token.

        Args:
          hidden: [B, L, H] the initial states of the layers.
          cell: [B, L, H] the initial LSTM memory cells; None = zeros (ignored by the GRU).

        Returns:
          the carry dict.
        """
        name = f"{type(self).__name__}.initial_carry"
        hidden = jnp.asarray(hidden)
        if hidden.ndim != 3 or hidden.shape[1:] != (self.num_layers, self.hidden_dim):
            raise ValueError(
                f"{name}: hidden must have shape [B, L, H] = [B, {self.num_layers}, "
                f"{self.hidden_dim}], got shape {hidden.shape}"
            )
        if cell is not None and jnp.shape(cell) != hidden.shape:
            raise ValueError(
                f"{name}: cell must have the shape of hidden, {hidden.shape}, got shape "
                f"{jnp.shape(cell)}"
            )
        carry = {"hidden": hidden}
        if self.cell_name == "lstm":
            carry["cell"] = jnp.zeros_like(hidden) if cell is None else jnp.asarray(cell)
        return carry

    def _run_stack(self, carry: dict[str, Array], x: Array):
        """One step of every layer: returns (new carry, top output [B, H], top gates)."""
        hidden, cells, gates = [], [], {}
        for layer, cell in enumerate(self.cells):
            if self.cell_name == "lstm":
                state = (carry["hidden"][:, layer], carry["cell"][:, layer])
            else:
                state = carry["hidden"][:, layer]
            state, x, gates = cell.recur(state, cell.project_inputs(x))
            if self.cell_name == "lstm":
                hidden.append(state[0])
                cells.append(state[1])
            else:
                hidden.append(state)
        new_carry = dict(carry, hidden=jnp.stack(hidden, axis=1))  # L x [B, H] -> [B, L, H]
        if cells:
            new_carry["cell"] = jnp.stack(cells, axis=1)
        return new_carry, x, gates

    def _check_step(self, carry, embedded, memory) -> None:
        name = type(self).__name__
        embedded = jnp.asarray(embedded)
        if embedded.ndim != 2 or embedded.shape[-1] != self.input_dim:
            raise ValueError(
                f"{name}: embedded must have shape [B, E] with E={self.input_dim}, got shape "
                f"{embedded.shape}"
            )
        B = embedded.shape[0]
        hidden = carry.get("hidden") if isinstance(carry, dict) else None
        if hidden is None or tuple(hidden.shape) != (B, self.num_layers, self.hidden_dim):
            raise ValueError(
                f'{name}: carry["hidden"] must have shape [B, L, H] = [{B}, {self.num_layers}, '
                f"{self.hidden_dim}] (see initial_carry), got "
                f"{None if hidden is None else tuple(hidden.shape)}"
            )
        annotations = memory.get("annotations")
        if (
            annotations is None
            or annotations.ndim != 3
            or annotations.shape[0] != B
            or (annotations.shape[-1] != self.memory_dim)
        ):
            raise ValueError(
                f'{name}: memory["annotations"] must have shape [B, S, Hm] = [{B}, S, '
                f"{self.memory_dim}], got {None if annotations is None else annotations.shape}"
            )


class BottleneckDecoderCell(DecoderCell):
    """The decoder without attention (Sutskever et al. 2014; Cho et al. 2014): the whole source
    reaches it through one vector c, the final encoder state, which (besides initializing the
    state) is fed with every input token, s_t = RNN([y_{t-1}; c], s_{t-1}); features s_t.
    """

    def __init__(self, cell: str, input_dim: int, hidden_dim: int, memory_dim: int, **kwargs):
        """
        Args:
          cell: "gru" or "lstm".
          input_dim: E, width of the target embeddings.
          hidden_dim: H, width of each layer's state.
          memory_dim: Hm, width of the encoder summary c.
          **kwargs: num_layers, dtype, param_dtype, rngs.
        """
        super().__init__(
            cell, input_dim, hidden_dim, memory_dim, extra_input_dim=memory_dim, **kwargs
        )

    def __call__(
        self,
        carry: dict[str, Array],
        embedded: ArrayLike,
        memory: dict[str, Array],
        *,
        key: PRNGKey | None = None,
        deterministic: bool = True,
    ) -> tuple[dict[str, Array], DecoderStep]:
        """One target step: (carry, y_{t-1} embedded [B, E], memory) -> (carry, DecoderStep)."""
        self._check_step(carry, embedded, memory)
        x = jnp.concatenate([embedded, memory["summary"].astype(embedded.dtype)], axis=-1)
        carry, h, gates = self._run_stack(carry, x)
        return carry, DecoderStep(h, None, gates, None)


class BahdanauDecoderCell(DecoderCell):
    """The decoder of Bahdanau et al. (2015): the previous state s_{t-1} (top layer) queries the
    annotations, c_t = Attend(s_{t-1}, h), and the context enters the RNN input,
    s_t = RNN([y_{t-1}; c_t], s_{t-1}); features [s_t; c_t]. Submodule: `attention`
    (`BahdanauAttention`).
    """

    def __init__(
        self,
        cell: str,
        input_dim: int,
        hidden_dim: int,
        memory_dim: int,
        *,
        attention_dim: int | None = None,
        hard: str | None = None,
        temperature: float = 1.0,
        dtype: DType | None = None,
        param_dtype: DType = jnp.float32,
        rngs: nnx.Rngs,
        **kwargs,
    ):
        """
        Args:
          cell: "gru" or "lstm".
          input_dim: E, width of the target embeddings.
          hidden_dim: H, width of each layer's state.
          memory_dim: Hm, width of the encoder annotations.
          attention_dim: A, hidden width of the additive score; default H.
          hard: None (soft) or a hard mode of `HARD_MODES`.
          temperature: τ of the Gumbel-softmax.
          dtype, param_dtype, rngs: as for the cells.
          **kwargs: num_layers.
        """
        common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        super().__init__(
            cell, input_dim, hidden_dim, memory_dim, extra_input_dim=memory_dim, **common, **kwargs
        )
        self.attention = BahdanauAttention(
            hidden_dim, memory_dim, attention_dim, hard=hard, temperature=temperature, **common
        )

    @property
    def features_dim(self) -> int:
        return self.hidden_dim + self.memory_dim

    def __call__(
        self,
        carry: dict[str, Array],
        embedded: ArrayLike,
        memory: dict[str, Array],
        *,
        key: PRNGKey | None = None,
        deterministic: bool = True,
    ) -> tuple[dict[str, Array], DecoderStep]:
        """One target step: (carry, y_{t-1} embedded [B, E], memory) -> (carry, DecoderStep)."""
        self._check_step(carry, embedded, memory)
        previous = carry["hidden"][:, -1]  # s_{t-1} of the top layer
        attended = self.attention(
            previous,
            memory["annotations"],
            mask=memory["mask"],
            key=key,
            deterministic=deterministic,
        )
        context = attended.context.astype(embedded.dtype)
        carry, h, gates = self._run_stack(carry, jnp.concatenate([embedded, context], axis=-1))
        features = jnp.concatenate([h, context.astype(h.dtype)], axis=-1)
        return carry, DecoderStep(features, attended.weights, gates, attended.log_prob)


class LuongDecoderCell(DecoderCell):
    """The decoder of Luong et al. (2015): the current state s_t queries the annotations,
    c_t = Attend(s_t, h), and the attentional hidden state h̃_t = tanh(W_c [c_t; s_t]) is both the
    features and, with input feeding, part of the next input, s_{t+1} = RNN([y_t; h̃_t], s_t).
    Submodules: `attention` (`LuongAttention`), `combine` (`nnx.Linear` [Hm + H, H], no bias:
    W_cᵀ).
    """

    def __init__(
        self,
        cell: str,
        input_dim: int,
        hidden_dim: int,
        memory_dim: int,
        *,
        score: str = "general",
        input_feeding: bool = True,
        attention_dim: int | None = None,
        hard: str | None = None,
        temperature: float = 1.0,
        dtype: DType | None = None,
        param_dtype: DType = jnp.float32,
        rngs: nnx.Rngs,
        **kwargs,
    ):
        """
        Args:
          cell: "gru" or "lstm".
          input_dim: E, width of the target embeddings.
          hidden_dim: H, width of each layer's state and of h̃.
          memory_dim: Hm, width of the encoder annotations (= H for the dot score).
          score: "dot", "general" or "concat".
          input_feeding: feed h̃_{t-1} with the input token.
          attention_dim: A, hidden width of the concat score; default H.
          hard: None (soft) or a hard mode of `HARD_MODES`.
          temperature: τ of the Gumbel-softmax.
          dtype, param_dtype, rngs: as for the cells.
          **kwargs: num_layers.
        """
        common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        extra = hidden_dim if input_feeding else 0
        super().__init__(
            cell, input_dim, hidden_dim, memory_dim, extra_input_dim=extra, **common, **kwargs
        )
        self.input_feeding = input_feeding
        self.attention = LuongAttention(
            hidden_dim,
            memory_dim,
            score,
            attention_dim=attention_dim,
            hard=hard,
            temperature=temperature,
            **common,
        )
        self.combine = nnx.Linear(memory_dim + hidden_dim, hidden_dim, use_bias=False, **common)

    def initial_carry(self, hidden: ArrayLike, cell: ArrayLike | None = None) -> dict[str, Array]:
        """As `DecoderCell.initial_carry`, plus "feed" = zeros [B, H] with input feeding."""
        carry = super().initial_carry(hidden, cell)
        if self.input_feeding:
            carry["feed"] = jnp.zeros_like(carry["hidden"][:, 0])
        return carry

    def __call__(
        self,
        carry: dict[str, Array],
        embedded: ArrayLike,
        memory: dict[str, Array],
        *,
        key: PRNGKey | None = None,
        deterministic: bool = True,
    ) -> tuple[dict[str, Array], DecoderStep]:
        """One target step: (carry, y_{t-1} embedded [B, E], memory) -> (carry, DecoderStep)."""
        self._check_step(carry, embedded, memory)
        x = embedded
        if self.input_feeding:
            x = jnp.concatenate([embedded, carry["feed"].astype(embedded.dtype)], axis=-1)
        carry, h, gates = self._run_stack(carry, x)
        attended = self.attention(
            h, memory["annotations"], mask=memory["mask"], key=key, deterministic=deterministic
        )
        h_tilde = jnp.tanh(self.combine(jnp.concatenate([attended.context.astype(h.dtype), h], -1)))
        if self.input_feeding:
            carry["feed"] = h_tilde
        return carry, DecoderStep(h_tilde, attended.weights, gates, attended.log_prob)


DECODER_CELLS: dict[str, type[DecoderCell]] = {
    "none": BottleneckDecoderCell,
    "bahdanau": BahdanauDecoderCell,
    "luong": LuongDecoderCell,
}
"""`attention` name -> decoder cell class."""
