"""`attn.models.lm`: `TransformerLM` and `TransformerLMConfig`.

Small models (V=37, D=24, N=4, K=2, F=40, L=2, max_length=16, unless a test overrides them)
with every weight re-drawn with a wide spread (attention far from uniform, logits with a standard
deviation of about 3), so that a wrong position, offset or mask moves the logits by O(1), far
above the float32 tolerances used here.

Forward passes run under `nnx.jit`: eagerly, every primitive compiles on its own for each new
shape, which costs seconds per model on CPU. The models share a few configurations so that the
compiled functions are reused between tests.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.layers.intermediates import collect_intermediates
from attn.layers.position import LearnedPositions
from attn.models.lm import TransformerLM, TransformerLMConfig

V, D, N, F, MAX_LENGTH = 37, 24, 4, 40, 16
B, T = 2, 9
CACHE = 12  # longer than the 9 decoded tokens: the unused cache slots must stay masked
CHUNKS = (4, 1, 1, 1, 2)  # a prefill of 4 tokens, three single steps, a 2-token step

# Parameter counts of the named variants: GPT-2 small 124,439,808 with tied embeddings (Hugging
# Face's `gpt2`), medium 354,823,168, large 774,030,080, xl 1,557,611,200.
PINNED_PARAMETERS = {
    "tiny": 124_672,
    "small": 20_094_976,
    "gpt2": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "gpt2-xl": 1_557_611_200,
}


def _config(**overrides) -> TransformerLMConfig:
    fields = dict(
        vocab_size=V,
        num_layers=2,
        num_heads=N,
        num_kv_heads=2,
        model_dim=D,
        mlp_dim=F,
        max_length=MAX_LENGTH,
    )
    return TransformerLMConfig(**{**fields, **overrides})


def _spread(model: nnx.Module, seed: int) -> None:
    """Re-draw every weight with a wide spread (the 0.02 init makes attention nearly uniform).

    Embeddings N(0, 0.5²) (they are also the output projection), learned positions N(0, 1),
    kernels N(0, gain² / fan_in) with gain 1.6 for queries and keys, biases N(0, 0.1²), layer-norm
    scales N(1, 0.3²) and biases N(0, 0.2²). Works on abstract models too (`nnx.eval_shape`).
    """
    rng = np.random.default_rng(seed)

    def draw(variable, std, mean=0.0):
        value = variable.get_value()
        variable.set_value(jnp.asarray(mean + std * rng.standard_normal(value.shape), value.dtype))

    for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Linear):
            gain = 1.6 if path and path[-1] in ("query", "key") else 1.0
            draw(node.kernel, gain / math.sqrt(node.kernel.get_value().shape[0]))
            if node.bias is not None:
                draw(node.bias, 0.1)
        elif isinstance(node, nnx.LayerNorm):
            draw(node.scale, 0.3, 1.0)
            draw(node.bias, 0.2)
        elif isinstance(node, nnx.Embed):
            draw(node.embedding, 0.5)
        elif isinstance(node, LearnedPositions):
            draw(node.embedding, 1.0)


def _model(seed: int = 0, **overrides) -> TransformerLM:
    """A `TransformerLM` of `_config(**overrides)` with `_spread` weights.

    Built abstractly and filled in, without running the initialisers (eagerly, each initialiser
    compiles anew for every parameter shape: seconds per configuration on CPU). The dropout
    streams get keys derived from `seed`; `test_dropout_masks_come_from_the_dropout_stream`
    builds its models the ordinary way.
    """
    config = _config(**overrides)
    abstract = nnx.eval_shape(
        lambda: TransformerLM(config, rngs=nnx.Rngs(params=seed, dropout=seed))
    )
    _spread(abstract, seed + 1000)
    graphdef, state = nnx.split(abstract)
    streams = iter(range(seed * 1000, seed * 1000 + 1000))

    def fill(leaf):  # what is still abstract: the dropout streams' keys and counters
        if not isinstance(leaf, jax.ShapeDtypeStruct):
            return leaf
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.key(next(streams))
        return jnp.zeros(leaf.shape, leaf.dtype)

    return nnx.merge(graphdef, jax.tree.map(fill, state))


def _ids(seed: int, shape: tuple[int, int] = (B, T)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, size=shape).astype(np.int32)


@nnx.jit
def _forward(model: TransformerLM, ids, mask=None):
    return model(ids, attention_mask=mask)


def _f32(x) -> np.ndarray:
    return np.asarray(jnp.asarray(x, jnp.float32))


# ---------------------------------------------------------------------------------------------
# Parameter counts.


@functools.cache
def _count(config: TransformerLMConfig) -> int:
    abstract = nnx.eval_shape(lambda: TransformerLM(config, rngs=nnx.Rngs(0)))
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def _count_by_layers(config: TransformerLMConfig) -> int:
    """The count of `config` from models of 1 and 2 layers (the blocks are identical).

    `nnx.eval_shape` slows down quadratically with the number of parameters it creates (about 30 s
    for the 48 layers of gpt2-xl on CPU), so the deep variants are counted this way;
    `test_counting_by_layers_is_exact` checks it against the direct count of gpt2.
    """
    one = _count(dataclasses.replace(config, num_layers=1))
    two = _count(dataclasses.replace(config, num_layers=2))
    return one + (config.num_layers - 1) * (two - one)


def _formula(c: TransformerLMConfig) -> int:
    """GPT-2's parameter count, written out: embeddings, L pre-LN blocks, final LayerNorm, head."""
    H = c.model_dim // c.num_heads
    q_width, kv_width = c.num_heads * H, (c.num_kv_heads or c.num_heads) * H
    bias = int(c.use_bias)
    attention = c.model_dim * (q_width + 2 * kv_width) + bias * (q_width + 2 * kv_width)
    attention += q_width * c.model_dim + bias * c.model_dim
    mlp = 2 * c.model_dim * c.mlp_dim + bias * (c.mlp_dim + c.model_dim)
    norms = 2 * 2 * c.model_dim
    embeddings = c.vocab_size * c.model_dim
    positions = c.max_length * c.model_dim if c.position == "learned" else 0
    head = 0 if c.tie_embeddings else c.model_dim * c.vocab_size
    return (
        embeddings + positions + c.num_layers * (attention + mlp + norms) + 2 * c.model_dim + head
    )


