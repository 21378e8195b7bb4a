"""The RNN decoder cells: the query each decoder attends with, Luong's attentional hidden state
against torch, input feeding, the bottleneck's summary and bad input.

The fixtures are made by `tests/fixtures/make_torch_rnn.py`; this file needs no torch.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.layers.rnn_decoder import BahdanauDecoderCell, BottleneckDecoderCell, LuongDecoderCell

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
B, S, HQ, HK = 3, 7, 6, 8
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "torch_rnn_attention.npz") as arrays:
        return {key: arrays[key] for key in arrays.files}


def test_luong_attentional_hidden_state_matches_torch(data):
    """h̃ = tanh(W_c [c; h]) with the general score, through `LuongDecoderCell`'s parts."""
    cell = LuongDecoderCell("gru", 4, HQ, HK, score="general", rngs=nnx.Rngs(0))
    cell.attention.W[...] = jnp.asarray(data["general/W"])
    cell.combine.kernel[...] = jnp.asarray(data["luong_output/W_c"].T)
    context = cell.attention(data["query"], data["keys"], mask=data["mask"]).context
    h_tilde = jnp.tanh(cell.combine(jnp.concatenate([context, data["query"]], -1)))
    np.testing.assert_allclose(h_tilde, data["luong_output/h_tilde"], **TOL)


def memory(seed: int = 0, hm: int = HK):
    rng = np.random.default_rng(seed)
    annotations = jnp.asarray(rng.normal(size=(B, S, hm)), jnp.float32)
    mask = jnp.arange(S)[None, :] < jnp.array([7, 4, 6])[:, None]
    return {"annotations": annotations, "mask": mask, "summary": annotations[:, 0]}


def test_bahdanau_decoder_attends_with_the_previous_state():
    cell = BahdanauDecoderCell("lstm", 4, HQ, HK, num_layers=2, rngs=nnx.Rngs(1))
    mem = memory()
    hidden = jax.random.normal(jax.random.key(1), (B, 2, HQ))
    carry = cell.initial_carry(hidden)
    embedded = jax.random.normal(jax.random.key(2), (B, 4))
    new_carry, out = cell(carry, embedded, mem)
    expected = cell.attention(hidden[:, -1], mem["annotations"], mask=mem["mask"])
    np.testing.assert_allclose(out.weights, expected.weights, rtol=1e-6)
    np.testing.assert_allclose(out.features[:, HQ:], expected.context, rtol=1e-6)
    np.testing.assert_allclose(out.features[:, :HQ], new_carry["hidden"][:, -1], rtol=1e-6)
    assert cell.features_dim == HQ + HK and set(out.gates) == {"input", "forget", "output"}


def test_luong_decoder_attends_with_the_current_state_and_feeds_h_tilde():
    cell = LuongDecoderCell("gru", 4, HK, HK, score="dot", num_layers=2, rngs=nnx.Rngs(2))
    mem = memory(1)
    carry = cell.initial_carry(jax.random.normal(jax.random.key(3), (B, 2, HK)))
    np.testing.assert_array_equal(carry["feed"], 0.0)
    embedded = jax.random.normal(jax.random.key(4), (B, 4))
    new_carry, out = cell(carry, embedded, mem)
    current = new_carry["hidden"][:, -1]
    expected = cell.attention(current, mem["annotations"], mask=mem["mask"])
    np.testing.assert_allclose(out.weights, expected.weights, rtol=1e-6)
    h_tilde = jnp.tanh(cell.combine(jnp.concatenate([expected.context, current], -1)))
    np.testing.assert_allclose(out.features, h_tilde, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_carry["feed"], h_tilde, rtol=1e-5, atol=1e-6)
    # Input feeding: the next step's first-layer input includes h̃ (a different feed changes it).
    a = cell(new_carry, embedded, mem)[1].features
    b = cell(dict(new_carry, feed=jnp.zeros_like(h_tilde)), embedded, mem)[1].features
    assert float(jnp.abs(a - b).max()) > 1e-3
    no_feed = LuongDecoderCell("gru", 4, HK, HK, score="dot", input_feeding=False, rngs=nnx.Rngs(2))
    assert "feed" not in no_feed.initial_carry(jnp.zeros((B, 1, HK)))


def test_bottleneck_decoder_reads_the_summary_not_the_annotations():
    cell = BottleneckDecoderCell("gru", 4, HQ, HK, rngs=nnx.Rngs(3))
    mem = memory(2)
    carry = cell.initial_carry(jnp.zeros((B, 1, HQ)))
    embedded = jnp.ones((B, 4))
    _, out = cell(carry, embedded, mem)
    assert out.weights is None
    shuffled = dict(mem, annotations=mem["annotations"][:, ::-1])
    np.testing.assert_array_equal(cell(carry, embedded, shuffled)[1].features, out.features)
    changed = dict(mem, summary=mem["summary"] + 1.0)
    assert float(jnp.abs(cell(carry, embedded, changed)[1].features - out.features).max()) > 1e-4


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="unknown cell 'rnn'"):
        BahdanauDecoderCell("rnn", 4, HQ, HK, rngs=nnx.Rngs(0))
    cell = BahdanauDecoderCell("gru", 4, HQ, HK, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"hidden must have shape \[B, L, H\]"):
        cell.initial_carry(jnp.zeros((B, HQ)))
    carry = cell.initial_carry(jnp.zeros((B, 1, HQ)))
    with pytest.raises(ValueError, match=r"embedded must have shape \[B, E\] with E=4"):
        cell(carry, jnp.zeros((B, 5)), memory())
    with pytest.raises(ValueError, match=r'memory\["annotations"\] must have shape'):
        cell(carry, jnp.zeros((B, 4)), memory(hm=5))
