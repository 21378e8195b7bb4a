"""Every position kind of `TransformerLM` and of the self-attention of `Transformer`: it trains,
cached decoding equals the full pass, only the learned table has a length limit, and a bad name
is one error listing the kinds.

The models are the wide-spread ones of the decoding tests (attention far from uniform), so a
wrong position offset in the caches moves the logits by O(1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from attn.models import Transformer, TransformerConfig, TransformerLM, TransformerLMConfig
from attn.models.position_kinds import POSITION_KINDS
from tests.decoding.peaked_models import make_lm, make_transformer

B, S, T, CHUNK = 2, 7, 9, 3
V = 23  # the vocabulary of the peaked models


def _ids(seed: int, shape: tuple[int, int]) -> jax.Array:
    return jnp.asarray(np.random.default_rng(seed).integers(3, V, shape), jnp.int32)


def _in_chunks(step, tokens: jax.Array) -> jax.Array:
    """Logits of `tokens` [B, T] from the caches, CHUNK tokens per call (a prefill, then chunks
    at positions CHUNK, 2 CHUNK, ...: one compilation, several cache offsets)."""
    chunks = [tokens[:, t : t + CHUNK] for t in range(0, T, CHUNK)]
    return jnp.concatenate([step(chunk) for chunk in chunks], axis=1)


@nnx.jit
def _lm_step(model, chunk):
    return model(chunk, decode=True)


@nnx.jit
def _transformer_step(model, chunk):
    return model.decode(chunk, None, decode=True)


@pytest.mark.parametrize("position", POSITION_KINDS)
def test_lm_cached_decoding_equals_the_full_forward_for_every_position_kind(position):
    model = make_lm(position=position, implementation="xla")
    tokens = _ids(1, (B, T))
    full = nnx.jit(lambda m, x: m(x))(model, tokens)
    model.init_cache(B, T + 3)  # unused cache slots must stay masked
    cached = _in_chunks(lambda chunk: _lm_step(model, chunk), tokens)
    assert float(jnp.std(full)) > 0.5  # peaked logits: a wrong position would show
    np.testing.assert_allclose(cached, full, atol=2e-4, rtol=0)


@pytest.mark.parametrize("position", POSITION_KINDS)
def test_transformer_cached_decoding_equals_the_full_decode_for_every_position_kind(position):
    model = make_transformer(position=position, implementation="xla")
    src, tgt = _ids(2, (B, S)), _ids(3, (B, T))
    src_mask = jnp.arange(S)[None, :] < jnp.asarray([[S], [4]])
    encoded, full = nnx.jit(
        lambda m, s, t, mask: (m.encode(s, mask), m(s, t, mask))
    )(model, src, tgt, src_mask)  # fmt: skip
    model.init_cache(B, T + 3, encoded, src_mask)
    cached = _in_chunks(lambda chunk: _transformer_step(model, chunk), tgt)
    assert float(jnp.std(full)) > 0.5
    np.testing.assert_allclose(cached, full, atol=2e-4, rtol=0)


def _position_gradients(grads, names: tuple[str, ...]) -> list[float]:
    """The largest |gradient| of every position parameter (the learned or T5 tables)."""
    return [
        float(jnp.abs(value[...]).max())
        for path, value in nnx.to_flat_state(grads)
        if any(name in path for name in names)
    ]


@pytest.mark.parametrize("position", POSITION_KINDS)
def test_every_position_kind_trains_the_lm_and_the_transformer(position):
    """Three SGD steps on one batch lower the loss of both models, with finite gradients that
    reach the position tables (learned, T5) where there are some."""
    common = dict(vocab_size=V, max_length=16, position=position, implementation="xla")
    lm = TransformerLM(TransformerLMConfig.named("tiny", num_layers=1, **common), rngs=nnx.Rngs(0))
    layers = dict(num_encoder_layers=1, num_decoder_layers=1)
    transformer = Transformer(TransformerConfig.named("tiny", **layers, **common), rngs=nnx.Rngs(0))
    models = nnx.List([lm, transformer])
    src, tgt = _ids(5, (4, S)), _ids(6, (4, T))

    def loss_fn(models):
        lm, transformer = models
        xent = optax.softmax_cross_entropy_with_integer_labels
        lm_loss = xent(lm(tgt[:, :-1]), tgt[:, 1:]).mean()
        return lm_loss + xent(transformer(src, tgt[:, :-1]), tgt[:, 1:]).mean()

    optimizer = nnx.Optimizer(models, optax.sgd(0.3), wrt=nnx.Param)

    @nnx.jit
    def step(models, optimizer):
        loss, grads = nnx.value_and_grad(loss_fn)(models)
        optimizer.update(models, grads)
        return loss, grads

    losses = []
    for _ in range(3):
        loss, grads = step(models, optimizer)
        losses.append(float(loss))
        assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert losses[-1] < losses[0]
    absolute = ("position_embedding", "encoder_positions", "decoder_positions")
    relative = ("relative_bias", "encoder_relative_bias", "decoder_relative_bias")
    tables = _position_gradients(grads, absolute + relative)
    assert len(tables) == {"learned": 3, "t5": 3}.get(position, 0)
    assert all(g > 0 for g in tables)


def test_without_positions_the_encoder_is_permutation_equivariant_and_with_them_not():
    src = _ids(7, (1, S))
    permutation = np.random.default_rng(0).permutation(S)
    for position in POSITION_KINDS:
        model = make_transformer(position=position, implementation="xla")
        encode = nnx.jit(lambda m, x: m.encode(x))
        moved = encode(model, src[:, permutation])
        error = float(jnp.abs(moved - encode(model, src)[:, permutation]).max())
        if position == "none":
            assert error < 1e-5
        else:
            assert error > 1e-2, position


def test_only_the_learned_table_limits_the_length():
    long_ids = _ids(8, (1, 20))
    for position in POSITION_KINDS:
        lm = make_lm(position=position, implementation="xla")  # max_length=16
        transformer = make_transformer(position=position, implementation="xla")
        if position == "learned":
            with pytest.raises(ValueError, match=r"T=20 exceeds max_length=16 of the learned"):
                lm(long_ids)
            with pytest.raises(ValueError, match="cache length=20 exceeds max_length=16"):
                lm.init_cache(1, 20)
            with pytest.raises(ValueError, match=r"src length S=20 exceeds max_length=16"):
                transformer(long_ids, long_ids[:, :3])
            with pytest.raises(ValueError, match=r"tgt length T=20 exceeds max_length=16"):
                transformer(long_ids[:, :3], long_ids)
        else:
            both = nnx.jit(lambda lm, transformer, x: (lm(x), transformer(x, x)))
            assert [y.shape for y in both(lm, transformer, long_ids)] == [(1, 20, V)] * 2


@pytest.mark.parametrize("config_cls", [TransformerLMConfig, TransformerConfig])
def test_a_bad_position_name_is_one_error_listing_the_kinds(config_cls):
    kinds = r"\['none', 'sinusoidal', 'learned', 'rotary', 'alibi', 't5'\]"
    with pytest.raises(
        ValueError, match=rf"{config_cls.__name__}: position must be one of {kinds}"
    ):
        config_cls(position="relative")


@pytest.mark.parametrize("config_cls", [TransformerLMConfig, TransformerConfig])
def test_widths_that_a_position_kind_cannot_use_are_rejected(config_cls):
    with pytest.raises(ValueError, match="sinusoidal positions need an even model_dim, got 9"):
        config_cls(position="sinusoidal", model_dim=9, num_heads=3, mlp_dim=8)
    with pytest.raises(ValueError, match=r"rotary positions need an even head dim .* = 3"):
        config_cls(position="rotary", model_dim=12, num_heads=4, mlp_dim=8)
