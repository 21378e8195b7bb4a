"""GRU and LSTM cells and the multi-layer, bidirectional `RNN`: PyTorch `nn.GRUCell`,
`nn.LSTMCell`, `nn.GRU` and `nn.LSTM` (packed sequences) as peers, padding, gradients, jit, dtypes
and bad input.

The fixtures are made by `tests/fixtures/make_torch_rnn.py`; this file needs no torch.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.layers.intermediates import collect_intermediates
from attn.layers.recurrent import CELLS, RNN, GRUCell, LSTMCell, scan_cell

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
B, S, DIN, H = 3, 7, 5, 6
TOL = dict(rtol=1e-5, atol=1e-5)


def load(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"torch_rnn_{name}.npz") as data:
        return {key: data[key] for key in data.files}


def set_cell(cell, weights: dict[str, np.ndarray], suffix: str = "", prefix: str = "") -> None:
    """torch weight_ih [G·H, Din], weight_hh [G·H, H], biases -> the cell's (in, out) kernels."""
    cell.input_kernel[...] = jnp.asarray(weights[f"{prefix}weight_ih{suffix}"].T)
    cell.hidden_kernel[...] = jnp.asarray(weights[f"{prefix}weight_hh{suffix}"].T)
    cell.input_bias[...] = jnp.asarray(weights[f"{prefix}bias_ih{suffix}"])
    cell.hidden_bias[...] = jnp.asarray(weights[f"{prefix}bias_hh{suffix}"])


def set_rnn(rnn: RNN, weights: dict[str, np.ndarray]) -> None:
    for layer in range(rnn.num_layers):
        for direction in range(rnn.num_directions):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            set_cell(rnn.cells[layer * rnn.num_directions + direction], weights, suffix)


def lengths_mask(lengths, length: int = S) -> jax.Array:
    return jnp.arange(length)[None, :] < jnp.asarray(lengths)[:, None]


# ----------------------------------------------------------------------------------------------
# Peers: torch cells and packed multi-layer bidirectional RNNs.


def test_gru_cell_matches_torch():
    data = load("cells")
    cell = GRUCell(DIN, H, rngs=nnx.Rngs(0))
    set_cell(cell, data, prefix="gru/")
    carry, out = cell(jnp.asarray(data["gru/h0"]), jnp.asarray(data["x"]))
    np.testing.assert_allclose(out, data["gru/h1"], **TOL)
    np.testing.assert_allclose(carry, data["gru/h1"], **TOL)


def test_lstm_cell_matches_torch():
    data = load("cells")
    cell = LSTMCell(DIN, H, rngs=nnx.Rngs(0))
    set_cell(cell, data, prefix="lstm/")
    carry = (jnp.asarray(data["lstm/h0"]), jnp.asarray(data["lstm/c0"]))
    (h, c), out = cell(carry, jnp.asarray(data["x"]))
    np.testing.assert_allclose(out, data["lstm/h1"], **TOL)
    np.testing.assert_allclose(h, data["lstm/h1"], **TOL)
    np.testing.assert_allclose(c, data["lstm/c1"], **TOL)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_bidirectional_two_layer_rnn_matches_torch_packed(kind):
    data = load(kind)
    rnn = RNN(DIN, H, cell=kind, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0))
    set_rnn(rnn, data)
    mask = lengths_mask(data["lengths"])
    initial = jnp.asarray(data["h0"]) if kind == "gru" else (data["h0"], data["c0"])
    outputs, final = rnn(jnp.asarray(data["x"]), mask, initial)
    assert outputs.shape == (B, S, 2 * H)
    np.testing.assert_allclose(outputs, data["output"], **TOL)
    if kind == "gru":
        np.testing.assert_allclose(final, data["h_n"], **TOL)
    else:
        np.testing.assert_allclose(final[0], data["h_n"], **TOL)
        np.testing.assert_allclose(final[1], data["c_n"], **TOL)