def test_every_named_variant_has_a_pinned_count():
    assert set(PINNED_PARAMETERS) == set(TransformerLMConfig.VARIANTS)


@pytest.mark.parametrize("name", ["tiny", "small", "gpt2"])
def test_parameter_count_of_named_variant(name):
    config = TransformerLMConfig.named(name)
    assert _count(config) == PINNED_PARAMETERS[name] == _formula(config)


@pytest.mark.parametrize("name", ["gpt2-medium", "gpt2-large", "gpt2-xl"])
def test_parameter_count_of_deep_named_variant(name):
    config = TransformerLMConfig.named(name)
    assert _count_by_layers(config) == PINNED_PARAMETERS[name] == _formula(config)


def test_counting_by_layers_is_exact():
    config = TransformerLMConfig.named("gpt2")
    assert _count_by_layers(config) == _count(config)


@pytest.mark.parametrize(
    "overrides, change",
    [
        (dict(tie_embeddings=False), 256 * 64),  # an lm_head [D, V]
        (dict(position="rotary"), -128 * 64),  # no position table
        (dict(num_kv_heads=1), -2 * 2 * (64 * 32 + 32)),  # key and value: 1 head of 32, not 2
        (dict(use_bias=False), -2 * (3 * 64 + 64 + 256 + 64)),
    ],
)
def test_parameter_count_of_overrides(overrides, change):
    config = TransformerLMConfig.named("tiny", **overrides)
    assert _count(config) == _formula(config) == PINNED_PARAMETERS["tiny"] + change


# ---------------------------------------------------------------------------------------------
# Cached decoding.


class _JaxJitSteps:
    """Decoding steps as a pure function of the split model state under `jax.jit`."""

    def __init__(self, model: TransformerLM, traces: collections.Counter):
        self.model = model
        self.graphdef, self.state = nnx.split(model)

        @jax.jit
        def step(state, chunk, mask):
            traces[chunk.shape[1]] += 1  # runs only while tracing
            model = nnx.merge(self.graphdef, state)
            logits = model(chunk, attention_mask=mask, decode=True)
            return logits, nnx.state(model)

        self.step = step

    def __call__(self, chunk, mask):
        logits, self.state = self.step(self.state, chunk, mask)
        nnx.update(self.model, self.state)
        return logits


