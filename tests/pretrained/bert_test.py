"""`attn.pretrained.load_bert` against Hugging Face's BERT (`BertModel`, `BertForMaskedLM`,
`BertForPreTraining`), from fixtures made by `tests/fixtures/make_hf_bert.py` (no torch here).

The fixture is a tiny BERT (V=97, D=24, L=2, N=4, F=40) with wide-spread random weights (mean
largest attention weight 0.55), run on 3 right-padded examples with two segments each.

Tolerances: both sides compute in float32. The largest differences seen are about 1.3e-6 on hidden
states (LayerNorm keeps them near unit scale), 7e-7 on the pooler and next-sentence logits and
1.2e-5 on masked-LM logits of magnitude up to 20; the tests allow 1e-5 and 1e-4. A tanh instead of
the exact erf GELU moves hidden states by about 5e-4; LayerNorm eps 1e-6 instead of 1e-12 only by
about 2e-6, so `test_config_from_json` checks the eps itself. Padded positions are compared too:
their queries attend to the real keys in both implementations.
"""

from __future__ import annotations

import json
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.layers.intermediates import collect_intermediates
from attn.models.bert import Bert
from attn.pretrained.bert import bert_config, load_bert

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
HIDDEN_ATOL = 1e-5
LOGITS_ATOL = 1e-4


@nnx.jit
def _run(model: Bert, ids, types, mask) -> dict:
    """Every output of `model` on one batch, in one compiled call."""
    hidden, states = model.encode(ids, types, mask, return_hidden_states=True)
    out = {"hidden": hidden, "states": jnp.stack(states)}
    if model.mlm_head is not None:
        out["logits"] = model(ids, types, mask)
    if model.pooler is not None:
        out["pooled"] = model.pool(hidden)
    if model.classifier is not None:
        out["classes"] = model.classify(hidden)
    return out


@pytest.fixture(scope="module")
def fixture() -> dict:
    arrays = np.load(FIXTURES / "hf_bert.npz")
    meta = json.loads((FIXTURES / "hf_bert.json").read_text())
    state = {k.removeprefix("state/"): arrays[k] for k in arrays.files if k.startswith("state/")}
    data = {k: arrays[k] for k in arrays.files if not k.startswith("state/")}
    return {"state": state, "config": meta["config"], "keys": meta["keys"], **data}


def _layout(fixture: dict, cls: str) -> dict[str, np.ndarray]:
    """The fixture's weights under the state-dict names of Hugging Face class `cls`."""
    state = fixture["state"]
    if cls == "BertModel":
        return {k: state["bert." + k] for k in fixture["keys"][cls]}
    return {k: state[k] for k in fixture["keys"][cls]}


