"""Gated recurrent cells and the runners that scan them over time, in PyTorch's gate orders.

GRU (Cho et al. 2014), gates r | z | n as in `torch.nn.GRU`:

    r = σ(x W_ir + b_ir + h W_hr + b_hr)
    z = σ(x W_iz + b_iz + h W_hz + b_hz)
    n = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn))
    h' = (1 - z) ⊙ n + z ⊙ h

LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000), gates i | f | g | o
as in `torch.nn.LSTM`:

    [i, f, g, o] = [σ, σ, tanh, σ](x W_i + b_i + h W_h + b_h)
    c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')

Kernels use the JAX (in, out) layout: `input_kernel[Din, G·H]` is torch's `weight_ih_l{k}`
transposed, `hidden_kernel[H, G·H]` is `weight_hh_l{k}` transposed (G = 3 for the GRU, 4 for the
LSTM), so torch weights map 1:1. Padded time steps (mask False) carry the state through unchanged
and output zeros, which is what `torch.nn.utils.rnn.pack_padded_sequence` computes: the final
state is that of the last real token, and a backward direction starts at each sequence's last
real token.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from attn.kernels.masks import key_mask
from attn.typing import Array, ArrayLike, DType

Carry = Any
"""A cell's recurrent state: h [B, H] for the GRU, the pair (h, c) of [B, H] for the LSTM."""


def _torch_uniform(hidden_dim: int) -> nnx.Initializer:
    """U(-1/√H, 1/√H), the initializer of every torch RNN parameter."""
    bound = 1.0 / hidden_dim**0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _check_features(owner: str, name: str, x: ArrayLike, width: int, letters: str) -> Array:
    x = jnp.asarray(x)
    if x.ndim < 2 or x.shape[-1] != width or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"{owner}: {name} must be a float array [{letters}] with last dim {width}, got "
            f"{x.dtype} array of shape {x.shape}"
        )
    return x


class _GatedCell(nnx.Module):
    """Parameters and input projection shared by the GRU and LSTM cells."""

    num_gates: int
    gate_names: tuple[str, ...]

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        *,
        dtype: DType | None = None,
        param_dtype: DType = jnp.float32,
        rngs: nnx.Rngs,
    ):
        """
        Args:
          input_dim: Din, width of the inputs.
          hidden_dim: H, width of the state.
          dtype: compute dtype; default: that of the inputs and parameters.
          param_dtype: parameter dtype.
          rngs: parameter random stream (torch's U(-1/√H, 1/√H) initialization).
        """
        if input_dim < 1 or hidden_dim < 1:
            raise ValueError(
                f"{type(self).__name__}: input_dim and hidden_dim must be >= 1, got "
                f"input_dim={input_dim}, hidden_dim={hidden_dim}"
            )
        self.input_dim, self.hidden_dim = input_dim, hidden_dim
        self.dtype = dtype
        init = _torch_uniform(hidden_dim)
        width = self.num_gates * hidden_dim
        self.input_kernel = nnx.Param(init(rngs.params(), (input_dim, width), param_dtype))
        self.hidden_kernel = nnx.Param(init(rngs.params(), (hidden_dim, width), param_dtype))
        self.input_bias = nnx.Param(init(rngs.params(), (width,), param_dtype))
        self.hidden_bias = nnx.Param(init(rngs.params(), (width,), param_dtype))

    def _compute_dtype(self, *arrays: ArrayLike) -> jnp.dtype:
        if self.dtype is not None:
            return jnp.dtype(self.dtype)
        return jnp.result_type(self.input_kernel[...], *arrays)

    def project_inputs(self, x: ArrayLike) -> Array:
        """x W_i + b_i for all time steps at once: x [..., Din] -> [..., G·H]."""
        x = _check_features(type(self).__name__, "x", x, self.input_dim, "..., Din")
        dtype = self._compute_dtype(x)
        return x.astype(dtype) @ self.input_kernel[...].astype(dtype) + self.input_bias[...].astype(
            dtype
        )

    def _project_hidden(self, h: Array) -> Array:
        dtype = h.dtype
        return h @ self.hidden_kernel[...].astype(dtype) + self.hidden_bias[...].astype(dtype)

    def __call__(self, carry: Carry, x: ArrayLike) -> tuple[Carry, Array]:
        """One step: (carry, x [B, Din]) -> (new carry, output h' [B, H]).

        `recur(carry, projected)` is the same step on `project_inputs(x)`, returning the gate
        activations {name: [B, H]} as a third item.
        """
        x = _check_features(type(self).__name__, "x", x, self.input_dim, "B, Din")
        self._check_carry(carry, x.shape[0])
        new_carry, h, _ = self.recur(carry, self.project_inputs(x))
        return new_carry, h

    def _check_carry(self, carry: Carry, batch: int) -> None:
        for part in jax.tree.leaves(carry):
            if tuple(jnp.shape(part)) != (batch, self.hidden_dim):
                raise ValueError(
                    f"{type(self).__name__}: every part of carry must have shape [B, H] = "
                    f"[{batch}, {self.hidden_dim}], got shape {tuple(jnp.shape(part))}"
                )


