"""`attn.models.bert`: shapes, parameter counts, padding invariance, token types, dropout, heads,
bfloat16 compute and input validation.

Agreement with Hugging Face's BERT is tested in `tests/pretrained/bert_test.py`.
"""

from __future__ import annotations

import functools
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.models.bert import Bert, BertConfig

B, T = 2, 7
LENGTHS = (7, 4)


def _count(module: nnx.Module | None) -> int:
    """Number of parameter entries (`nnx.Param` leaves) of `module`."""
    if module is None:
        return 0
    return sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(module, nnx.Param)))


def _abstract(name: str, **overrides) -> Bert:
    """The model of variant `name`, shapes only (nothing allocated)."""
    config = BertConfig.named(name, **overrides)
    return nnx.eval_shape(lambda: Bert(config, rngs=nnx.Rngs(0)))


def _encoder_count(model: Bert) -> int:
    return _count(model.embeddings) + _count(model.blocks) + _count(model.pooler)


@functools.partial(nnx.jit, static_argnames="deterministic")
def _run(model: Bert, ids, types, mask, deterministic: bool = True) -> dict:
    """Every output of `model` on one batch, in one compiled call (eager dispatch is slow)."""
    hidden, states = model.encode(
        ids, types, mask, deterministic=deterministic, return_hidden_states=True
    )
    out = {"hidden": hidden, "states": states}
    if model.mlm_head is not None:
        out["logits"] = model(ids, types, mask, deterministic=deterministic)
    if model.pooler is not None:
        out["pooled"] = model.pool(hidden)
    if model.classifier is not None:
        out["classes"] = model.classify(hidden, deterministic=deterministic)
    return out


@pytest.fixture(scope="module")
def model() -> Bert:
    return Bert(BertConfig.named("tiny", num_classes=3), rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    mask = np.arange(T)[None, :] < np.asarray(LENGTHS)[:, None]
    ids = np.where(mask, rng.integers(1, 512, (B, T)), 0).astype(np.int32)
    types = ((np.arange(T)[None, :] >= 3) & mask).astype(np.int32)
    return {"ids": ids, "types": types, "mask": mask}


@pytest.fixture(scope="module")
def outputs(model, inputs) -> dict:
    return _run(model, inputs["ids"], inputs["types"], inputs["mask"])


# ---------------------------------------------------------------------------------------- config


def test_named_variants():
    base = BertConfig.named("base")
    assert (base.num_layers, base.model_dim, base.num_heads, base.mlp_dim) == (12, 768, 12, 3072)
    assert (base.vocab_size, base.max_length, base.type_vocab_size) == (30522, 512, 2)
    assert (base.layer_norm_eps, base.activation) == (1e-12, "gelu")
    large = BertConfig.named("large", num_classes=4)
    assert (large.num_layers, large.model_dim, large.num_heads, large.mlp_dim) == (
        24,
        1024,
        16,
        4096,
    )
    assert large.num_classes == 4
    with pytest.raises(ValueError, match="unknown variant 'huge'"):
        BertConfig.named("huge")


def test_base_parameter_count():
    """BERT-base: 109,482,240 parameters in embeddings, encoder and pooler (Devlin et al. 2019
    report 110M); the masked-LM head adds the transform (D² + D), its LayerNorm (2D) and the
    output bias (V), its decoder being the tied token table."""
    model = _abstract("base")
    assert _encoder_count(model) == 109_482_240
    D, V = 768, 30522
    assert _count(model.mlm_head) == D * D + D + 2 * D + V
    assert _count(model) == 110_104_890


def test_large_parameter_count():
    """BERT-large: 335,141,888 in embeddings, encoder and pooler (the paper's "340M").

    Counted on a one-block BERT-large, its block counted 24 times (building all 24 blocks, even
    abstractly, is slow; `test_base_parameter_count` counts a full stack)."""
    model = _abstract("large", num_layers=1)
    encoder = _count(model.embeddings) + 24 * _count(model.blocks) + _count(model.pooler)
    assert encoder == 335_141_888
    assert encoder + _count(model.mlm_head) == 335_141_888 + 1024 * 1024 + 1024 + 2 * 1024 + 30522


def test_optional_heads_change_the_count():
    D, V = 64, 512
    tied = _abstract("tiny")
    assert _count(_abstract("tiny", tie_embeddings=False)) == _count(tied) + D * V
    assert _count(_abstract("tiny", num_classes=5)) == _count(tied) + D * 5 + 5
    no_pooler = _abstract("tiny", use_pooler=False, use_mlm_head=False)
    assert no_pooler.pooler is None and no_pooler.mlm_head is None
    assert _count(no_pooler) == _count(tied) - (D * D + D) - (D * D + 3 * D + V)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(model_dim=30, num_heads=4), "model_dim .* divisible by num_heads"),
        (dict(num_classes=2, use_pooler=False), "use_pooler=True"),
        (dict(num_classes=0), "num_classes must be > 0"),
        (dict(activation="gelu_fast"), "activation must be one of"),
        (dict(type_vocab_size=0), "type_vocab_size must be > 0"),
        (dict(dropout_rate=1.0), "dropout_rate must be in"),
        (dict(classifier_dropout_rate=-0.1), "classifier_dropout_rate must be in"),
    ],
)
def test_config_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        BertConfig.named("tiny", **overrides)