# ----------------------------------------------------------------------------------------------
# Padding, gates, gradients, jit.


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_padding_does_not_change_real_outputs_or_final_state(kind):
    """Extra padded steps with arbitrary inputs leave outputs at real steps and the final state of
    both directions unchanged: the backward direction starts at the last real token."""
    rnn = RNN(DIN, H, cell=kind, num_layers=2, bidirectional=True, rngs=nnx.Rngs(1))
    rng = np.random.default_rng(0)
    lengths = np.array([5, 2, 4])
    x = rng.normal(size=(B, 5, DIN)).astype(np.float32)
    short_out, short_final = rnn(x, lengths_mask(lengths, 5))
    noise = rng.normal(size=(B, 4, DIN)).astype(np.float32) * 10
    x_long = np.concatenate([x, noise], axis=1)
    x_long[1, 2:5] = noise[1, :3]  # overwrite padded steps inside the short window too
    long_out, long_final = rnn(x_long, lengths_mask(lengths, 9))
    real = np.asarray(lengths_mask(lengths, 5))
    np.testing.assert_allclose(
        np.asarray(long_out[:, :5])[real], np.asarray(short_out)[real], 1e-6, 1e-6
    )
    assert np.all(np.asarray(long_out)[~np.asarray(lengths_mask(lengths, 9))] == 0.0)
    for a, b in zip(jax.tree.leaves(long_final), jax.tree.leaves(short_final), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_final_state_is_the_state_after_the_last_real_token():
    cell = GRUCell(DIN, H, rngs=nnx.Rngs(2))
    x = jax.random.normal(jax.random.key(0), (1, 4, DIN))
    carry = cell.initial_carry(1)
    for t in range(3):
        carry, _ = cell(carry, x[:, t])
    mask = jnp.array([[True, True, True, False]])
    _, final, _ = scan_cell(cell, cell.project_inputs(x), cell.initial_carry(1), mask)
    np.testing.assert_allclose(final, carry, rtol=1e-6, atol=1e-6)
    # The backward direction starts at step 2: its first input is x[:, 2].
    carry = cell.initial_carry(1)
    for t in (2, 1, 0):
        carry, _ = cell(carry, x[:, t])
    _, final, _ = scan_cell(cell, cell.project_inputs(x), cell.initial_carry(1), mask, reverse=True)
    np.testing.assert_allclose(final, carry, rtol=1e-6, atol=1e-6)


def test_lstm_gates_are_the_sigmoid_gates():
    cell = LSTMCell(DIN, H, rngs=nnx.Rngs(3))
    x = jax.random.normal(jax.random.key(1), (2, DIN))
    carry = (jnp.zeros((2, H)) + 0.3, jnp.zeros((2, H)) - 0.2)
    pre = np.asarray(
        cell.project_inputs(x) + carry[0] @ cell.hidden_kernel[...] + cell.hidden_bias[...]
    )
    sig = 1 / (1 + np.exp(-pre))
    (_, c), _, gates = cell.recur(carry, cell.project_inputs(x))
    np.testing.assert_allclose(gates["input"], sig[:, :H], rtol=1e-5)
    np.testing.assert_allclose(gates["forget"], sig[:, H : 2 * H], rtol=1e-5)
    np.testing.assert_allclose(gates["output"], sig[:, 3 * H :], rtol=1e-5)
    expected_c = sig[:, H : 2 * H] * -0.2 + sig[:, :H] * np.tanh(pre[:, 2 * H : 3 * H])
    np.testing.assert_allclose(c, expected_c, rtol=1e-5, atol=1e-6)
    rnn = RNN(DIN, H, cell="lstm", num_layers=2, bidirectional=True, rngs=nnx.Rngs(3))
    _, found = collect_intermediates(rnn, jnp.ones((B, S, DIN)), lengths_mask([7, 4, 6]))
    all_gates = [found["cells", index, "gates"] for index in range(4)]
    assert len(found) == 4
    assert len(all_gates) == 4 and set(all_gates[0]) == {"input", "forget", "output"}
    assert all_gates[3]["forget"].shape == (B, S, H)
    assert np.all(np.asarray(all_gates[0]["input"])[1, 4:] == 0.0)


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_gradients_are_finite_and_reach_every_parameter(kind):
    rnn = RNN(DIN, H, cell=kind, num_layers=2, rngs=nnx.Rngs(4))
    x = jax.random.normal(jax.random.key(2), (B, S, DIN))
    mask = lengths_mask([7, 4, 6])

    def loss(model):
        outputs, final = model(x, mask)
        return jnp.sum(outputs**2) + sum(jnp.sum(p) for p in jax.tree.leaves(final))

    grads = nnx.grad(loss)(rnn)
    leaves = jax.tree.leaves(nnx.state(grads, nnx.Param))
    assert len(leaves) == 8
    assert all(bool(jnp.all(jnp.isfinite(g))) and float(jnp.abs(g).max()) > 0 for g in leaves)


def test_jit_does_not_retrace():
    rnn = RNN(DIN, H, cell="lstm", num_layers=1, bidirectional=True, rngs=nnx.Rngs(5))
    traces = []

    @nnx.jit
    def run(model, x, mask):
        traces.append(1)
        return model(x, mask)[0]

    for seed in range(3):
        x = jax.random.normal(jax.random.key(seed), (B, S, DIN))
        run(rnn, x, lengths_mask([7, 4 + seed, 6]))
    assert len(traces) == 1


def test_bfloat16_compute():
    rnn = RNN(DIN, H, cell="gru", bidirectional=True, dtype=jnp.bfloat16, rngs=nnx.Rngs(6))
    x = jax.random.normal(jax.random.key(3), (B, S, DIN))
    out, final = rnn(x)
    assert out.dtype == jnp.bfloat16 and final.dtype == jnp.bfloat16
    reference = RNN(DIN, H, cell="gru", bidirectional=True, rngs=nnx.Rngs(6))(x)[0]
    np.testing.assert_allclose(out.astype(jnp.float32), reference, atol=0.05)


# ----------------------------------------------------------------------------------------------
# Bad input.


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match=r"unknown cell 'rnn'; expected one of \['gru', 'lstm'\]"):
        RNN(DIN, H, cell="rnn", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_layers"):
        RNN(DIN, H, num_layers=0, rngs=nnx.Rngs(0))
    rnn = RNN(DIN, H, cell="lstm", num_layers=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"x must have shape \[B, S, Din\] with Din=5"):
        rnn(jnp.ones((B, S, 4)))
    with pytest.raises(ValueError, match=r"mask must have shape \[B, S\] = \[3, 7\]"):
        rnn(jnp.ones((B, S, DIN)), jnp.ones((B, 6), bool))
    with pytest.raises(ValueError, match=r"initial_state must be the pair \(h_0, c_0\)"):
        rnn(jnp.ones((B, S, DIN)), None, jnp.zeros((2, B, H)))
    with pytest.raises(TypeError, match="mask must be boolean"):
        rnn(jnp.ones((B, S, DIN)), jnp.ones((B, S)))
    cell = GRUCell(DIN, H, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"carry must have shape \[B, H\] = \[3, 6\]"):
        cell(jnp.zeros((B, 5)), jnp.ones((B, DIN)))