class _NnxJitSteps:
    """Decoding steps of the stateful model under `nnx.jit` (the caches update in place)."""

    def __init__(self, model: TransformerLM, traces: collections.Counter):
        self.model = model

        @nnx.jit
        def step(model, chunk, mask):
            traces[chunk.shape[1]] += 1  # runs only while tracing
            return model(chunk, attention_mask=mask, decode=True)

        self.step = step

    def __call__(self, chunk, mask):
        return self.step(self.model, chunk, mask)


@pytest.mark.parametrize(
    "position, num_kv_heads, dtype, implementation, num_layers, jit, padded",
    [
        ("learned", 2, "float32", None, 2, "nnx.jit", True),
        ("rotary", 1, "float32", "xla", 2, "jax.jit", False),
        ("rotary", None, "bfloat16", "xla", 1, "nnx.jit", True),
    ],
)
def test_cached_decoding_equals_full_forward(
    position, num_kv_heads, dtype, implementation, num_layers, jit, padded
):
    """A prefill of 4 tokens, three single steps and a 2-token step into a fixed-size cache of 12
    give the logits of the full forward pass. Each chunk length compiles once: the cache index is
    traced state, not a static argument. With `padded`, row 1 is left-padded and the mask covers
    the whole cache, [B, CACHE]; only the real tokens are compared."""
    model = _model(
        position=position,
        num_kv_heads=num_kv_heads,
        dtype=dtype,
        implementation=implementation,
        num_layers=num_layers,
    )
    ids = _ids(1)
    mask = np.ones((B, T), bool)
    if padded:
        mask[1, :3] = False
    cache_mask = np.ones((B, CACHE), bool)
    cache_mask[:, :T] = mask
    full = _forward(model, ids, mask if padded else None)

    model.init_cache(B, CACHE)
    traces = collections.Counter()
    step = (_NnxJitSteps if jit == "nnx.jit" else _JaxJitSteps)(model, traces)
    outputs, start = [], 0
    for size in CHUNKS:
        outputs.append(step(ids[:, start : start + size], cache_mask if padded else None))
        start += size
    cached = jnp.concatenate(outputs, axis=1)

    assert traces == {4: 1, 1: 1, 2: 1}
    assert cached.dtype == full.dtype == jnp.dtype(dtype)
    assert cached.shape == full.shape == (B, T, V)
    assert np.isfinite(_f32(cached)).all()
    # float32: the largest difference seen is 3e-6 on logits of standard deviation 2.7.
    # bfloat16: identical here; one bfloat16 step at |logit| ~ 8 is 0.03.
    tol = dict(atol=2e-5, rtol=2e-5) if dtype == "float32" else dict(atol=0.1, rtol=0.02)
    np.testing.assert_allclose(_f32(cached)[mask], _f32(full)[mask], **tol)
    for block in model.blocks:
        attention = block.self_attention
        assert int(attention.cache_index[...]) == T
        assert attention.cached_key[...].dtype == jnp.dtype(dtype)
        # Nothing was written past the decoded tokens.
        assert not np.any(_f32(attention.cached_key[...][:, T:]))
        assert not np.any(_f32(attention.cached_value[...][:, T:]))
    model.clear_cache()
    np.testing.assert_array_equal(_f32(_forward(model, ids, mask if padded else None)), _f32(full))


def test_decoding_past_the_end_of_the_cache_raises():
    model = _model(implementation="xla")
    model.init_cache(B, 4)
    for block in model.blocks:  # as after decoding 4 tokens: the cache is full
        block.self_attention.cache_index[...] = jnp.asarray(4, jnp.int32)
    with pytest.raises(ValueError, match="cache"):
        model(_ids(5, (B, 1)), decode=True)  # position 4 of a cache of 4


def test_a_chunk_longer_than_the_cache_raises():
    model = _model(implementation="xla")
    model.init_cache(B, 4)
    with pytest.raises(ValueError, match="cache"):
        model(_ids(6, (B, 6)), decode=True)


