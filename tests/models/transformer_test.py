"""The encoder-decoder `Transformer`: torch `nn.Transformer` as a peer (post-LN and pre-LN, every
layer, all masks), cached decoding against the full pass, no future leak, padding invariance,
the paper's parameter counts, embedding sharing and tying, and bad input.

The peer fixtures are made by `tests/fixtures/make_torch_transformer.py`; this file needs no torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.kernels.positions import sinusoidal_encoding
from attn.layers.blocks import TransformerBlock
from attn.models.transformer import Transformer, TransformerConfig

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures"
B, S, T = 2, 7, 6
SRC_LENGTHS = np.array([7, 4])


def tiny(**overrides) -> TransformerConfig:
    """A small config with distinct sizes: V=37, D=24, F=40, N=4, K=2 (H=6).

    The attention implementation is "xla": un-jitted calls of the CPU default ("blockwise")
    compile its scan on every call, and jitted ones take longer to compile, which would make
    these tests slow. The peer test runs the default implementation.
    """
    fields = dict(
        vocab_size=37,
        model_dim=24,
        mlp_dim=40,
        num_heads=4,
        num_kv_heads=2,
        implementation="xla",
    )
    return TransformerConfig.named("tiny", **{**fields, **overrides})


def make(config: TransformerConfig, seed: int = 0) -> Transformer:
    return Transformer(config, rngs=nnx.Rngs(seed))


def ids(shape, vocab=37, seed=0) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).integers(0, vocab, size=shape), jnp.int32)


def src_mask() -> jax.Array:
    return jnp.arange(S)[None, :] < jnp.asarray(SRC_LENGTHS)[:, None]  # [B, S], True = real


def num_params(config: TransformerConfig) -> int:
    """Parameter count of a model built abstractly (no memory is allocated)."""
    model = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
    return sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))


# ----------------------------------------------------------------------------------------------
# (a) Peer: torch nn.Transformer, every layer.


def load_fixture(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"torch_transformer_{name}.npz") as data:
        return {key: data[key] for key in data.files}


def _set_linear(linear: nnx.Linear, weight: np.ndarray, bias: np.ndarray) -> None:
    """torch (out, in) weight -> JAX (in, out) kernel."""
    assert linear.kernel.shape == weight.T.shape, (linear.kernel.shape, weight.shape)
    linear.kernel[...] = jnp.asarray(weight.T)
    linear.bias[...] = jnp.asarray(bias)


def _set_norm(norm: nnx.LayerNorm, w: dict[str, np.ndarray], prefix: str) -> None:
    norm.scale[...] = jnp.asarray(w[f"{prefix}/weight"])
    norm.bias[...] = jnp.asarray(w[f"{prefix}/bias"])


def _set_attention(attention, w: dict[str, np.ndarray], prefix: str) -> None:
    """torch MultiheadAttention: in_proj_weight [3D, D] = [W_q; W_k; W_v] (rows), out_proj."""
    weights = np.split(w[f"{prefix}/in_proj_weight"], 3, axis=0)  # [3D, D] -> 3 × [D, D]
    biases = np.split(w[f"{prefix}/in_proj_bias"], 3)
    for linear, weight, bias in zip(
        (attention.query, attention.key, attention.value), weights, biases, strict=True
    ):
        _set_linear(linear, weight, bias)
    _set_linear(attention.out, w[f"{prefix}/out_proj/weight"], w[f"{prefix}/out_proj/bias"])


def load_torch_transformer(model: Transformer, w: dict[str, np.ndarray]) -> None:
    """Copy `nn.Transformer` weights into the encoder and decoder stacks of `model`.

    Encoder layer: self_attn, linear1/linear2 (the MLP), norm1 (after/before self-attention),
    norm2 (MLP). Decoder layer: self_attn, multihead_attn (cross-attention), linear1/linear2,
    norm1 (self-attention), norm2 (cross-attention), norm3 (MLP). Final: encoder.norm, decoder.norm.
    """
    for i, block in enumerate(model.encoder_blocks):
        p = f"encoder/layers/{i}"
        _set_attention(block.self_attention, w, f"{p}/self_attn")
        _set_linear(block.mlp.input_proj, w[f"{p}/linear1/weight"], w[f"{p}/linear1/bias"])
        _set_linear(block.mlp.output_proj, w[f"{p}/linear2/weight"], w[f"{p}/linear2/bias"])
        _set_norm(block.self_attention_norm, w, f"{p}/norm1")
        _set_norm(block.mlp_norm, w, f"{p}/norm2")
    for i, block in enumerate(model.decoder_blocks):
        p = f"decoder/layers/{i}"
        _set_attention(block.self_attention, w, f"{p}/self_attn")
        _set_attention(block.cross_attention, w, f"{p}/multihead_attn")
        _set_linear(block.mlp.input_proj, w[f"{p}/linear1/weight"], w[f"{p}/linear1/bias"])
        _set_linear(block.mlp.output_proj, w[f"{p}/linear2/weight"], w[f"{p}/linear2/bias"])
        _set_norm(block.self_attention_norm, w, f"{p}/norm1")
        _set_norm(block.cross_attention_norm, w, f"{p}/norm2")
        _set_norm(block.mlp_norm, w, f"{p}/norm3")
    _set_norm(model.encoder_norm, w, "encoder/norm")
    _set_norm(model.decoder_norm, w, "decoder/norm")


def record_block_outputs(monkeypatch) -> list[jax.Array]:
    """Make every `TransformerBlock` call append its output to the returned list."""
    outputs: list[jax.Array] = []
    call = TransformerBlock.__call__

    def recording_call(self, *args, **kwargs):
        out = call(self, *args, **kwargs)
        outputs.append(out)
        return out

    monkeypatch.setattr(TransformerBlock, "__call__", recording_call)
    return outputs


# float32 on both sides; the largest differences seen are about 2e-6 on values up to 3.4.
PEER_TOL = dict(rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("name", ["post_ln", "pre_ln"])
def test_matches_torch_nn_transformer_every_layer(name, monkeypatch):
    w = load_fixture(name)
    spec = json.loads(str(w["config"]))
    # The fixture is only a test if attention is far from uniform (1/7 over the source keys).
    assert w["peakiness"].min() > 0.3, w["peakiness"]
    config = TransformerConfig(
        vocab_size=11,
        num_encoder_layers=spec["num_encoder_layers"],
        num_decoder_layers=spec["num_decoder_layers"],
        num_heads=spec["nhead"],
        model_dim=spec["d_model"],
        mlp_dim=spec["dim_feedforward"],
        activation=spec["activation"],
        norm_first=spec["norm_first"],
        final_norm=True,  # nn.Transformer always has encoder.norm and decoder.norm
        layer_norm_eps=spec["layer_norm_eps"],
        implementation=None,  # the default for the platform ("blockwise" on the CPU)
    )
    model = make(config)
    load_torch_transformer(model, w)
    model.eval()  # peer parity in evaluation mode

    # torch masks: True = masked; attn masks: True = real token.
    src_mask, tgt_mask = ~w["src_key_padding_mask"], ~w["tgt_key_padding_mask"]
    np.testing.assert_array_equal(w["memory_key_padding_mask"], w["src_key_padding_mask"])
    T_ = w["tgt"].shape[1]
    np.testing.assert_array_equal(w["tgt_mask"], np.triu(np.ones((T_, T_), bool), 1))
    assert src_mask.all(-1).any() and not src_mask.all()  # one example padded, one not
    assert not tgt_mask.all()

    recorded = record_block_outputs(monkeypatch)

    @nnx.jit
    def run(model, src, tgt, src_mask, tgt_mask):
        recorded.clear()
        memory = model.encode_embeddings(src, src_mask)
        out = model.decode_embeddings(tgt, memory, src_mask, tgt_mask)
        return memory, out, list(recorded)  # every block's output, in call order

    memory, out, outputs = run(model, w["src"], w["tgt"], src_mask, tgt_mask)
    L_enc, L_dec = config.num_encoder_layers, config.num_decoder_layers
    assert len(outputs) == L_enc + L_dec

    def check(got, want, mask, what):
        got, want = np.asarray(got), np.asarray(want)
        assert got.shape == want.shape, what
        np.testing.assert_allclose(got[mask], want[mask], err_msg=what, **PEER_TOL)

    for i in range(L_enc):
        check(outputs[i], w[f"encoder_layer_{i}"], src_mask, f"encoder layer {i}")
    check(memory, w["memory"], src_mask, "encoder output (after encoder.norm)")
    for i in range(L_dec):
        check(outputs[L_enc + i], w[f"decoder_layer_{i}"], tgt_mask, f"decoder layer {i}")
    check(out, w["out"], tgt_mask, "decoder output (after decoder.norm)")


# ----------------------------------------------------------------------------------------------
# (b) Cached decoding equals the full pass; cross-attention keys/values are computed once.


PREFILL = 3  # target tokens given to the first cached call; single tokens follow


def decode_in_steps(model: Transformer, tgt: jax.Array, decode=None) -> jax.Array:
    """Logits of `tgt` [B, T] from the caches: a prefill of PREFILL tokens, then one at a time."""
    decode = decode or (lambda m, chunk: m.decode(chunk, None, decode=True))
    chunks = [tgt[:, :PREFILL]] + [tgt[:, t : t + 1] for t in range(PREFILL, tgt.shape[1])]
    return jnp.concatenate([decode(model, chunk) for chunk in chunks], axis=1)


@pytest.mark.parametrize(
    "dtype, position, jit, tol",
    [
        ("float32", "sinusoidal", False, 2e-5),
        # Jitted: the cache offset is traced.
        ("bfloat16", "learned", True, 0.05),
    ],
)
def test_cached_decoding_equals_full_decode(dtype, position, jit, tol):
    config = tiny(dtype=dtype, position=position, norm_first=position == "learned")
    model = make(config)
    src, tgt = ids((B, S), seed=1), ids((B, T), seed=2)

    def full_pass(model, src, tgt):
        encoded = model.encode(src, src_mask())
        return encoded, model.decode(tgt, encoded, src_mask())

    encoded, full = (nnx.jit(full_pass) if jit else full_pass)(model, src, tgt)
    assert full.shape == (B, T, 37) and full.dtype == jnp.dtype(dtype)

    # The source mask is given once, to init_cache, and encoded is not passed again.
    model.init_cache(B, T, encoded, src_mask())
    step = nnx.jit(lambda m, chunk: m.decode(chunk, decode=True)) if jit else None
    cached = decode_in_steps(model, tgt, step)
    scale = float(jnp.abs(full.astype(jnp.float32)).max())
    np.testing.assert_allclose(
        np.asarray(cached, np.float32), np.asarray(full, np.float32), atol=tol * scale, rtol=0
    )
    assert int(model.decoder_blocks[0].self_attention.cache_index[...]) == T


def test_cross_attention_keys_and_values_are_computed_once():
    model = make(tiny())
    src, tgt = ids((B, S), seed=3), ids((B, T), seed=4)
    encoded = model.encode(src, src_mask())
    full = model.decode(tgt, encoded, src_mask())

    model.init_cache(B, T, encoded, src_mask())
    for block in model.decoder_blocks:
        attention = block.cross_attention
        K, H = attention.num_kv_heads, attention.head_dim
        assert attention.cross_key.shape == attention.cross_value.shape == (B, S, K, H)
        expected = attention.key(encoded).reshape(B, S, K, H)  # [B, S, K*H] -> [B, S, K, H]
        np.testing.assert_allclose(attention.cross_key[...], expected, rtol=1e-6, atol=1e-6)
        # Were the keys/values projected again while decoding, these zero weights would show.
        for linear in (attention.key, attention.value):
            linear.kernel[...] = jnp.zeros_like(linear.kernel[...])
            linear.bias[...] = jnp.zeros_like(linear.bias[...])
    np.testing.assert_allclose(decode_in_steps(model, tgt), full, rtol=0, atol=2e-5)

    model.clear_cache()
    assert model.decoder_blocks[0].cross_attention.cross_key is None
    with pytest.raises(ValueError, match="init_cache"):
        model.decode(tgt[:, :1], decode=True)


def test_init_cache_source_mask_is_used_while_decoding():
    """Decoding without the source mask must differ: the cached mask is what makes them equal."""
    model = make(tiny())
    src, tgt = ids((B, S), seed=5), ids((B, T), seed=6)
    encoded = model.encode(src, src_mask())
    masked = model.decode(tgt, encoded, src_mask())
    unmasked = model.decode(tgt, encoded)
    model.init_cache(B, T, encoded, src_mask())
    cached = decode_in_steps(model, tgt)
    np.testing.assert_allclose(cached, masked, atol=2e-5, rtol=0)
    assert np.abs(np.asarray(masked[1] - unmasked[1])).max() > 1e-3  # example 1 is padded


# ----------------------------------------------------------------------------------------------
# (c) No future leak, padding invariance, embeddings.


@pytest.mark.parametrize("norm_first", [False, True])
def test_no_future_leak_through_the_whole_model(norm_first):
    model = make(tiny(norm_first=norm_first))
    src, tgt = ids((B, S), seed=7), ids((B, T), seed=8)

    def forward(model, src, tgt):
        return model(src, tgt, src_mask())

    base = forward(model, src, tgt)
    for t in range(T - 1):
        changed = tgt.at[:, t + 1 :].set((tgt[:, t + 1 :] + 1 + t) % 37)
        logits = forward(model, src, changed)
        np.testing.assert_array_equal(logits[:, : t + 1], base[:, : t + 1], err_msg=f"t={t}")
        assert np.abs(np.asarray(logits[:, t + 1 :] - base[:, t + 1 :])).max() > 1e-4


def test_no_future_leak_gradient():
    """d logits[t] / d target embedding[u] = 0 for u > t, nonzero for u <= t."""
    model = make(tiny(num_encoder_layers=1))  # fewer layers: less to compile
    encoded = model.encode(ids((B, S), seed=9))
    y = jax.random.normal(jax.random.key(0), (B, T, 24))

    def out(y):
        return model.logits(model.decode_embeddings(y, encoded))[0].sum(-1)  # [T]

    jacobian = np.abs(np.asarray(jax.jit(jax.jacobian(out))(y)[:, 0])).sum(-1)  # [T, T]
    assert (jacobian[np.triu_indices(T, 1)] == 0).all()
    assert (jacobian[np.tril_indices(T)] > 0).all()


def test_padding_is_invisible():
    """Padded source tokens and left-padded target tokens do not change real-position logits."""
    model = make(tiny())
    src, tgt = ids((B, S), seed=10), ids((B, T), seed=11)

    def forward(model, *args):
        return model(*args)

    tgt_mask = jnp.arange(T)[None, :] >= jnp.asarray([0, 2])[:, None]  # example 1: 2 left pads
    base = forward(model, src, tgt, src_mask(), tgt_mask)
    padded_src = src.at[1, 4:].set((src[1, 4:] + 5) % 37)
    padded_tgt = tgt.at[1, :2].set((tgt[1, :2] + 5) % 37)
    again = forward(model, padded_src, padded_tgt, src_mask(), tgt_mask)
    real = np.asarray(tgt_mask)
    np.testing.assert_allclose(np.asarray(again)[real], np.asarray(base)[real], atol=1e-5, rtol=0)
    # ... while a real source token does change them.
    moved = forward(model, src.at[1, 0].set((src[1, 0] + 5) % 37), tgt, src_mask(), tgt_mask)
    assert np.abs(np.asarray(moved[1] - base[1])).max() > 1e-3
    # Without the target mask the left pads are attended to.
    unmasked = forward(model, src, padded_tgt, src_mask(), jnp.ones((B, T), bool))
    assert np.abs(np.asarray(unmasked[1, 2:] - base[1, 2:])).max() > 1e-3


def test_embeddings_are_scaled_and_positioned():
    model = make(tiny())
    src = ids((B, S), seed=12)
    table = model.source_embedding.embedding[...]
    expected = table[src] * math.sqrt(24) + sinusoidal_encoding(S, 24)
    np.testing.assert_allclose(model.embed_source(src), expected, rtol=1e-6, atol=1e-6)
    unscaled = make(tiny(scale_embeddings=False, position="learned"))
    expected = (
        unscaled.source_embedding.embedding[...][src]
        + unscaled.encoder_positions.embedding[...][:S]
    )
    np.testing.assert_allclose(unscaled.embed_source(src), expected, rtol=1e-6, atol=1e-6)
    # Decoding from an offset uses the positions of the offset.
    tgt = ids((B, 2), seed=13)
    at_offset = model.embed_target(tgt, offset=3)
    expected = table[tgt] * math.sqrt(24) + sinusoidal_encoding(2, 24, offset=3)
    np.testing.assert_allclose(at_offset, expected, rtol=1e-6, atol=1e-6)


def test_dropout_applies_only_when_not_deterministic():
    model = make(tiny(dropout_rate=0.3, attention_dropout_rate=0.2))
    for block in (*model.encoder_blocks, *model.decoder_blocks):
        assert block.dropout.rate == block.mlp.dropout.rate == 0.3
        assert block.self_attention.dropout_rate == 0.2
    assert model.decoder_blocks[0].cross_attention.dropout_rate == 0.2
    assert model.dropout.rate == 0.3
    # Attention dropout needs the weights (the slow reference path): run residual dropout only.
    model = make(tiny(dropout_rate=0.3))
    model.eval()  # the calls without `deterministic=`; the training ones override it
    src, tgt = ids((B, S), seed=14), ids((B, T), seed=15)
    eval_a = model(src, tgt, src_mask())
    eval_b = model(src, tgt, src_mask())
    train = model(src, tgt, src_mask(), deterministic=False)
    np.testing.assert_array_equal(eval_a, eval_b)
    assert np.isfinite(np.asarray(train)).all()
    assert np.abs(np.asarray(train - eval_a)).max() > 1e-3
    # Dropout on the embeddings (the paper's "sums of the embeddings and the positional
    # encodings"): zeros where dropped, the rest scaled by 1 / (1 - 0.3).
    kept = model.embed_source(src)
    dropped = np.asarray(model.embed_source(src, deterministic=False))
    zero = dropped == 0
    assert 0.15 < zero.mean() < 0.45
    np.testing.assert_allclose(dropped[~zero], np.asarray(kept)[~zero] / 0.7, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# (d) Parameter counts of the paper's models, (f) sharing and tying.


def expected_params(
    V: int, D: int, F: int, L_enc: int, L_dec: int, *, tables: int = 1, final_norm=False
) -> int:
    """The count, piece by piece (every projection has a bias; the output matrix has none).

    attention: 4 projections D -> D with biases = 4 (D² + D); MLP: D F + F + F D + D;
    LayerNorm: scale and offset, 2 D. Encoder block: attention + MLP + 2 norms; decoder block:
    2 attentions + MLP + 3 norms. Embedding tables V D each (one when shared and tied; sinusoidal
    positions have no parameters).
    """
    attention = 4 * (D * D + D)
    mlp = D * F + F + F * D + D
    norm = 2 * D
    encoder = L_enc * (attention + mlp + 2 * norm)
    decoder = L_dec * (2 * attention + mlp + 3 * norm)
    return tables * V * D + encoder + decoder + (2 * norm if final_norm else 0)


def test_parameter_count_of_the_papers_base_and_big_models():
    # Base (V = 37000 shared BPE, embeddings shared and tied to the output): 18,944,000 in the
    # one table + 6 × 3,152,384 encoder + 6 × 4,204,032 decoder = 63,082,496 (the paper's
    # Table 3 says 65M).
    base = TransformerConfig.named("base")
    assert (base.model_dim, base.mlp_dim, base.num_heads, base.dropout_rate) == (512, 2048, 8, 0.1)
    assert not base.norm_first and not base.has_final_norm and base.tie_output
    assert num_params(base) == 63_082_496 == expected_params(37000, 512, 2048, 6, 6)
    # Big: 37,888,000 + 6 × 12,596,224 + 6 × 16,796,672 = 214,245,376 (the paper: 213M).
    big = TransformerConfig.named("big")
    assert (big.model_dim, big.mlp_dim, big.num_heads, big.dropout_rate) == (1024, 4096, 16, 0.3)
    assert num_params(big) == 214_245_376 == expected_params(37000, 1024, 4096, 6, 6)


def test_sharing_and_tying_change_the_count_by_one_table_each():
    V, D = 37, 24
    shared = num_params(tiny(num_kv_heads=None))
    assert shared == expected_params(V, D, 40, 2, 2)
    separate = num_params(tiny(num_kv_heads=None, share_embeddings=False))
    untied = num_params(tiny(num_kv_heads=None, tie_output=False))
    neither = num_params(tiny(num_kv_heads=None, share_embeddings=False, tie_output=False))
    assert separate - shared == V * D
    assert untied - shared == D * V
    assert neither - shared == 2 * V * D
    # Two vocabularies: source table Vs D, target table Vt D, output D Vt when untied.
    two = tiny(num_kv_heads=None, share_embeddings=False, target_vocab_size=53)
    assert num_params(two) == shared - V * D + 37 * D + 53 * D
    assert num_params(dataclasses.replace(two, tie_output=False)) == num_params(two) + D * 53
    # Pre-LN adds the two final norms.
    assert num_params(tiny(num_kv_heads=None, norm_first=True)) == shared + 2 * 2 * D
    # Learned positions: one [max_length, D] table for the encoder and one for the decoder.
    learned = num_params(tiny(num_kv_heads=None, position="learned", max_length=50))
    assert learned - shared == 2 * 50 * D


def test_tied_output_uses_the_target_embedding():
    model = make(tiny(share_embeddings=False, target_vocab_size=53))
    h = jax.random.normal(jax.random.key(1), (B, T, 24))
    np.testing.assert_allclose(
        model.logits(h), h @ model.target_embedding.embedding[...].T, rtol=1e-5, atol=1e-5
    )
    src, tgt = ids((B, S), seed=16), ids((B, T), vocab=53, seed=17)
    encoded = model.encode(src)
    before = model.decode(tgt, encoded)
    assert before.shape == (B, T, 53)
    # The target table, not the source one, embeds the target.
    model.source_embedding.embedding[...] = jnp.zeros((37, 24))
    np.testing.assert_allclose(model.decode(tgt, encoded), before, rtol=1e-6, atol=1e-6)
    untied = make(tiny(tie_output=False))
    assert untied.output_proj.kernel.shape == (24, 37)
    np.testing.assert_allclose(
        untied.logits(h), h @ untied.output_proj.kernel[...], rtol=1e-5, atol=1e-5
    )


def test_named_variants():
    assert TransformerConfig.named("tiny").model_dim < TransformerConfig.named("small").model_dim
    config = TransformerConfig.named("base", vocab_size=1000, dropout_rate=0.0)
    assert (config.vocab_size, config.dropout_rate, config.model_dim) == (1000, 0.0, 512)
    assert config.position == "sinusoidal" and config.scale_embeddings and config.share_embeddings


# ----------------------------------------------------------------------------------------------
# (e) Errors.


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(num_heads=5), "divisible by num_heads"),
        (dict(num_kv_heads=3), "multiple of num_kv_heads"),
        (dict(num_decoder_layers=0), "num_decoder_layers"),
        (dict(dropout_rate=1.0), "dropout_rate"),
        (dict(position="relative"), "position"),
        (dict(activation="tanh"), "activation"),
        (dict(norm_first=True, final_norm=False), "final_norm"),
        (dict(target_vocab_size=53), "share_embeddings"),
        (dict(model_dim=25, num_heads=1, num_kv_heads=None), "even model_dim"),
        (dict(layer_norm_eps=0.0), "layer_norm_eps"),
    ],
)
def test_config_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny(**overrides)


def test_unknown_variant_and_field():
    with pytest.raises(ValueError, match="unknown variant"):
        TransformerConfig.named("huge")
    with pytest.raises(ValueError, match="unknown field"):
        TransformerConfig.named("base", src_vocab=3)


def test_input_errors():
    model = make(tiny(position="learned", max_length=8))
    src, tgt = ids((B, S)), ids((B, T))
    encoded = model.encode(src)
    with pytest.raises(ValueError, match=r"src must be integer token ids \[B, S\]"):
        model.encode(src.astype(jnp.float32))
    with pytest.raises(ValueError, match=r"tgt must be integer token ids \[B, T\]"):
        model.decode(tgt[0], encoded)
    with pytest.raises(ValueError, match="exceeds max_length=8"):
        model.decode(ids((B, 9)), encoded)
    with pytest.raises(ValueError, match=r"encoded must have shape \[B, S, D\] = \[2, 7, 24\]"):
        model.decode(tgt, encoded[..., :5], src_mask())
    with pytest.raises(ValueError, match=r"= \[1, 7, 24\], got shape \(2, 7, 24\)"):
        model.decode(tgt[:1], encoded)  # batch mismatch
    with pytest.raises(ValueError, match="encoded .* is required"):
        model.decode(tgt, None)
    with pytest.raises(ValueError, match=r"src_mask must have shape \[B, S\] = \[2, 7\]"):
        model.encode(src, src_mask()[:, :5])
    with pytest.raises(ValueError, match=r"src_mask must have shape \[B, S\] = \[2, 7\]"):
        model.decode(tgt, encoded, src_mask()[:1])
    with pytest.raises(ValueError, match=r"tgt_mask must have shape \[B, T\] = \[2, 6\]"):
        model(src, tgt, src_mask(), jnp.ones((B, S), bool))
    with pytest.raises(TypeError, match="src_mask must be boolean"):
        model.encode(src, src_mask().astype(jnp.float32))
    with pytest.raises(ValueError, match="init_cache"):
        model.decode(tgt[:, :1], decode=True)
    with pytest.raises(ValueError, match="cache length=9 exceeds max_length=8"):
        model.init_cache(B, 9, encoded)
    with pytest.raises(ValueError, match=r"encoded must have shape \[B, S, D\] = \[3, 7, 24\]"):
        model.init_cache(3, 8, encoded)
    with pytest.raises(ValueError, match=r"x must have shape \[B, S, D\] = \[\?, \?, 24\]"):
        model.encode_embeddings(encoded[..., :4])
    model.init_cache(B, T, encoded)
    with pytest.raises(ValueError, match=r"encoded must have shape \[B, S, D\] = \[2, 7, 24\]"):
        model.decode(tgt[:, :1], encoded[:, :3], decode=True)
    with pytest.raises(ValueError, match="caches hold a batch of B=2"):
        model.decode(tgt[:1, :1], decode=True)
    decode_in_steps(model, tgt)
    with pytest.raises(ValueError, match="1 more tokens at position 6 overrun .* max_length=6"):
        model.decode(tgt[:, :1], decode=True)