class GRUCell(_GatedCell):
    """GRU cell (Cho et al. 2014) in `torch.nn.GRUCell`'s gate order r | z | n:

        n = tanh(x W_in + b_in + r ⊙ (h W_hn + b_hn)),   h' = (1 - z) ⊙ n + z ⊙ h

    Parameters: `input_kernel[Din, 3H]`, `hidden_kernel[H, 3H]`, `input_bias[3H]`,
    `hidden_bias[3H]` (torch's `weight_ih`ᵀ, `weight_hh`ᵀ, `bias_ih`, `bias_hh`). The carry is
    h [B, H]; the gate activations are "reset" (r) and "update" (z).
    """

    num_gates = 3
    gate_names = ("reset", "update")

    def initial_carry(self, batch: int, dtype: DType = jnp.float32) -> Array:
        """Zeros [B, H]."""
        return jnp.zeros((batch, self.hidden_dim), dtype)

    @staticmethod
    def output(carry: Array) -> Array:
        """The output h [B, H] of a carry."""
        return carry

    def recur(self, carry: Array, projected: Array) -> tuple[Array, Array, dict[str, Array]]:
        h = carry.astype(projected.dtype)
        x_r, x_z, x_n = jnp.split(projected, 3, axis=-1)
        h_r, h_z, h_n = jnp.split(self._project_hidden(h), 3, axis=-1)
        r = jax.nn.sigmoid(x_r + h_r)
        z = jax.nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * h_n)
        h_new = (1.0 - z) * n + z * h
        return h_new, h_new, {"reset": r, "update": z}


class LSTMCell(_GatedCell):
    """LSTM cell in `torch.nn.LSTMCell`'s gate order i | f | g | o:

        c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g),   h' = σ(o) ⊙ tanh(c')

    (Hochreiter & Schmidhuber 1997; Gers et al. 2000). Parameters: `input_kernel[Din, 4H]`,
    `hidden_kernel[H, 4H]`, `input_bias[4H]`, `hidden_bias[4H]` (torch's `weight_ih`ᵀ,
    `weight_hh`ᵀ, `bias_ih`, `bias_hh`). The carry is the pair (h, c); the gate activations are
    "input", "forget" and "output".
    """

    num_gates = 4
    gate_names = ("input", "forget", "output")

    def initial_carry(self, batch: int, dtype: DType = jnp.float32) -> tuple[Array, Array]:
        """Zeros (h, c), each [B, H]."""
        zeros = jnp.zeros((batch, self.hidden_dim), dtype)
        return zeros, zeros

    @staticmethod
    def output(carry: tuple[Array, Array]) -> Array:
        """The output h [B, H] of a carry (h, c)."""
        return carry[0]

    def recur(
        self, carry: tuple[Array, Array], projected: Array
    ) -> tuple[tuple[Array, Array], Array, dict[str, Array]]:
        h, c = (part.astype(projected.dtype) for part in carry)
        pre_i, pre_f, pre_g, pre_o = jnp.split(projected + self._project_hidden(h), 4, axis=-1)
        i, f, o = jax.nn.sigmoid(pre_i), jax.nn.sigmoid(pre_f), jax.nn.sigmoid(pre_o)
        c_new = f * c + i * jnp.tanh(pre_g)
        h_new = o * jnp.tanh(c_new)
        return (h_new, c_new), h_new, {"input": i, "forget": f, "output": o}


CELLS: dict[str, type[_GatedCell]] = {"gru": GRUCell, "lstm": LSTMCell}
"""Cell name -> class."""