# ---------------------------------------------------------------------------------------------
# Causality, positions, padding.


@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_future_tokens_do_not_change_earlier_logits(position):
    model = _model(position=position)
    ids = _ids(7)
    logits = _f32(_forward(model, ids))
    for t in (0, 4, 7):
        changed = ids.copy()
        changed[:, t + 1 :] = (ids[:, t + 1 :] + 1 + t) % V
        other = _f32(_forward(model, changed))
        np.testing.assert_array_equal(other[:, : t + 1], logits[:, : t + 1])
        assert np.abs(other[:, t + 1 :] - logits[:, t + 1 :]).max() > 0.1


def test_gradient_of_logits_at_t_wrt_later_inputs_is_zero():
    """d logits[:, t] / d E[ids[:, s]] and d logits[:, t] / d P[s] are exactly 0 for s > t and
    nonzero for s <= t (untied E, every token distinct, so each row of E belongs to one
    position)."""
    model = _model(tie_embeddings=False, implementation="xla")
    ids = np.random.default_rng(8).permutation(V)[: B * T].reshape(B, T).astype(np.int32)
    cotangent = np.random.default_rng(9).standard_normal((B, T, V)).astype(np.float32)

    @nnx.jit
    def gradients(model, weight):  # weight [T] selects the logits whose gradient is taken
        def loss(model):
            return jnp.sum(model(ids) * cotangent * weight[None, :, None])

        grads = nnx.grad(loss)(model)
        return (
            grads["token_embedding"]["embedding"][...],
            grads["position_embedding"]["embedding"][...],
        )

    for t in (0, 3, 8):
        token_grad, position_grad = (np.abs(np.asarray(g)) for g in gradients(model, np.eye(T)[t]))
        for s in range(T):
            rows = token_grad[ids[:, s]]
            if s > t:
                assert not rows.any(), (t, s)
            else:
                assert (rows.max(axis=-1) > 0).all(), (t, s)
        assert not position_grad[t + 1 :].any()
        assert (position_grad[: t + 1].max(axis=-1) > 0).all()


@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_positions_break_permutation_invariance(position):
    """One causal layer without positions sees its prefix as a set: the last logits do not change
    when the earlier tokens are permuted. Positions must break that."""
    model = _model(position=position, num_layers=1, implementation="xla")
    ids = _ids(10)
    permuted = ids.copy()
    permuted[:, : T - 1] = ids[:, : T - 1][:, ::-1]

    def moved():
        return _f32(_forward(model, permuted)[:, -1]) - _f32(_forward(model, ids)[:, -1])

    assert np.abs(moved()).max() > 0.1
    # The control: the same model with its positions turned off.
    if position == "learned":
        table = model.position_embedding.embedding
        table[...] = jnp.zeros_like(table[...])
    else:
        model.blocks[0].self_attention.rotary_base = None
    np.testing.assert_allclose(moved(), 0.0, atol=2e-5)


def _padded_batch():
    ids = _ids(11)
    mask = np.ones((B, T), bool)
    mask[0, 7:] = False  # row 0 right-padded
    mask[1, :3] = False  # row 1 left-padded
    repadded = np.where(mask, ids, (ids + 5) % V)
    return ids, repadded, mask


@pytest.mark.parametrize("position", ["learned", "rotary"])
def test_logits_at_real_tokens_ignore_padded_ids(position):
    model = _model(position=position)
    ids, repadded, mask = _padded_batch()
    logits = _f32(_forward(model, ids, mask))
    other = _f32(_forward(model, repadded, mask))
    np.testing.assert_array_equal(other[mask], logits[mask])
    assert np.isfinite(logits).all()  # padded query rows too (row 1's first ones see no key)
    # Without the mask the left-padded row's real tokens see the padding ids.
    unmasked = _f32(_forward(model, ids)) - _f32(_forward(model, repadded))
    assert np.abs(unmasked[1][mask[1]]).max() > 0.1


# ---------------------------------------------------------------------------------------------
# Attention weights.


@nnx.jit
def _collect(model, ids, mask=None):
    return collect_intermediates(model, ids, attention_mask=mask)


