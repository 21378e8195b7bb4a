"""`attn.pretrained.load_gpt2` against Hugging Face's `GPT2LMHeadModel`, from fixtures made by
`tests/fixtures/make_hf_gpt2.py` (no torch here).

The fixture is a tiny GPT-2 (V=101, n_positions=32, D=24, L=2, N=4) with wide-spread random
weights (mean largest attention weight 0.70, logits with a standard deviation of 2.7), run on
ids [2, 9] without a mask and with a mask that right-pads row 0 and left-pads row 1. Both rows use
positions 0..8 whatever the mask (Hugging Face's default without `position_ids`, and `attn`'s).

Tolerances: both sides compute in float32. The largest differences seen are 7e-6 on logits
(|logit| up to 10.5), 3e-6 on hidden states (|h| up to 7.8) and 6e-7 on attention weights; the
tests allow 2e-5, 1e-5 and 1e-5. They are tight enough to see a LayerNorm eps of 1e-6 instead of
GPT-2's 1e-5 (5e-5 on logits, 2e-5 on the final hidden state); an erf instead of the tanh GELU
moves the logits by 1e-3.
"""

from __future__ import annotations

import json
import pathlib
import re

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.layers.intermediates import collect_intermediates
from attn.models.lm import TransformerLM
from attn.pretrained import load_gpt2
from attn.pretrained.gpt2 import gpt2_config

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
LOGITS_ATOL = 2e-5
HIDDEN_ATOL = 1e-5
WEIGHTS_ATOL = 1e-5


@pytest.fixture(scope="module")
def hf() -> dict:
    """The fixture: `state` (name -> array), `config` (config.json) and the outputs."""
    weights = np.load(FIXTURES / "hf_gpt2_weights.npz")
    outputs = np.load(FIXTURES / "hf_gpt2_outputs.npz")
    config = json.loads((FIXTURES / "hf_gpt2_config.json").read_text())
    return {
        "state": {name: weights[name] for name in weights.files},
        "config": config,
        **{name: outputs[name] for name in outputs.files},
    }


@pytest.fixture(scope="module")
def model(hf) -> TransformerLM:
    return load_gpt2(hf["state"], hf["config"])


@nnx.jit
def _run(model: TransformerLM, ids, mask=None) -> dict:
    """The logits, and the hidden states of the blocks run one by one.

    `inputs[i]` is the input of block i (`inputs[0]` the embeddings), `outputs[i]` its output,
    `final` the output of the final LayerNorm: Hugging Face's `hidden_states` are
    inputs[0], ..., inputs[L-1], final.
    """
    T = ids.shape[1]
    h = model.token_embedding(ids) + model.position_embedding(T)
    key_mask = None if mask is None else jnp.asarray(mask, bool)[:, None, None, :]  # [B,1,1,S]
    inputs, outputs = [], []
    for block in model.blocks:
        inputs.append(h)
        h = block(h, mask=key_mask, is_causal=True)
        outputs.append(h)
    final = model.final_norm(h)
    return {
        "logits": model(ids, attention_mask=mask),
        "inputs": jnp.stack(inputs),
        "outputs": jnp.stack(outputs),
        "final": final,
        "final_logits": model.token_embedding.attend(final),
    }


def _close(actual, expected, atol, where=None):
    actual, expected = np.asarray(actual, np.float32), np.asarray(expected, np.float32)
    if where is not None:
        actual, expected = actual[..., where, :], expected[..., where, :]
    np.testing.assert_allclose(actual, expected, atol=atol, rtol=0)


# ---------------------------------------------------------------------------------------------
# Outputs against Hugging Face.


def test_config_is_read_from_config_json(hf, model):
    config = model.config
    assert (config.vocab_size, config.num_layers, config.num_heads) == (101, 2, 4)
    assert (config.model_dim, config.mlp_dim, config.max_length) == (24, 96, 32)
    assert (config.activation, config.layer_norm_eps, config.position) == (
        "gelu_tanh",
        1e-5,
        "learned",
    )
    assert config.tie_embeddings and model.lm_head is None
    assert gpt2_config(hf["config"]) == config


