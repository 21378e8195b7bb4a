"""Decoder cells of RNN encoder-decoders: a stack of GRU/LSTM cells run one target step at a time,
one cell class per way of using the source (`DECODER_CELLS`):

    none (bottleneck):  s_t = RNN([y_{t-1}; c], s_{t-1}), c = the final encoder state
                        (Sutskever et al. 2014; Cho et al. 2014);             features s_t
    bahdanau:           c_t = Attend(s_{t-1}, h),  s_t = RNN([y_{t-1}; c_t], s_{t-1});
                                                                          features [s_t; c_t]
    luong:              s_t = RNN([y_{t-1}; h̃_{t-1}], s_{t-1}) (input feeding),
                        c_t = Attend(s_t, h),  h̃_t = tanh(W_c [c_t; s_t]);     features h̃_t

The attention layers they use are those of `attn.layers.rnn_attention`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from flax import nnx

from attn.layers.recurrent import check_cell_name
from attn.layers.rnn_attention import BahdanauAttention, LuongAttention
from attn.typing import Array, ArrayLike, DType, PRNGKey


class DecoderStep(NamedTuple):
    """What one step of a decoder cell returns besides its new carry.

    Fields:
      features: [B, F] what the output layer reads (`features_dim` = F).
      weights: [B, S] the alignment, or None for the bottleneck decoder.
      gates: {name: [B, H]} the gate activations of the top layer ("input", "forget", "output"
        for the LSTM; "reset", "update" for the GRU).
      log_prob: [B] log p(j*) for `estimator="reinforce"` in training, else None.
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
        deterministic: bool | None = None,
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
        estimator: str | None = None,
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
          estimator: None (soft) or a hard-attention estimator of `attn.kernels.hard.ESTIMATORS`.
          temperature: τ of the Gumbel estimators.
          dtype, param_dtype, rngs: as for the cells.
          **kwargs: num_layers.
        """
        common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        super().__init__(
            cell, input_dim, hidden_dim, memory_dim, extra_input_dim=memory_dim, **common, **kwargs
        )
        self.attention = BahdanauAttention(
            hidden_dim,
            memory_dim,
            attention_dim,
            estimator=estimator,
            temperature=temperature,
            **common,
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
        deterministic: bool | None = None,
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
        estimator: str | None = None,
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
          memory_dim: Hm, width of the encoder annotations (= H for the dot and scaled_dot
            scores).
          score: "dot", "scaled_dot", "general" or "concat" (`LuongAttention`).
          input_feeding: feed h̃_{t-1} with the input token.
          attention_dim: A, hidden width of the concat score; default H.
          estimator, temperature, dtype, param_dtype, rngs, **kwargs: as for
            `BahdanauDecoderCell`.
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
            estimator=estimator,
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
        deterministic: bool | None = None,
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