def test_collected_attention_weights_per_layer_causal_and_normalised():
    model = _model()
    ids = _ids(12)
    logits, weights = _collect(model, ids)
    # Sowing runs the "reference" kernel: the same logits within float32 rounding.
    np.testing.assert_allclose(_f32(logits), _f32(_forward(model, ids)), atol=2e-5, rtol=2e-5)
    assert sorted(weights) == [
        ("blocks", i, "self_attention", "attention_weights") for i in range(2)
    ]
    upper = np.triu(np.ones((T, T), bool), k=1)
    for w in weights.values():
        w = np.asarray(w)
        assert w.shape == (B, N, T, T)
        assert not w[..., upper].any()
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
        assert w[..., 1:, :].max(-1).mean() > 0.4  # far from uniform: the test can see errors
    # Layer 0 by hand: softmax(q kᵀ / √H) over the causal prefix, query head n on K/V head n // 2.
    block = model.blocks[0]

    def param(variable):
        return np.asarray(variable[...], np.float64)

    x = param(model.token_embedding.embedding)[ids] + param(model.position_embedding.embedding)[:T]
    x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5)
    h = x * param(block.self_attention_norm.scale) + param(block.self_attention_norm.bias)
    attention, H = block.self_attention, D // N
    q = h @ param(attention.query.kernel) + param(attention.query.bias)
    k = h @ param(attention.key.kernel) + param(attention.key.bias)
    q = q.reshape(B, T, N, H)  # [B, T, N*H] -> [B, T, N, H]
    k = np.repeat(k.reshape(B, T, 2, H), N // 2, axis=2)  # [B, T, K*H] -> [B, T, N, H]
    scores = np.einsum("BTNH,BSNH->BNTS", q, k) / math.sqrt(H)
    scores = np.where(upper, -np.inf, scores)
    expected = np.exp(scores - scores.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    layer0 = weights[("blocks", 0, "self_attention", "attention_weights")]
    np.testing.assert_allclose(layer0, expected, atol=2e-5)
    # Sowing is switched off again afterwards.
    assert not any(b.self_attention.sow_weights for b in model.blocks)


def test_padded_queries_with_no_real_key_get_zero_attention():
    """Row 1's first queries see no real key (padding before them, the future after): their
    attention weights are all 0 (not uniform, not NaN); padded keys get weight 0 everywhere."""
    model = _model()
    ids, _, mask = _padded_batch()
    logits, weights = _collect(model, ids, mask)
    assert np.isfinite(_f32(logits)).all()
    for w in weights.values():
        w = np.asarray(w)
        assert not w[1, :, :3].any()  # fully masked query rows
        assert not (w * ~mask[:, None, None, :]).any()  # padded keys
        np.testing.assert_allclose(w[0].sum(-1), 1.0, atol=1e-5)
        np.testing.assert_allclose(w[1, :, 3:].sum(-1), 1.0, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Dropout.


@nnx.jit
def _inference_and_training(model: TransformerLM, ids):
    return model(ids, deterministic=True), model(ids, deterministic=False)


@pytest.mark.parametrize("rates", [(0.3, 0.0), (0.0, 0.3)], ids=["dropout", "attention_dropout"])
def test_dropout_only_when_not_deterministic(rates):
    dropout_rate, attention_dropout_rate = rates
    overrides = dict(
        implementation="xla",
        dropout_rate=dropout_rate,
        attention_dropout_rate=attention_dropout_rate,
    )
    model = _model(**overrides)
    ids = _ids(13)
    replay = nnx.clone(model)  # the same dropout stream state
    inference, first = map(_f32, _inference_and_training(model, ids))
    again, second = map(_f32, _inference_and_training(model, ids))
    np.testing.assert_array_equal(again, inference)
    # The same weights without dropout in the config: deterministic means no dropout at all.
    plain = _model(implementation="xla")
    nnx.update(plain, nnx.state(model, nnx.Param))
    np.testing.assert_array_equal(_f32(_forward(plain, ids)), inference)

    assert np.isfinite(first).all()
    assert np.abs(first - inference).max() > 1e-2
    assert np.abs(second - first).max() > 1e-2  # a fresh mask on every call
    np.testing.assert_array_equal(_f32(_inference_and_training(replay, ids)[1]), first)


def test_dropout_masks_come_from_the_dropout_stream():
    """`nnx.Rngs(dropout=seed)` at construction decides the masks: the same seed repeats them,
    another seed changes them (models built the ordinary way here, not by `_model`; the config of
    the "dropout" case above, so the compiled function is shared)."""
    config = _config(implementation="xla", dropout_rate=0.3, attention_dropout_rate=0.0)
    ids = _ids(13)

    def training_logits(dropout_seed):
        model = TransformerLM(config, rngs=nnx.Rngs(params=0, dropout=dropout_seed))
        _spread(model, 1)
        return _f32(_inference_and_training(model, ids)[1])

    first = training_logits(5)
    np.testing.assert_array_equal(training_logits(5), first)
    assert np.abs(training_logits(6) - first).max() > 1e-2


# ---------------------------------------------------------------------------------------------
# Errors.


def test_sequence_longer_than_the_position_table_raises():
    with pytest.raises(ValueError, match="max_length"):
        _model()(_ids(16, (1, MAX_LENGTH + 1)))


@pytest.mark.parametrize(
    "ids",
    [
        np.zeros((B, T), np.float32),  # not integer ids
        np.zeros((T,), np.int32),  # [T]: no batch axis
        np.zeros((B, T, 1), np.int32),
    ],
    ids=["float", "rank1", "rank3"],
)
def test_bad_ids_raise(ids):
    with pytest.raises(ValueError, match=r"ids must be integer token ids \[B, T\]"):
        _model()(ids)


def test_init_cache_beyond_the_learned_table_raises():
    with pytest.raises(ValueError, match="max_length"):
        _model().init_cache(B, MAX_LENGTH + 1)
    _model(position="rotary").init_cache(B, 2 * MAX_LENGTH)  # rotary positions have no table


def test_decode_without_init_cache_raises():
    with pytest.raises(ValueError, match="init_cache"):
        _model()(_ids(15), decode=True)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(model_dim=26), "model_dim"),  # 26 is not a multiple of 4 heads
        (dict(num_kv_heads=3), "num_kv_heads"),  # 3 does not divide 4
        (dict(num_kv_heads=0), "num_kv_heads"),
        (dict(num_heads=0), "num_heads"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(num_layers=0), "num_layers"),
        (dict(max_length=-1), "max_length"),
        (dict(dropout_rate=1.0), "dropout_rate"),
        (dict(dropout_rate=-0.1), "dropout_rate"),
        (dict(attention_dropout_rate=1.5), "attention_dropout_rate"),
        (dict(position="absolute"), "position"),
    ],
)
def test_bad_config_raises(overrides, message):
    with pytest.raises(ValueError, match=message):
        _config(**overrides)