def check_cell_name(owner: str, cell: str) -> type[_GatedCell]:
    """The cell class named `cell`, or a ValueError listing the known names."""
    if cell not in CELLS:
        raise ValueError(f"{owner}: unknown cell {cell!r}; expected one of {sorted(CELLS)}")
    return CELLS[cell]


def scan_cell(
    cell: _GatedCell,
    projected: Array,
    carry: Carry,
    mask: Array | None = None,
    *,
    reverse: bool = False,
) -> tuple[Array, Carry, dict[str, Array]]:
    """Run `cell` over time with `jax.lax.scan`, holding the state through padded steps.

        carry_t = cell(carry_{t-1}, x_t) where mask_t, else carry_{t-1};   out_t = h_t · mask_t

    Args:
      cell: a `GRUCell` or `LSTMCell`.
      projected: [B, S, G·H], `cell.project_inputs(x)`.
      carry: the initial state, each part [B, H].
      mask: bool [B, S], True = real step; None = all real.
      reverse: run from the last step to the first (the backward direction); with right padding
        the padded tail is skipped first, so the run starts at each sequence's last real token.

    Returns:
      (outputs [B, S, H], zero at padded steps; the final carry; gate activations
      {name: [B, S, H]}, zero at padded steps).
    """
    B, S = projected.shape[:2]
    if mask is None:
        mask = jnp.ones((B, S), jnp.bool_)

    def step(carry, inputs):
        x_t, m_t = inputs  # [B, G·H], [B]
        new_carry, h, gates = cell.recur(carry, x_t)
        keep = m_t[:, None]
        new_carry = jax.tree.map(
            lambda new, old: jnp.where(keep, new, old.astype(new.dtype)), new_carry, carry
        )
        h = jnp.where(keep, h, 0.0)
        gates = {name: jnp.where(keep, g, 0.0) for name, g in gates.items()}
        return new_carry, (h, gates)

    carry = jax.tree.map(lambda part: part.astype(projected.dtype), carry)
    final, (outputs, gates) = jax.lax.scan(
        step, carry, (jnp.swapaxes(projected, 0, 1), jnp.swapaxes(mask, 0, 1)), reverse=reverse
    )  # time-major [S, B, ...]
    outputs = jnp.swapaxes(outputs, 0, 1)  # [S, B, H] -> [B, S, H]
    gates = {name: jnp.swapaxes(g, 0, 1) for name, g in gates.items()}
    return outputs, final, gates