def test_logits_equal_hugging_face(hf, model):
    out = _run(model, hf["ids"])
    assert out["logits"].dtype == jnp.float32
    _close(out["logits"], hf["logits"], LOGITS_ATOL)


def test_logits_with_padding_mask_equal_hugging_face_at_real_tokens(hf, model):
    mask = hf["attention_mask"].astype(bool)
    out = _run(model, hf["ids"], mask)
    logits = np.asarray(out["logits"])
    _close(logits[mask], hf["masked_logits"][mask], LOGITS_ATOL)
    # Padded queries: row 1's first two see no real key and get a zero attention output; the
    # values are not Hugging Face's there, but they are finite.
    assert np.isfinite(logits).all()
    # The mask matters: without it, the left-padded row's real tokens see the padding.
    unmasked = np.asarray(_run(model, hf["ids"])["logits"])
    assert np.abs(unmasked[1][mask[1]] - hf["masked_logits"][1][mask[1]]).max() > 1e-2


@pytest.mark.parametrize("masked", [False, True], ids=["no_mask", "padding_mask"])
def test_hidden_states_equal_hugging_face_block_by_block(hf, model, masked):
    prefix = "masked_" if masked else ""
    mask = hf["attention_mask"].astype(bool) if masked else np.ones_like(hf["ids"], bool)
    out = _run(model, hf["ids"], mask if masked else None)
    states, block_outputs = hf[prefix + "hidden_states"], hf[prefix + "block_outputs"]
    L = model.config.num_layers
    assert states.shape[0] == L + 1
    for i in range(L):
        _close(np.asarray(out["inputs"][i])[mask], states[i][mask], HIDDEN_ATOL)
        _close(np.asarray(out["outputs"][i])[mask], block_outputs[i][mask], HIDDEN_ATOL)
    _close(np.asarray(out["final"])[mask], states[L][mask], HIDDEN_ATOL)  # after ln_f
    # The blocks run one by one compose to the model's own forward pass.
    _close(out["final_logits"], out["logits"], 1e-5)


def test_attention_weights_equal_hugging_face(hf, model):
    _, weights = nnx.jit(collect_intermediates)(model, hf["ids"])
    assert len(weights) == hf["attentions"].shape[0]
    for i in range(model.config.num_layers):
        got = weights[("blocks", i, "self_attention", "attention_weights")]
        _close(got, hf["attentions"][i], WEIGHTS_ATOL)


def test_bfloat16_override(hf):
    model = load_gpt2(hf["state"], hf["config"], dtype="bfloat16")
    assert model.config.dtype == "bfloat16"
    assert model.token_embedding.embedding[...].dtype == jnp.float32  # parameters stay float32
    logits = nnx.jit(lambda model, ids: model(ids))(model, hf["ids"])
    assert logits.dtype == jnp.bfloat16
    error = np.abs(np.asarray(logits, np.float32) - hf["logits"])
    assert error.mean() < 0.1 and error.max() < 1.0  # seen: 0.02 and 0.15


# ---------------------------------------------------------------------------------------------
# Checkpoint layouts.


def _same_weights(a: TransformerLM, b: TransformerLM) -> None:
    leaves_a = nnx.to_flat_state(nnx.state(a, nnx.Param))
    leaves_b = dict(nnx.to_flat_state(nnx.state(b, nnx.Param)))
    assert len(leaves_a) == len(leaves_b)
    for path, variable in leaves_a:
        np.testing.assert_array_equal(np.asarray(variable[...]), np.asarray(leaves_b[path][...]))


@pytest.mark.parametrize("as_path", [str, pathlib.Path], ids=["str", "Path"])
def test_loads_a_safetensors_file(hf, model, tmp_path, as_path):
    from safetensors.numpy import save_file

    path = tmp_path / "model.safetensors"
    save_file({name: np.ascontiguousarray(a) for name, a in hf["state"].items()}, str(path))
    _same_weights(load_gpt2(as_path(path), hf["config"]), model)


def test_loads_gpt2model_names(hf, model):
    """`GPT2Model` checkpoints have no `transformer.` prefix and no `lm_head`."""
    state = {
        name.removeprefix("transformer."): array
        for name, array in hf["state"].items()
        if name != "lm_head.weight"
    }
    assert not any(name.startswith("transformer.") for name in state)
    _same_weights(load_gpt2(state, hf["config"]), model)