def test_named_variants_and_their_errors():
    config = TransformerLMConfig.named("gpt2", dropout_rate=0.1, max_length=64)
    shape = (config.num_layers, config.num_heads, config.model_dim, config.mlp_dim)
    assert shape == (12, 12, 768, 3072)
    assert (config.vocab_size, config.max_length, config.dropout_rate) == (50257, 64, 0.1)
    assert (config.activation, config.layer_norm_eps, config.tie_embeddings) == (
        "gelu_tanh",
        1e-5,
        True,
    )
    with pytest.raises(ValueError, match="unknown variant 'gpt3'"):
        TransformerLMConfig.named("gpt3")
    with pytest.raises(ValueError, match="hidden_size"):
        TransformerLMConfig.named("gpt2", hidden_size=768)
    with pytest.raises(ValueError, match="dropout_rate"):
        TransformerLMConfig.named("tiny", dropout_rate=2.0)


def test_attention_mask_is_checked_for_shape_and_dtype():
    model = _model()
    ids = jnp.ones((2, 5), jnp.int32)
    with pytest.raises(ValueError, match=r"attention_mask must have shape \[B, T\] = \[2, 5\]"):
        model(ids, jnp.ones((2, 4), bool))
    with pytest.raises(TypeError, match="attention_mask must be boolean or 0/1 integers"):
        model(ids, jnp.ones((2, 5), jnp.float32))