def _inputs(fixture: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return fixture["input_ids"], fixture["token_type_ids"], fixture["attention_mask"]


def _assert_same_params(model: Bert, reference: Bert) -> None:
    """Every parameter of `model` equals the one at the same path in `reference` (a model whose
    outputs are checked against Hugging Face's: the same weights give the same outputs)."""
    ours = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    theirs = dict(nnx.to_flat_state(nnx.state(reference, nnx.Param)))
    assert set(ours) <= set(theirs)
    for path, param in ours.items():
        np.testing.assert_array_equal(param[...], theirs[path][...], err_msg=str(path))


@pytest.fixture(scope="module")
def pretraining(fixture) -> tuple[Bert, dict]:
    """The `BertForPreTraining` checkpoint (pooler, masked LM, next sentence) and its outputs."""
    model = load_bert(fixture["state"], fixture["config"])
    return model, _run(model, *_inputs(fixture))


# ---------------------------------------------------------------------------------------- config


def test_config_from_json(fixture):
    cfg = bert_config(fixture["config"], fixture["state"])
    assert (cfg.vocab_size, cfg.num_layers, cfg.num_heads) == (97, 2, 4)
    assert (cfg.model_dim, cfg.mlp_dim, cfg.max_length, cfg.type_vocab_size) == (24, 40, 32, 2)
    assert (cfg.layer_norm_eps, cfg.activation, cfg.tie_embeddings) == (1e-12, "gelu", True)
    assert (cfg.dropout_rate, cfg.attention_dropout_rate) == (0.1, 0.1)
    assert (cfg.use_pooler, cfg.use_mlm_head, cfg.num_classes) == (True, True, 2)
    masked_lm = bert_config(fixture["config"], _layout(fixture, "BertForMaskedLM"))
    assert (masked_lm.use_pooler, masked_lm.use_mlm_head, masked_lm.num_classes) == (
        False,
        True,
        None,
    )
    changed = {"hidden_act": "gelu_new", "layer_norm_eps": 1e-7, "hidden_dropout_prob": 0.2}
    other = bert_config({**fixture["config"], **changed, "classifier_dropout": 0.3})
    assert (other.activation, other.layer_norm_eps) == ("gelu_tanh", 1e-7)
    assert (other.dropout_rate, other.classifier_dropout) == (0.2, 0.3)


# ---------------------------------------------------------------------------------------- outputs


def test_every_hidden_state_matches(fixture, pretraining):
    _, out = pretraining
    expected = fixture["hidden_states"]  # [L+1, B, T, D]: embeddings, then every layer
    assert out["states"].shape == expected.shape
    for layer in range(expected.shape[0]):
        np.testing.assert_allclose(
            out["states"][layer], expected[layer], atol=HIDDEN_ATOL, err_msg=f"layer {layer}"
        )
    np.testing.assert_allclose(out["hidden"], fixture["last_hidden_state"], atol=HIDDEN_ATOL)


def test_heads_match(fixture, pretraining):
    _, out = pretraining
    np.testing.assert_allclose(out["pooled"], fixture["pooler_output"], atol=HIDDEN_ATOL)
    np.testing.assert_allclose(out["classes"], fixture["nsp_logits"], atol=HIDDEN_ATOL)
    np.testing.assert_allclose(out["logits"], fixture["mlm_logits"], atol=LOGITS_ATOL, rtol=1e-5)


def test_attention_weights_match(fixture, pretraining):
    """Per-layer, per-head weights [B, N, T, S]: the heads are split as in Hugging Face and
    padded keys get no weight."""
    model, _ = pretraining
    collect = nnx.jit(lambda model, *inputs: collect_intermediates(model, *inputs)[1])
    weights = collect(model, *_inputs(fixture))
    for layer, expected in enumerate(fixture["attentions"]):
        got = weights[("blocks", layer, "self_attention", "attention_weights")]
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=f"layer {layer}")


# ---------------------------------------------------------------------------------------- layouts


def test_masked_lm_layout(fixture, pretraining):
    state = _layout(fixture, "BertForMaskedLM")
    assert "cls.predictions.decoder.weight" in state and "bert.pooler.dense.weight" not in state
    model = load_bert(state, fixture["config"])
    assert model.pooler is None and model.classifier is None and model.mlm_head is not None
    _assert_same_params(model, pretraining[0])


def test_bert_model_layout(fixture, pretraining):
    state = _layout(fixture, "BertModel")
    assert "pooler.dense.weight" in state and not any(k.startswith("bert.") for k in state)
    model = load_bert(state, fixture["config"])
    assert model.mlm_head is None and model.classifier is None and model.pooler is not None
    _assert_same_params(model, pretraining[0])
    with pytest.raises(ValueError, match="no masked-LM head"):
        model(fixture["input_ids"])


def test_sequence_classification_layout(fixture, pretraining):
    """`BertForSequenceClassification`: `bert.*` with pooler, and `classifier.*` on the pooled
    output (here the next-sentence weights, so the logits are known)."""
    state = {k: v for k, v in fixture["state"].items() if not k.startswith("cls.")}
    state["classifier.weight"] = fixture["state"]["cls.seq_relationship.weight"]
    state["classifier.bias"] = fixture["state"]["cls.seq_relationship.bias"]
    model = load_bert(state, fixture["config"])
    assert model.config.num_classes == 2 and model.mlm_head is None
    hidden = pretraining[1]["hidden"]
    np.testing.assert_allclose(model.classify(hidden), fixture["nsp_logits"], atol=HIDDEN_ATOL)


