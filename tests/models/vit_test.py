"""`attn.models.vit`: shapes, patch order, pooling, positions, resizing, variants, errors, dtypes.

Sizes are distinct so that swapped axes fail: B=2 images of H×W = 12×8, C=3, patch p=4, a 3×2
grid (P=6, T=7), D=20 with N=4 heads of H=5, F=36 and 7 classes.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from attn.kernels.positions import sincos_2d_encoding
from attn.layers.intermediates import collect_intermediates
from attn.models.vit import ViT, ViTConfig, resize_position_embeddings

B, HEIGHT, WIDTH, C, PATCH, D, N, F, CLASSES = 2, 12, 8, 3, 4, 20, 4, 36, 7
P = (HEIGHT // PATCH) * (WIDTH // PATCH)


def small_config(**overrides) -> ViTConfig:
    fields = dict(
        num_layers=2,
        num_heads=N,
        model_dim=D,
        mlp_dim=F,
        image_size=(HEIGHT, WIDTH),
        patch_size=PATCH,
        num_channels=C,
        num_classes=CLASSES,
    )
    return ViTConfig(**{**fields, **overrides})


def images(shape=(B, HEIGHT, WIDTH, C), seed=0) -> np.ndarray:
    """N(0, 1) images [B, H, W, C], drawn by NumPy (a JAX draw compiles anew for every shape)."""
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def random_model(config: ViTConfig, seed: int = 0) -> ViT:
    """`ViT(config)` with wide-spread NumPy-drawn parameters: kernels N(0, 1/fan_in), biases and
    LayerNorm shifts N(0, 0.2²), LayerNorm scales 1 + N(0, 0.2²), class token and positions
    N(0, 1). Built with `nnx.eval_shape` and filled in, which skips compiling the initialisers
    for every new shape (seconds per model on a small CPU); `test_initialisation` covers them."""
    rng = np.random.default_rng(seed)
    model = nnx.eval_shape(lambda: ViT(config, rngs=nnx.Rngs(seed)))
    streams = 0
    for path, node in nnx.iter_graph(model):
        if isinstance(node, nnx.RngKey):
            node.set_value(jax.random.fold_in(jax.random.key(seed), streams))
            streams += 1
        elif isinstance(node, nnx.RngCount):
            node.set_value(jnp.zeros((), jnp.uint32))
        elif isinstance(node, nnx.Param):
            shape, dtype = node.get_value().shape, node.get_value().dtype
            if path[-1] == "kernel":
                draw = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[:-1])), shape)
            elif path[-1] == "scale":
                draw = 1.0 + rng.normal(0.0, 0.2, shape)
            elif path[-1] == "bias":
                draw = rng.normal(0.0, 0.2, shape)
            else:  # class token, position table
                draw = rng.normal(0.0, 1.0, shape)
            node.set_value(jnp.asarray(draw, dtype))
    return model


@nnx.jit
def outputs(model: ViT, x: jax.Array):
    """(logits, hidden, hidden_states, attention weights by block path) in one call, compiled
    once per model structure (eager dispatch and compilation dominate on a small CPU)."""
    logits, weights = collect_intermediates(model, x)
    hidden, states = model.encode(x, return_hidden_states=True)
    return logits, hidden, states, weights


def count_params(config: ViTConfig) -> int:
    model = nnx.eval_shape(lambda: ViT(config, rngs=nnx.Rngs(0)))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def projected_patches(model: ViT, x: np.ndarray) -> np.ndarray:
    """NumPy patchify: patch (r, c) flattened in (p, p, C) order, times the kernel, plus bias,
    at row r·w + c: [B, P, D]."""
    rows, cols = HEIGHT // PATCH, WIDTH // PATCH
    # [B, H, W, C] -> [B, rows, p, cols, p, C] -> [B, rows, cols, p, p, C] -> [B, P, p*p*C]
    patches = x.reshape(B, rows, PATCH, cols, PATCH, C).transpose(0, 1, 3, 2, 4, 5)
    patches = patches.reshape(B, rows * cols, PATCH * PATCH * C)
    kernel = np.asarray(model.patch_embedding.kernel[...]).reshape(-1, D)  # [p, p, C, D]
    return patches @ kernel + np.asarray(model.patch_embedding.bias[...])


@pytest.fixture(scope="module")
def small() -> ViT:
    """The small "cls" model with wide-spread weights; clone it before editing."""
    return random_model(small_config())


def test_initialisation():
    """The constructor's own initialisation: zero class token, N(0, 0.02²) positions, LeCun
    normal kernels, zero biases, unit LayerNorm scales."""
    model = ViT(small_config(), rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(model.class_token[...], np.zeros((1, 1, D)))
    table = np.asarray(model.position_embedding.embedding[...])
    assert table.shape == (1 + P, D) and 0.01 < table.std() < 0.03
    kernel = np.asarray(model.blocks[0].mlp.input_proj.kernel[...])
    assert 0.5 / np.sqrt(D) < kernel.std() < 1.5 / np.sqrt(D)
    np.testing.assert_array_equal(model.blocks[1].self_attention.query.bias[...], 0.0)
    np.testing.assert_array_equal(model.final_norm.scale[...], 1.0)
    head = np.asarray(model.head.kernel[...])  # LeCun normal too (not the zeros of fine-tuning)
    assert 0.5 / np.sqrt(D) < head.std() < 1.5 / np.sqrt(D)
    logits = outputs(model, images())[0]
    assert logits.shape == (B, CLASSES) and np.isfinite(np.asarray(logits)).all()


# ---------------------------------------------------------------------------------------------
# Shapes and pooling


def test_cls_pooling_shapes_and_class_token_first(small):
    x = images()
    logits, hidden, states, weights = outputs(small, x)
    assert hidden.shape == (B, 1 + P, D)
    assert len(states) == 3 and all(s.shape == (B, 1 + P, D) for s in states)
    np.testing.assert_allclose(small.final_norm(states[-1]), hidden, rtol=1e-5, atol=1e-5)
    assert small.pool(hidden).shape == (B, D)
    np.testing.assert_array_equal(small.pool(hidden), hidden[:, 0])
    assert logits.shape == (B, CLASSES) and logits.dtype == jnp.float32
    np.testing.assert_allclose(logits, small.head(hidden[:, 0]), rtol=1e-5, atol=1e-5)
    # The class token row of z_0 is the class token plus position row 0, for every image.
    expected = small.class_token[...][0, 0] + small.position_embedding.embedding[...][0]
    np.testing.assert_allclose(states[0][:, 0], jnp.broadcast_to(expected, (B, D)), rtol=1e-5)
    # Every block attends over all 1 + P tokens.
    assert sorted(weights) == [
        ("blocks", i, "self_attention", "attention_weights") for i in range(2)
    ]
    for w in weights.values():
        assert w.shape == (B, N, 1 + P, 1 + P)
        np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)


def test_patches_are_row_major_conv_projections(small):
    """z_0[:, 1 + r·w + c] = patch(r, c) · kernel + bias + position row 1 + r·w + c."""
    x = np.asarray(images())
    positions = np.asarray(small.position_embedding.embedding[...])
    expected = projected_patches(small, x) + positions[1:]
    np.testing.assert_allclose(outputs(small, x)[2][0][:, 1:], expected, atol=1e-5)


def test_positions_matter(small):
    model = nnx.clone(small)
    x = images()
    before = outputs(model, x)[0]
    model.position_embedding.embedding[...] = jnp.zeros((1 + P, D))
    assert not np.allclose(outputs(model, x)[0], before, atol=1e-3)


@pytest.fixture(scope="module")
def variant() -> ViT:
    """The other options together: mean pooling, sin-cos positions, a pre-logits layer (R=11),
    no head."""
    cfg = small_config(
        pooling="mean", position="sincos2d", representation_size=11, num_classes=None
    )
    return random_model(cfg)


def test_mean_pooling_has_no_class_token_and_averages_patches(variant):
    assert variant.config.max_length == P
    assert variant.class_token is None
    features, hidden, states, weights = outputs(variant, images())
    assert hidden.shape == (B, P, D) and states[0].shape == (B, P, D)
    assert all(w.shape == (B, N, P, P) for w in weights.values())
    pooled = variant.pool(hidden)
    expected = jnp.tanh(variant.pre_logits(hidden.mean(axis=1)))
    np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=1e-6)
    # With positions, the patches are told apart: moving them changes the mean-pooled output.
    flipped = images()[:, ::-1]
    assert not np.allclose(outputs(variant, flipped)[0], features, atol=1e-3)


def test_pre_logits_layer_and_no_head(small, variant):
    assert small.pre_logits is None
    assert variant.head is None
    assert variant.pre_logits.kernel[...].shape == (D, 11)
    features, hidden, _, _ = outputs(variant, images())
    assert features.shape == (B, 11)  # no head: the pooled features
    np.testing.assert_allclose(features, variant.pool(hidden), rtol=1e-5, atol=1e-5)
    assert 0.5 < np.abs(np.asarray(features)).max() <= 1.0  # tanh
    cfg = dataclasses.replace(variant.config, num_classes=CLASSES)
    with_head = nnx.eval_shape(lambda: ViT(cfg, rngs=nnx.Rngs(0)))
    assert with_head.head.kernel.shape == (11, CLASSES)
    logits = jax.eval_shape(lambda m, x: m(x), with_head, images())
    assert logits.shape == (B, CLASSES)


def test_sincos_positions_are_fixed(variant):
    assert variant.position_embedding is None
    table = variant.positions()
    expected = sincos_2d_encoding(HEIGHT // PATCH, WIDTH // PATCH, D)
    assert table.shape == (P, D)
    np.testing.assert_allclose(table, expected, rtol=1e-6)
    cfg = small_config(position="sincos2d")
    assert count_params(cfg) == count_params(small_config()) - (1 + P) * D
    x = np.asarray(images())
    states = outputs(variant, x)[2]
    np.testing.assert_allclose(states[0], projected_patches(variant, x) + expected, atol=1e-5)
    # With a class token, its position row is zero.
    abstract = nnx.eval_shape(lambda: ViT(cfg, rngs=nnx.Rngs(0)))
    with_cls = abstract.positions()
    assert with_cls.shape == (1 + P, D)
    np.testing.assert_array_equal(with_cls[0], 0.0)
    np.testing.assert_allclose(with_cls[1:], expected, rtol=1e-6)


def test_cifar_variant_on_32x32_images():
    cfg = ViTConfig.named("cifar")
    assert (cfg.num_patches, cfg.max_length) == (64, 65)
    abstract = nnx.eval_shape(lambda: ViT(cfg, rngs=nnx.Rngs(0)))
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    assert jax.eval_shape(lambda m, x: m.encode(x), abstract, x).shape == (2, 65, 256)
    assert jax.eval_shape(lambda m, x: m(x), abstract, x).shape == (2, 10)
    # A run of its 32×32 geometry with one narrow block, to keep the test short.
    narrow = dataclasses.replace(cfg, num_layers=1, model_dim=D, num_heads=N, mlp_dim=F)
    logits = outputs(random_model(narrow), images((2, 32, 32, 3)))[0]
    assert logits.shape == (2, 10) and np.isfinite(np.asarray(logits)).all()


def test_digits_variant_dropout_only_in_training_and_gradients_reach_every_parameter():
    cfg = ViTConfig.named("digits", dropout_rate=0.1)
    assert (cfg.image_hw, cfg.num_channels, cfg.num_patches) == ((8, 8), 1, 16)
    model = random_model(cfg)
    x = images((3, 8, 8, 1))
    labels = jnp.array([1, 4, 7])

    @nnx.jit
    def step(model):
        """Eval logits twice, training logits twice, and the gradients of a training loss."""

        def loss(model):
            logits = model(x, deterministic=False)
            log_probs = jax.nn.log_softmax(logits)
            return -jnp.mean(jnp.take_along_axis(log_probs, labels[:, None], 1)), logits

        grads, train = nnx.grad(loss, has_aux=True)(model)
        train2 = model(x, deterministic=False)
        return model(x), model(x), train, train2, grads

    model.eval()  # the calls without `deterministic=`; the training ones override it
    logits, again, train, train2, grads = step(model)
    assert logits.shape == (3, 10) and np.isfinite(np.asarray(logits)).all()
    np.testing.assert_array_equal(again, logits)  # deterministic in evaluation mode
    assert not np.allclose(train, logits, atol=1e-4)
    assert not np.allclose(train2, train, atol=1e-4)  # fresh dropout masks per call
    for path, g in nnx.to_flat_state(grads):
        assert float(jnp.abs(g[...]).max()) > 0, f"no gradient for {path}"


# ---------------------------------------------------------------------------------------------
# Variants and parameter counts


@pytest.mark.parametrize(
    "name, expected",
    [
        ("Ti/16", 5_717_416),
        ("S/16", 22_050_664),
        ("B/16", 86_567_656),
        ("L/16", 304_326_632),
    ],
)
def test_parameter_counts_of_named_variants(name, expected):
    """ViT-B/16 is counted whole; the others (to keep the test short) as the count with one block
    plus (L - 1) times the count of a block, both from `nnx.eval_shape`."""
    cfg = ViTConfig.named(name, num_classes=1000)
    assert cfg.image_hw == (224, 224) and cfg.num_patches == 196 and cfg.max_length == 197
    if name == "B/16":
        assert count_params(cfg) == expected
        return
    one = count_params(dataclasses.replace(cfg, num_layers=1))
    block = count_params(dataclasses.replace(cfg, num_layers=2)) - one
    assert one + (cfg.num_layers - 1) * block == expected


def test_parameter_count_formula():
    """Conv p²CD + D, class token D, positions (1+P)D, L blocks (4D² + 4D + 2DF + F + D + 4D),
    final norm 2D, head D·classes + classes."""
    cfg = small_config()
    L = cfg.num_layers
    block = 4 * D * D + 4 * D + 2 * D * F + F + D + 4 * D
    expected = PATCH * PATCH * C * D + D + D + (1 + P) * D + L * block + 2 * D
    expected += D * CLASSES + CLASSES
    assert count_params(cfg) == expected


def test_named_overrides_and_unknown_variant():
    cfg = ViTConfig.named("B/32", num_classes=3, image_size=384)
    assert (cfg.model_dim, cfg.patch_size, cfg.num_classes, cfg.num_patches) == (768, 32, 3, 144)
    assert ViTConfig.named("B/16").num_classes is None
    with pytest.raises(ValueError, match="unknown variant"):
        ViTConfig.named("B/15")
    with pytest.raises(ValueError, match="unknown field"):
        ViTConfig.named("B/16", max_length=10)


# ---------------------------------------------------------------------------------------------
# Resizing positions


def test_resize_to_the_same_grid_is_the_identity(small):
    table = np.random.default_rng(0).normal(size=(1 + 12, D)).astype(np.float32)
    for method in ("bicubic", "bilinear", "nearest"):
        out = resize_position_embeddings(table, (4, 3), (4, 3), method=method)
        np.testing.assert_allclose(out, table, rtol=1e-5, atol=1e-5)
    same = small.resize_positions((HEIGHT, WIDTH))
    np.testing.assert_allclose(
        same.position_embedding.embedding[...],
        small.position_embedding.embedding[...],
        rtol=1e-5,
        atol=1e-5,
    )


def test_resize_keeps_the_class_row_and_interpolates_smoothly():
    """A table linear in (row, column) stays linear: bicubic and bilinear interpolation at the new
    pixel centres, x_old = (x_new + 0.5)·old/new - 0.5, reproduce it away from the border."""
    old, new = (4, 6), (8, 12)
    a, b, c = (np.random.default_rng(0).normal(size=D) for _ in range(3))
    r, q = np.meshgrid(np.arange(old[0]), np.arange(old[1]), indexing="ij")
    grid = r[..., None] * a + q[..., None] * b + c  # [h, w, D]
    cls_row = np.full((1, D), 7.0)
    table = np.concatenate([cls_row, grid.reshape(-1, D)]).astype(np.float32)
    for method in ("bicubic", "bilinear"):
        out = np.asarray(resize_position_embeddings(table, old, new, method=method))
        assert out.shape == (1 + new[0] * new[1], D)
        np.testing.assert_array_equal(out[0], cls_row[0])
        r2 = (np.arange(new[0]) + 0.5) * old[0] / new[0] - 0.5
        q2 = (np.arange(new[1]) + 0.5) * old[1] / new[1] - 0.5
        expected = r2[:, None, None] * a + q2[None, :, None] * b + c
        interior = (slice(3, new[0] - 3), slice(3, new[1] - 3))
        np.testing.assert_allclose(
            out[1:].reshape(*new, D)[interior], expected[interior], rtol=1e-4, atol=1e-4
        )


def test_resize_positions_of_a_model(small):
    before = small.position_embedding.embedding[...]
    bigger = small.resize_positions((20, 16))
    assert bigger.config.image_hw == (20, 16) and bigger.config.num_patches == 20
    table = bigger.position_embedding.embedding[...]
    assert table.shape == (1 + 20, D)
    np.testing.assert_array_equal(table[0], before[0])
    expected = resize_position_embeddings(before, (3, 2), (5, 4))  # (rows, cols) of the grids
    np.testing.assert_allclose(table, expected, rtol=1e-6, atol=1e-6)
    assert small.config == small_config()
    np.testing.assert_array_equal(small.position_embedding.embedding[...], before)
    x = jax.ShapeDtypeStruct((B, 20, 16, C), jnp.float32)  # shapes only: values are tested above
    assert jax.eval_shape(lambda m, x: m(x), bigger, x).shape == (B, CLASSES)
    with pytest.raises(ValueError, match="images"):
        bigger(images())
    mean = random_model(small_config(pooling="mean"))
    assert mean.resize_positions(16).position_embedding.embedding[...].shape == (16, D)


def test_resize_errors():
    table = jnp.zeros((1 + 12, D))
    with pytest.raises(
        ValueError, match=r"table must have shape \[prefix \+ h\*w, D\] = \[10, D\]"
    ):
        resize_position_embeddings(table, (3, 3), (6, 6))
    with pytest.raises(ValueError, match="method"):
        resize_position_embeddings(table, (4, 3), (8, 6), method="lanczos")
    model = nnx.eval_shape(lambda: ViT(small_config(), rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="divisible by patch_size"):
        model.resize_positions(18)


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(image_size=30), r"image_size 30 must be divisible by patch_size \(4\)"),
        (dict(image_size=(12, 10)), r"divisible by patch_size"),
        (dict(model_dim=22), r"model_dim \(22\) must be divisible by num_heads \(4\)"),
        (dict(pooling="max"), "pooling must be 'cls' or 'mean'"),
        (dict(position="rope"), "position must be 'learned' or 'sincos2d'"),
        (dict(position="sincos2d", model_dim=18, num_heads=3), "divisible by 4"),
        (dict(num_classes=0), "num_classes must be > 0"),
        (dict(dropout_rate=1.0), "dropout_rate"),
        (dict(activation="tanh"), "activation must be one of"),
        (dict(image_size=(12, 8, 3)), "image_size must be an int or a pair"),
    ],
)
def test_config_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        small_config(**overrides)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((HEIGHT, WIDTH, C), r"images must have shape \[B, H, W, C\] = \[B, 12, 8, 3\]"),
        (
            (B, C, HEIGHT, WIDTH),
            r"\[B, 12, 8, 3\] \(NHWC, C=3 channels\), got shape \(2, 3, 12, 8\)",
        ),
        ((B, HEIGHT, WIDTH, 1), r"C=3 channels\), got shape \(2, 12, 8, 1\)"),
        ((B, WIDTH, HEIGHT, C), r"images must have shape .* got shape \(2, 8, 12, 3\)"),
    ],
)
def test_image_shape_errors(small, shape, message):
    with pytest.raises(ValueError, match=message):
        small(jnp.zeros(shape))
    with pytest.raises(ValueError, match=message):
        small.encode(jnp.zeros(shape))


def test_integer_images_are_rejected(small):
    with pytest.raises(TypeError, match="images must be floating point"):
        small(jnp.zeros((B, HEIGHT, WIDTH, C), jnp.uint8))


def test_pool_shape_error(small):
    with pytest.raises(ValueError, match=r"hidden must have shape \[B, T, D\] = \[B, 7, 20\]"):
        small.pool(jnp.zeros((B, P, D)))


# ---------------------------------------------------------------------------------------------
# dtypes


def test_bfloat16_compute_is_close_to_float32(small):
    model16 = random_model(dataclasses.replace(small.config, dtype="bfloat16"), seed=1)
    nnx.update(model16, nnx.state(small, nnx.Param))
    x = images()
    logits32, logits16 = outputs(small, x)[0], outputs(model16, x)[0]
    assert logits16.dtype == jnp.bfloat16
    scale = float(jnp.abs(logits32).max())
    np.testing.assert_allclose(logits16.astype(jnp.float32), logits32, atol=0.05 * scale)
    assert not np.allclose(logits16.astype(jnp.float32), logits32, atol=1e-6)  # really bf16


def test_bfloat16_parameters():
    cfg = small_config(param_dtype="bfloat16", dtype="bfloat16")
    model = nnx.eval_shape(lambda: ViT(cfg, rngs=nnx.Rngs(0)))
    dtypes = {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))}
    assert dtypes == {jnp.dtype(jnp.bfloat16)}
    out = jax.eval_shape(
        lambda m, x: m(x), model, jax.ShapeDtypeStruct((B, HEIGHT, WIDTH, C), jnp.float32)
    )
    assert out.dtype == jnp.bfloat16 and out.shape == (B, CLASSES)