# ---------------------------------------------------------------------------------------- shapes


def test_shapes(outputs):
    assert outputs["hidden"].shape == (B, T, 64) and outputs["hidden"].dtype == jnp.float32
    assert len(outputs["states"]) == 1 + 2  # embeddings, then each of the 2 blocks
    np.testing.assert_array_equal(outputs["states"][-1], outputs["hidden"])
    assert outputs["logits"].shape == (B, T, 512)
    assert outputs["pooled"].shape == (B, 64)
    assert outputs["classes"].shape == (B, 3)


def test_defaults(model, inputs):
    """Token types default to 0 and the attention mask to all-real."""
    default = _run(model, inputs["ids"], None, None)
    explicit = _run(model, inputs["ids"], np.zeros((B, T), np.int32), np.ones((B, T), bool))
    np.testing.assert_allclose(default["logits"], explicit["logits"], atol=1e-5)


def test_heads_follow_the_formulas(model, outputs):
    """pool = tanh(h[:, 0] W + b) on the first token; MLM logits = LN(gelu(h W_t + b_t)) Eᵀ + b
    with the exact (erf) GELU and LayerNorm eps 1e-12; classes = pool W_c + b_c."""

    def params(module):
        state = nnx.to_flat_state(nnx.state(module, nnx.Param))
        return {".".join(map(str, k)): np.asarray(v[...], np.float64) for k, v in state}

    hidden = np.asarray(outputs["hidden"], np.float64)
    p = params(model.pooler)
    pooled = np.tanh(hidden[:, 0] @ p["kernel"] + p["bias"])
    np.testing.assert_allclose(outputs["pooled"], pooled, atol=1e-5)
    p = params(model.classifier)
    np.testing.assert_allclose(outputs["classes"], pooled @ p["kernel"] + p["bias"], atol=1e-5)

    p = params(model.mlm_head)
    h = hidden @ p["transform.kernel"] + p["transform.bias"]
    h = np.asarray(jax.nn.gelu(jnp.asarray(h, jnp.float32), approximate=False), np.float64)
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-12)
    h = h * p["norm.scale"] + p["norm.bias"]
    table = np.asarray(model.embeddings.word.embedding[...], np.float64)
    np.testing.assert_allclose(outputs["logits"], h @ table.T + p["bias"], atol=1e-5)


# ---------------------------------------------------------------------------------------- masking


def test_padding_invariance(model, inputs, outputs):
    """Real tokens' hidden states do not depend on the padding: its length or its ids."""
    n = LENGTHS[1]
    padded = outputs["hidden"]
    short = _run(model, inputs["ids"][:, :n], inputs["types"][:, :n], np.ones((B, n), bool))
    np.testing.assert_allclose(padded[1, :n], short["hidden"][1], atol=1e-5)

    other_ids = np.where(inputs["mask"], inputs["ids"], 17)
    repadded = _run(model, other_ids, inputs["types"], inputs["mask"])["hidden"]
    np.testing.assert_allclose(repadded[1, :n], padded[1, :n], atol=1e-5)
    np.testing.assert_allclose(repadded[0], padded[0], atol=1e-5)  # example 0 has no padding

    unmasked = _run(model, inputs["ids"], inputs["types"], np.ones((B, T), bool))["hidden"]
    assert np.abs(unmasked[1, :n] - padded[1, :n]).max() > 1e-2  # the mask does something


def test_token_types_and_positions_matter(model, inputs, outputs):
    ones = np.ones((B, T), bool)
    zeros = np.zeros((B, T), np.int32)
    typed = _run(model, inputs["ids"], inputs["types"], ones)["hidden"]
    untyped = _run(model, inputs["ids"], zeros, ones)["hidden"]
    assert np.abs(typed - untyped).max() > 1e-2
    # The same token at every position gets a different state at each (positions are added).
    same = _run(model, np.full((B, T), 5, np.int32), zeros, ones)["hidden"]
    assert np.abs(same[0, 0] - same[0, 1]).max() > 1e-2


