"""`attn.pretrained.vit.load_vit` against Hugging Face ViT fixtures.

The fixtures are made by `tests/fixtures/make_hf_vit.py` (torch + transformers 5; this file needs
neither): `hf_vit_classifier.npz`, a `ViTForImageClassification` on 16×16 images, and
`hf_vit_model.npz`, a `ViTModel` with its pooler on 16×12 images with tanh-GELU and eps 1e-6. Both
have wide-spread weights, so attention is far from uniform (mean largest weight 0.49 and 0.58).
The state dicts hold transformers-5 names; the transformers-4 names are derived here with an
independent rename table.

Tolerances: both sides compute in float32; the largest differences seen are 3.5e-6 (hidden states
up to about 7 in size) and 1e-6 (logits), so 2e-5 leaves room for other BLAS and XLA versions
while a wrong GELU variant or weight layout fails by far more. (A wrong LayerNorm epsilon, 1e-6
against 1e-12, changes these outputs by less than float32 noise, so it is checked on the model.)
"""

from __future__ import annotations

import json
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.layers.intermediates import collect_intermediates
from attn.pretrained.vit import load_vit, vit_config

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
TOL = dict(rtol=2e-5, atol=2e-5)

# transformers 5 -> transformers 4 names of block i's weights, written out independently of the
# loader's tables: (pattern after "layers.{i}.", replacement after "encoder.layer.{i}.").
V5_TO_V4 = [
    ("attention.q_proj.", "attention.attention.query."),
    ("attention.k_proj.", "attention.attention.key."),
    ("attention.v_proj.", "attention.attention.value."),
    ("attention.o_proj.", "attention.output.dense."),
    ("mlp.fc1.", "intermediate.dense."),
    ("mlp.fc2.", "output.dense."),
    ("layernorm_before.", "layernorm_before."),
    ("layernorm_after.", "layernorm_after."),
]


def v4_name(name: str) -> str:
    """The transformers-4 name of a transformers-5 ViT weight name."""
    match = re.fullmatch(r"(vit\.)?layers\.(\d+)\.(.*)", name)
    if match is None:
        return name  # embeddings, final layernorm, pooler and classifier keep their names
    prefix, index, rest = match.groups()
    for new, old in V5_TO_V4:
        if rest.startswith(new):
            return f"{prefix or ''}encoder.layer.{index}.{old}{rest[len(new) :]}"
    raise AssertionError(f"no transformers-4 name for {name}")


def load_fixture(name: str) -> dict:
    with np.load(FIXTURES / f"{name}.npz") as data:
        arrays = {key: data[key] for key in data.files}
    return dict(
        state={k.removeprefix("state."): v for k, v in arrays.items() if k.startswith("state.")},
        config=json.loads(str(arrays["config_json"])),
        images=arrays["pixel_values"].transpose(0, 2, 3, 1),  # [B, C, H, W] -> [B, H, W, C]
        **{k: v for k, v in arrays.items() if not k.startswith(("state.", "config_json"))},
    )


@pytest.fixture(scope="module")
def classifier() -> dict:
    return load_fixture("hf_vit_classifier")


@pytest.fixture(scope="module")
def base_model() -> dict:
    return load_fixture("hf_vit_model")


@nnx.jit
def run(model, images):
    """(model(images), hidden, hidden states, attention weights by block path), compiled."""
    outputs, weights = collect_intermediates(model, images)
    hidden, states = model.encode(images, return_hidden_states=True)
    return outputs, hidden, states, weights