class RNN(nnx.Module):
    """A multi-layer, optionally bidirectional GRU or LSTM, as `torch.nn.GRU` / `torch.nn.LSTM`
    with `batch_first=True` on packed (right-padded) sequences.

        h^l_t = Cell^l_fwd(h^l_{t-1}, x^l_t),   ĥ^l_t = Cell^l_bwd(ĥ^l_{t+1}, x^l_t)
        x^{l+1}_t = Dropout([h^l_t; ĥ^l_t])

    Cells: `cells[l * D + d]` for layer l and direction d (0 forward, 1 backward; D directions),
    the order of torch's parameter suffixes `_l{l}` / `_l{l}_reverse` and of its final states.
    Dropout (training only) sits between layers, as in torch.

    Looking inside: with `sow_weights` on, every call sows the gate activations of each cell,
    {gate name: [B, S, H]} (zero at padded steps), as "gates" on that cell, so their paths are
    ("cells", l * D + d, "gates") (see `attn.layers.collect_intermediates`).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        *,
        cell: str = "gru",
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout_rate: float = 0.0,
        sow_weights: bool = False,
        dtype: DType | None = None,
        param_dtype: DType = jnp.float32,
        rngs: nnx.Rngs,
    ):
        """
        Args:
          input_dim: Din, width of the inputs.
          hidden_dim: H, width of each direction's state.
          cell: "gru" or "lstm".
          num_layers: L stacked layers.
          bidirectional: add a backward direction to every layer (outputs [B, S, 2H]).
          dropout_rate: dropout on the outputs of every layer but the last (training only).
          sow_weights: sow every cell's gate activations as "gates" on every call.
          dtype: compute dtype; default: that of the inputs and parameters.
          param_dtype: parameter dtype.
          rngs: parameter and dropout random streams.
        """
        cell_class = check_cell_name("RNN", cell)
        if num_layers < 1:
            raise ValueError(f"RNN: num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"RNN: dropout_rate must be in [0, 1), got {dropout_rate}")
        self.cell_name = cell
        self.input_dim, self.hidden_dim = input_dim, hidden_dim
        self.num_layers = num_layers
        self.num_directions = 2 if bidirectional else 1
        self.sow_weights = sow_weights
        self.cells = nnx.List(
            [
                cell_class(
                    input_dim if layer == 0 else self.num_directions * hidden_dim,
                    hidden_dim,
                    dtype=dtype,
                    param_dtype=param_dtype,
                    rngs=rngs,
                )
                for layer in range(num_layers)
                for _ in range(self.num_directions)
            ]
        )
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)

    @property
    def output_dim(self) -> int:
        """D·H, the width of the outputs."""
        return self.num_directions * self.hidden_dim

    def set_view(self, sow_weights: bool | None = None) -> None:
        """Used by `nnx.view(model, sow_weights=...)` to switch sowing in every such layer."""
        if sow_weights is not None:
            self.sow_weights = sow_weights

    def __call__(
        self,
        x: ArrayLike,
        mask: ArrayLike | None = None,
        initial_state: Array | tuple[Array, Array] | None = None,
        *,
        deterministic: bool | None = None,
    ):
        """Run every layer and direction over the sequence.

        Args:
          x: float [B, S, Din] inputs.
          mask: [B, S], 1/True = real step, 0/False = padding (right padding, as packed
            sequences); None = all real.
          initial_state: torch's h_0 [L·D, B, H] (GRU) or the pair (h_0, c_0) (LSTM); None = zeros.
          deterministic: no dropout when True, dropout when False; None: the mode that
            `.train()` / `.eval()` set.

        Returns:
          (outputs [B, S, D·H] of the last layer, zero at padded steps; final state h_n [L·D, B, H]
          for the GRU, (h_n, c_n) for the LSTM).
        """
        x = jnp.asarray(x)
        if x.ndim != 3 or x.shape[-1] != self.input_dim:
            raise ValueError(
                f"RNN: x must have shape [B, S, Din] with Din={self.input_dim}, got shape {x.shape}"
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"RNN: x must be a floating-point array, got dtype {x.dtype}")
        B, S = x.shape[:2]
        mask = check_padding_mask("RNN", "mask", mask, B, S)
        carries = self._initial_carries(initial_state, B)
        finals = []
        for layer in range(self.num_layers):
            if layer > 0:
                x = self.dropout(x, deterministic=deterministic)
            outputs = []
            for direction in range(self.num_directions):
                index = layer * self.num_directions + direction
                cell = self.cells[index]
                out, final, gates = scan_cell(
                    cell, cell.project_inputs(x), carries[index], mask, reverse=direction == 1
                )
                outputs.append(out)
                finals.append(final)
                if self.sow_weights:
                    cell.sow(nnx.Intermediate, "gates", gates)
            x = jnp.concatenate(outputs, axis=-1)  # [B, S, D·H]
        final_state = jax.tree.map(lambda *parts: jnp.stack(parts), *finals)  # [L·D, B, H]
        return x, final_state

    def _initial_carries(self, initial_state, batch: int) -> list[Carry]:
        count = self.num_layers * self.num_directions
        cell = self.cells[0]
        if initial_state is None:
            return [cell.initial_carry(batch) for _ in range(count)]
        expected = (count, batch, self.hidden_dim)
        parts = jax.tree.leaves(initial_state)
        want_parts = 2 if self.cell_name == "lstm" else 1
        if len(parts) != want_parts or any(tuple(jnp.shape(p)) != expected for p in parts):
            what = "the pair (h_0, c_0), each" if want_parts == 2 else "h_0"
            raise ValueError(
                f"RNN: initial_state must be {what} of shape [L·D, B, H] = {list(expected)}, got "
                f"shapes {[tuple(jnp.shape(p)) for p in parts]}"
            )
        return [jax.tree.map(lambda p, i=i: jnp.asarray(p)[i], initial_state) for i in range(count)]


def check_padding_mask(owner: str, name: str, mask: ArrayLike | None, B: int, S: int) -> Array:
    """A padding mask [B, S] (1/True = real) as bool, checked by `masks.key_mask`; None gives
    all True."""
    if mask is None:
        return jnp.ones((B, S), jnp.bool_)
    mask = key_mask(owner, mask, (B, S), name=name, letter="S")  # [B, 1, 1, S]
    return mask[:, 0, 0, :]