def test_safetensors_file(fixture, pretraining, tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "model.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in fixture["state"].items()}, str(path))
    model = load_bert(path, fixture["config"])
    assert model.config == pretraining[0].config
    _assert_same_params(model, pretraining[0])


def test_old_names_and_buffers(fixture, pretraining):
    """LayerNorm `gamma`/`beta` (checkpoints converted from TensorFlow) and the `position_ids`
    buffer of older transformers versions load too."""
    state = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        ): v
        for k, v in fixture["state"].items()
    }
    state["bert.embeddings.position_ids"] = np.arange(32)[None]
    _assert_same_params(load_bert(state, fixture["config"]), pretraining[0])


def test_untied_decoder(fixture, pretraining):
    """With tie_word_embeddings=False the decoder is its own [V, D] matrix: a decoder 2·E gives
    logits 2·(h_t Eᵀ) + b = 2·logits - b."""
    state = dict(fixture["state"])
    state["cls.predictions.decoder.weight"] = 2.0 * state["bert.embeddings.word_embeddings.weight"]
    model = load_bert(state, {**fixture["config"], "tie_word_embeddings": False})
    assert model.mlm_head.decoder is not None
    out = _run(model, *_inputs(fixture))
    expected = 2.0 * fixture["mlm_logits"] - state["cls.predictions.bias"]
    np.testing.assert_allclose(out["logits"], expected, atol=2 * LOGITS_ATOL, rtol=1e-5)
    # Tied (the default), the decoder weight in the file is the token table and is not read.
    tied = load_bert(state, fixture["config"])
    assert tied.mlm_head.decoder is None


# ---------------------------------------------------------------------------------------- overrides


def test_overrides(fixture):
    """Config overrides: bfloat16 compute keeps the float32 weights (a bfloat16 forward pass is
    tested in tests/models/bert_test.py); heads turned off drop their weights, heads turned on
    that the file lacks keep their initialization."""
    table = fixture["state"]["bert.embeddings.word_embeddings.weight"]
    low = load_bert(fixture["state"], fixture["config"], dtype="bfloat16")
    assert low.config.dtype == "bfloat16" and low.blocks[0].mlp.input_proj.dtype == jnp.bfloat16
    np.testing.assert_array_equal(low.embeddings.word.embedding[...], table)

    bare = load_bert(fixture["state"], fixture["config"], num_classes=None, use_mlm_head=False)
    assert bare.classifier is None and bare.mlm_head is None and bare.pooler is not None
    fresh = load_bert(_layout(fixture, "BertForMaskedLM"), fixture["config"], num_classes=5)
    assert fresh.pooler is not None and fresh.classifier.kernel.shape == (24, 5)
    np.testing.assert_array_equal(fresh.embeddings.word.embedding[...], table)


# ---------------------------------------------------------------------------------------- errors


def test_missing_weight(fixture):
    state = dict(fixture["state"])
    del state["bert.encoder.layer.1.output.dense.bias"]
    with pytest.raises(KeyError, match=r"no 'bert.encoder.layer.1.output.dense.bias'"):
        load_bert(state, fixture["config"])


def test_unused_weight(fixture):
    state = dict(fixture["state"])
    state["bert.encoder.layer.2.output.dense.bias"] = np.zeros(24, np.float32)
    with pytest.raises(ValueError, match=r"unused weights.*encoder\.layer\.2\.output\.dense"):
        load_bert(state, fixture["config"])
    with pytest.raises(ValueError, match=r"unused weights.*layer\.1\.attention"):  # L from json
        load_bert(fixture["state"], {**fixture["config"], "num_hidden_layers": 1})


def test_misshaped_weight(fixture):
    state = dict(fixture["state"])
    weight = state["bert.encoder.layer.0.intermediate.dense.weight"]  # [F, D] = [40, 24]
    state["bert.encoder.layer.0.intermediate.dense.weight"] = weight.T  # the JAX layout by mistake
    with pytest.raises(ValueError, match=r"intermediate.dense.weight' has shape \(24, 40\), "):
        load_bert(state, fixture["config"])
    with pytest.raises(ValueError, match=r"position_embeddings.weight' has shape \(32, 24\)"):
        load_bert(fixture["state"], {**fixture["config"], "max_position_embeddings": 64})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hidden_act": "quick_gelu"}, "hidden_act 'quick_gelu' is not supported"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
        ({"is_decoder": True}, "decoder BERT"),
    ],
)
def test_unsupported_config(fixture, change, message):
    with pytest.raises(ValueError, match=message):
        load_bert(fixture["state"], {**fixture["config"], **change})