def test_fully_padded_example_is_finite(model, inputs, outputs):
    mask = inputs["mask"].copy()
    mask[1] = False
    hidden = _run(model, inputs["ids"], inputs["types"], mask)["hidden"]
    assert np.isfinite(np.asarray(hidden)).all()
    np.testing.assert_allclose(hidden[0], outputs["hidden"][0], atol=1e-5)


# ---------------------------------------------------------------------------------------- dropout


@functools.partial(nnx.jit, static_argnames="deterministic")
def _train_step_outputs(model: Bert, ids, types, mask, hidden, deterministic: bool):
    """Embedding output and MLM logits of `ids`, class logits of a given `hidden`."""
    embedded = model.embeddings(ids, types, deterministic=deterministic)
    logits = model(ids, types, mask, deterministic=deterministic)
    return embedded, logits, model.classify(hidden, deterministic=deterministic)


def test_dropout_follows_deterministic(inputs):
    # Attention dropout is the attention layer's (tested there; slow to compile): passed on here.
    abstract = _abstract("tiny", attention_dropout_rate=0.2)
    assert {block.self_attention.dropout_rate for block in abstract.blocks} == {0.2}
    config = BertConfig.named("tiny", num_layers=1, dropout_rate=0.3, num_classes=2)
    model = Bert(config, rngs=nnx.Rngs(0))
    args = (inputs["ids"], inputs["types"], inputs["mask"], jnp.ones((B, T, 64)))
    eval_1 = _train_step_outputs(model, *args, deterministic=True)
    eval_2 = _train_step_outputs(model, *args, deterministic=True)
    train_1 = _train_step_outputs(model, *args, deterministic=False)
    train_2 = _train_step_outputs(model, *args, deterministic=False)
    names = ("embedding output", "MLM logits", "class logits (the classifier's own dropout)")
    for i, name in enumerate(names):
        np.testing.assert_array_equal(eval_1[i], eval_2[i])
        assert np.abs(train_1[i] - eval_1[i]).max() > 1e-3, name
        assert np.abs(train_1[i] - train_2[i]).max() > 1e-3, name  # a fresh mask each call
    for method in (Bert.__call__, Bert.encode, Bert.classify):  # by default: the model's mode
        assert inspect.signature(method).parameters["deterministic"].default is None
    assert config.classifier_dropout == 0.3
    assert BertConfig(dropout_rate=0.3, classifier_dropout_rate=0.0).classifier_dropout == 0.0


# ---------------------------------------------------------------------------------------- dtypes


def test_bfloat16_compute_is_close_to_float32(inputs, outputs):
    """Same seed, same float32 parameters; bfloat16 compute keeps ~3 significant digits."""
    low = Bert(BertConfig.named("tiny", num_classes=3, dtype="bfloat16"), rngs=nnx.Rngs(0))
    result = _run(low, inputs["ids"], inputs["types"], inputs["mask"])
    for key, scale in (("hidden", 1.0), ("logits", 1.0), ("classes", 1.0)):
        assert result[key].dtype == jnp.bfloat16, key
        error = np.abs(np.asarray(result[key], np.float32) - outputs[key])
        assert error.max() < 0.1 * scale and error.mean() < 0.02 * scale, (key, error.max())


# ---------------------------------------------------------------------------------------- errors


def test_input_errors(model, inputs):
    ids = inputs["ids"]
    with pytest.raises(ValueError, match=r"ids must be integer token ids \[B, T\]"):
        model.encode(ids.astype(np.float32))
    with pytest.raises(ValueError, match=r"ids must be integer token ids \[B, T\]"):
        model.encode(ids[0])
    with pytest.raises(ValueError, match="T=129 exceeds max_length=128"):
        model.encode(np.ones((1, 129), np.int32))
    with pytest.raises(ValueError, match=r"token_type_ids must be .* \[B, T\] = \[2, 7\]"):
        model.encode(ids, ids[:, :5])
    with pytest.raises(ValueError, match="token_type_ids must be integers"):
        model.encode(ids, ids.astype(np.float32))
    with pytest.raises(ValueError, match=r"attention_mask must have shape \[B, T\] = \[2, 7\]"):
        model.encode(ids, attention_mask=inputs["mask"][:, :5])
    with pytest.raises(ValueError, match=r"hidden must have shape \[B, T, D\] with D=64"):
        model.pool(jnp.zeros((2, 32)))


def test_missing_heads_raise(outputs):
    model = Bert(BertConfig.named("tiny", use_pooler=False, use_mlm_head=False), rngs=nnx.Rngs(0))
    hidden = outputs["hidden"]
    with pytest.raises(ValueError, match="no pooler"):
        model.pool(hidden)
    with pytest.raises(ValueError, match="no classifier.*num_classes"):
        model.classify(hidden)
    with pytest.raises(ValueError, match="no masked-LM head"):
        model(np.ones((B, T), np.int32))