def test_ignores_the_causal_mask_buffers_of_older_checkpoints(hf, model):
    """transformers 4 saved `attn.bias` (the causal mask) and `attn.masked_bias` buffers."""
    n = hf["config"]["n_positions"]
    state = dict(hf["state"])
    for i in range(hf["config"]["n_layer"]):
        state[f"transformer.h.{i}.attn.bias"] = np.tril(np.ones((n, n), bool))[None, None]
        state[f"transformer.h.{i}.attn.masked_bias"] = np.asarray(-1e4, np.float32)
    _same_weights(load_gpt2(state, hf["config"]), model)


def test_untied_lm_head(hf):
    """With `tie_word_embeddings: false` the logits use `lm_head.weight` [V, D] (torch's (out,
    in) layout): HF's final hidden state times its transpose."""
    head = np.random.default_rng(0).normal(0.0, 0.5, size=hf["state"]["lm_head.weight"].shape)
    state = {**hf["state"], "lm_head.weight": head.astype(np.float32)}
    model = load_gpt2(state, {**hf["config"], "tie_word_embeddings": False})
    assert not model.config.tie_embeddings and model.lm_head is not None
    logits = nnx.jit(lambda model, ids: model(ids))(model, hf["ids"])
    expected = np.einsum("btd,vd->btv", hf["hidden_states"][-1].astype(np.float64), head)
    _close(logits, expected, LOGITS_ATOL)


# ---------------------------------------------------------------------------------------------
# Errors.


def test_misshaped_weight_raises_naming_it(hf):
    name = "transformer.h.1.attn.c_attn.weight"
    state = {**hf["state"], name: hf["state"][name].T}  # torch's (out, in) layout by mistake
    message = re.escape(f"'{name}' has shape (72, 24), expected (24, 72)")
    with pytest.raises(ValueError, match=message):
        load_gpt2(state, hf["config"])


def test_missing_weight_raises_naming_it(hf):
    name = "transformer.h.1.ln_2.weight"
    state = {k: v for k, v in hf["state"].items() if k != name}
    with pytest.raises((KeyError, ValueError), match=re.escape(name)):
        load_gpt2(state, hf["config"])


def test_more_layers_in_config_than_in_checkpoint_raises(hf):
    with pytest.raises((KeyError, ValueError), match=r"transformer\.h\.2\."):
        load_gpt2(hf["state"], {**hf["config"], "n_layer": 3})


def test_unknown_extra_weight_raises_naming_it(hf):
    name = "transformer.h.0.attn.q_attn.weight"  # a cross-attention weight this model lacks
    state = {**hf["state"], name: np.zeros((24, 24), np.float32)}
    with pytest.raises(ValueError, match=re.escape(name)):
        load_gpt2(state, hf["config"])


def test_unsupported_activation_raises(hf):
    with pytest.raises(ValueError, match="activation_function 'relu'"):
        load_gpt2(hf["state"], {**hf["config"], "activation_function": "relu"})


@pytest.mark.parametrize(
    "option", [{"scale_attn_weights": False}, {"scale_attn_by_inverse_layer_idx": True}]
)
def test_unsupported_attention_scaling_raises(hf, option):
    with pytest.raises(ValueError, match=next(iter(option))):
        gpt2_config({**hf["config"], **option})


def test_config_missing_a_key_or_given_as_a_path(tmp_path):
    from attn.pretrained import load_gpt2

    config = {"vocab_size": 11, "n_embd": 8, "n_layer": 1, "n_head": 2, "n_positions": 6}
    with pytest.raises(ValueError, match=r"load_gpt2: config.json lacks \['n_embd'\]"):
        load_gpt2({}, {k: v for k, v in config.items() if k != "n_embd"})
    with pytest.raises(ValueError, match=r"load_gpt2: cannot read config.json '.*missing.json'"):
        load_gpt2({}, tmp_path / "missing.json")
    with pytest.raises(TypeError, match="load_gpt2: config must be .* a dict or a path, got int"):
        load_gpt2({}, 3)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(KeyError, match="wte"):  # the path was read: now the weights are missing
        load_gpt2({}, path)