def params_of(model) -> dict:
    return {path: np.asarray(v[...]) for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def check_against_fixture(model, fixture: dict) -> jax.Array:
    """Every hidden state, the attention weights and the last hidden state; returns the outputs."""
    outputs, hidden, states, weights = run(model, fixture["images"])
    assert len(states) == len(fixture["hidden_states"])
    for i, (ours, theirs) in enumerate(zip(states, fixture["hidden_states"], strict=True)):
        np.testing.assert_allclose(ours, theirs, **TOL, err_msg=f"hidden state {i}")
    for i, theirs in enumerate(fixture["attentions"]):
        ours = weights[("blocks", i, "self_attention", "attention_weights")]
        np.testing.assert_allclose(ours, theirs, **TOL, err_msg=f"attention weights {i}")
    np.testing.assert_allclose(hidden, fixture["last_hidden_state"], **TOL)
    return outputs


# ---------------------------------------------------------------------------------------------
# Outputs


def test_classifier_matches_hugging_face(classifier):
    model = load_vit(classifier["state"], classifier["config"])
    cfg = model.config
    assert (cfg.num_layers, cfg.num_heads, cfg.model_dim, cfg.mlp_dim) == (2, 4, 24, 40)
    assert (cfg.image_hw, cfg.patch_size, cfg.num_classes, cfg.layer_norm_eps) == (
        (16, 16),
        4,
        5,
        1e-12,
    )
    assert model.pre_logits is None
    logits = check_against_fixture(model, classifier)
    assert logits.shape == (2, 5)
    np.testing.assert_allclose(logits, classifier["logits"], **TOL)


def test_base_model_with_pooler_on_rectangular_images_matches_hugging_face(base_model):
    model = load_vit(base_model["state"], base_model["config"])
    cfg = model.config
    assert (cfg.image_hw, cfg.grid, cfg.activation, cfg.layer_norm_eps) == (
        (16, 12),
        (4, 3),
        "gelu_tanh",
        1e-6,
    )
    assert cfg.num_classes is None and cfg.representation_size == 24
    assert model.final_norm.epsilon == 1e-6 and model.blocks[2].mlp_norm.epsilon == 1e-6
    pooled = check_against_fixture(model, base_model)  # no head: model(images) is pool(hidden)
    np.testing.assert_allclose(pooled, base_model["pooler_output"], **TOL)


@pytest.mark.parametrize("fixture_name", ["classifier", "base_model"])
def test_transformers_4_names_load_identically(fixture_name, request):
    fixture = request.getfixturevalue(fixture_name)
    v4 = {v4_name(k): v for k, v in fixture["state"].items()}
    assert any(".encoder.layer.1.attention.attention.query.weight" in f".{k}" for k in v4)
    assert not any("layers." in k or "q_proj" in k or "mlp.fc" in k for k in v4)
    from_v4 = load_vit(v4, fixture["config"])
    from_v5 = load_vit(fixture["state"], fixture["config"])
    ours, theirs = params_of(from_v4), params_of(from_v5)
    assert ours.keys() == theirs.keys()
    for path in ours:
        np.testing.assert_array_equal(ours[path], theirs[path], err_msg=str(path))
    outputs = check_against_fixture(from_v4, fixture)
    expected = fixture["logits"] if "logits" in fixture else fixture["pooler_output"]
    np.testing.assert_allclose(outputs, expected, **TOL)


def test_vit_model_names_without_prefix_and_safetensors_path(classifier, tmp_path):
    """The classifier's `vit.` weights as a bare `ViTModel` state dict, read from a file, give
    the classifier's backbone (whose outputs `test_classifier_matches_hugging_face` checks)."""
    from safetensors.numpy import save_file

    state = {k.removeprefix("vit."): v for k, v in classifier["state"].items()}
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    path = tmp_path / "model.safetensors"
    save_file(state, str(path))
    full = params_of(load_vit(classifier["state"], classifier["config"]))
    for source in (path, str(path), state):
        model = load_vit(source, classifier["config"])
        assert model.head is None and model.pre_logits is None
        backbone = params_of(model)
        assert backbone.keys() == {k for k in full if k[0] != "head"}
        for key, value in backbone.items():
            np.testing.assert_array_equal(value, full[key], err_msg=str(key))


def test_weight_layouts(classifier):
    """Torch Linear [out, in] is transposed; the OIHW patch convolution becomes [p, p, C, D]."""
    state = classifier["state"]
    model = load_vit(state, classifier["config"])
    np.testing.assert_array_equal(
        model.blocks[1].self_attention.key.kernel[...],
        state["vit.layers.1.attention.k_proj.weight"].T,
    )
    np.testing.assert_array_equal(
        model.blocks[0].mlp.input_proj.kernel[...], state["vit.layers.0.mlp.fc1.weight"].T
    )
    conv = state["vit.embeddings.patch_embeddings.projection.weight"]  # [D, C, p, p]
    kernel = np.asarray(model.patch_embedding.kernel[...])  # [p, p, C, D]
    np.testing.assert_array_equal(kernel[1, 3, 2, 5], conv[5, 2, 1, 3])  # [row, col, c, d]


def test_dtype_overrides(classifier):
    model = load_vit(classifier["state"], classifier["config"], dtype="bfloat16")
    assert model.config.dtype == "bfloat16"
    logits = jax.eval_shape(lambda m, x: m(x), model, classifier["images"])
    assert logits.dtype == jnp.bfloat16 and logits.shape == (2, 5)
    model = load_vit(classifier["state"], classifier["config"], param_dtype="bfloat16")
    kernel = model.blocks[0].self_attention.query.kernel[...]
    assert kernel.dtype == jnp.bfloat16
    expected = classifier["state"]["vit.layers.0.attention.q_proj.weight"].T
    np.testing.assert_allclose(np.asarray(kernel, np.float32), expected, rtol=1e-2, atol=1e-2)


def test_vit_config_mapping():
    config = dict(
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=6,
        intermediate_size=96,
        image_size=[32, 48],
        patch_size=8,
        num_channels=1,
        layer_norm_eps=1e-6,
        hidden_act="gelu_pytorch_tanh",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.2,
    )
    cfg = vit_config(config, num_classes=3)
    assert (cfg.model_dim, cfg.num_layers, cfg.num_heads, cfg.mlp_dim) == (48, 3, 6, 96)
    assert (cfg.image_hw, cfg.patch_size, cfg.num_channels, cfg.num_classes) == (
        (32, 48),
        8,
        1,
        3,
    )
    assert (cfg.layer_norm_eps, cfg.activation) == (1e-6, "gelu_tanh")
    assert (cfg.dropout_rate, cfg.attention_dropout_rate) == (0.1, 0.2)
    assert vit_config({**config, "hidden_act": "gelu"}).activation == "gelu"
    assert vit_config(config, dtype="bfloat16").dtype == "bfloat16"


# ---------------------------------------------------------------------------------------------
# Errors


def test_missing_weight(classifier):
    state = dict(classifier["state"])
    del state["vit.layers.1.mlp.fc2.bias"]
    with pytest.raises(KeyError, match=r"vit\.layers\.1\.mlp\.fc2\.bias"):
        load_vit(state, classifier["config"])
    v4 = {v4_name(k): v for k, v in classifier["state"].items()}
    del v4["vit.encoder.layer.0.attention.attention.value.weight"]
    with pytest.raises(KeyError, match=r"vit\.encoder\.layer\.0\.attention\.attention\.value"):
        load_vit(v4, classifier["config"])


def test_misshaped_weight(classifier):
    state = dict(classifier["state"])
    state["vit.layers.0.attention.q_proj.weight"] = np.zeros((24, 20), np.float32)
    with pytest.raises(ValueError, match=r"q_proj\.weight' has shape \(24, 20\), expected"):
        load_vit(state, classifier["config"])
    state = dict(classifier["state"])
    state["vit.embeddings.position_embeddings"] = np.zeros((1, 26, 24), np.float32)
    with pytest.raises(ValueError, match=r"position_embeddings' has shape \(1, 26, 24\)"):
        load_vit(state, classifier["config"])


def test_extra_weight(classifier):
    state = dict(classifier["state"])
    state["vit.layers.2.attention.q_proj.weight"] = np.zeros((24, 24), np.float32)
    with pytest.raises(ValueError, match=r"unused weights.*vit\.layers\.2\.attention\.q_proj"):
        load_vit(state, classifier["config"])


def test_mixed_name_schemes(classifier):
    state = dict(classifier["state"])
    state["vit.encoder.layer.0.output.dense.bias"] = state.pop("vit.layers.0.mlp.fc2.bias")
    with pytest.raises(ValueError, match="mixes transformers-4 names"):
        load_vit(state, classifier["config"])


def test_config_errors(classifier):
    state, config = classifier["state"], classifier["config"]
    labels = {str(i): f"L{i}" for i in range(7)}
    with pytest.raises(ValueError, match="5 rows but config.json lists 7 labels"):
        load_vit(state, {**config, "id2label": labels})
    with pytest.raises(ValueError, match="hidden_act 'quick_gelu' is not supported"):
        load_vit(state, {**config, "hidden_act": "quick_gelu"})
    with pytest.raises(ValueError, match="qkv_bias=False"):
        load_vit(state, {**config, "qkv_bias": False})
    with pytest.raises(ValueError, match="class token and learned positions"):
        load_vit(state, config, pooling="mean")
    with pytest.raises(ValueError, match=r"expected \(24, 3, 8, 8\)"):
        load_vit(state, {**config, "patch_size": 8})
