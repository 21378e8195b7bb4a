"""Vision transformer (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words").

An image [H, W, C] is cut into P = (H/p)·(W/p) non-overlapping p×p patches, each flattened and
projected linearly to D (a convolution with kernel = stride = p); the patches are read row-major.
With "cls" pooling a learned class token x_cls is prepended:

    z_0 = [x_cls; x_1 E; ...; x_P E] + E_pos,        E [p·p·C, D],  E_pos [1 + P, D]
    z_l = Block_l(z_{l-1})                            pre-LN blocks, l = 1 .. L
    y   = LN(z_L)                                     [1 + P, D]
    logits = head(pool(y)),   pool(y) = y_0 (the class token) or mean_p y_p

With "mean" pooling (global average pooling, as in the paper's appendix D.3 and many later ViTs)
there is no class token: the sequence is the P patches and the pooled vector is their mean. An
optional pre-logits layer tanh(pool(y) W + b) (the original code's `representation_size`; Hugging
Face `ViTModel`'s pooler) sits between the pooling and the head.

Positions are a learned table (the paper) or the fixed 2-D sin-cos table of MAE (He et al. 2022),
with a zero row for the class token. `resize_position_embeddings` / `ViT.resize_positions`
interpolate a learned table to another resolution (the paper's §3.2 "fine-tuning and higher
resolution").
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from attn.kernels.positions import sincos_2d_encoding
from attn.kernels.validation import check_positive
from attn.layers.blocks import TransformerBlock
from attn.layers.position import LearnedPositions
from attn.models.variants import NamedVariants, check_transformer_fields, dtype_of
from attn.typing import Array, ArrayLike


def _imagenet(layers: int, heads: int, width: int, mlp: int, patch: int) -> dict:
    """A variant of the paper's Table 1 at 224×224 RGB, without a head."""
    return dict(
        num_layers=layers,
        num_heads=heads,
        model_dim=width,
        mlp_dim=mlp,
        patch_size=patch,
        image_size=224,
        num_channels=3,
        num_classes=None,
    )


def _size_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of an image size given as an int (square) or a pair."""
    if isinstance(size, int) and not isinstance(size, bool):
        return size, size
    return tuple(size)  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class ViTConfig(NamedVariants):
    """Configuration of `ViT`; `ViTConfig.named("B/16", num_classes=1000)` for ViT-Base/16.

    Fields beyond the shared vocabulary:
      image_size: H = W, or a pair (H, W); both multiples of `patch_size`.
      patch_size: p, the side of the square patches.
      num_channels: C of the input images.
      num_classes: width of the classification head; None = no head (`ViT(images)` then returns
        the pooled features).
      pooling: "cls" (class token, the paper) or "mean" (average of the patch tokens, no class
        token).
      position: "learned" (the paper) or "sincos2d" (fixed, He et al. 2022; needs D % 4 == 0).
      representation_size: width of the pre-logits layer tanh(x W + b) after pooling; None = none.
      layer_norm_eps: 1e-12 as Hugging Face's ViT; the original JAX ViT uses 1e-6.
      activation: MLP activation, "gelu" = exact erf GELU (the paper).

    Derived: `image_hw` (H, W), `grid` (H/p, W/p), `num_patches` P, and `max_length`, the number of
    tokens 1 + P ("cls") or P ("mean").

    The named variants are the paper's Table 1 (ViT-B, L, H) and DeiT's (Touvron et al. 2021)
    Ti and S, at 224×224 RGB and without a head (pass `num_classes`), plus two small models:
    "digits" for scikit-learn's 8×8 digits and "cifar" for 32×32 RGB images.
    """

    num_layers: int = 4
    num_heads: int = 4
    model_dim: int = 128
    mlp_dim: int = 512
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    image_size: int | tuple[int, int] = 32
    patch_size: int = 4
    num_channels: int = 3
    num_classes: int | None = 10
    pooling: str = "cls"  # "cls" or "mean"
    position: str = "learned"  # "learned" or "sincos2d"
    representation_size: int | None = None
    layer_norm_eps: float = 1e-12
    activation: str = "gelu"
    implementation: str | None = None
    dtype: str | None = None
    param_dtype: str = "float32"

    VARIANTS: ClassVar[dict[str, dict]] = {
        "Ti/16": _imagenet(12, 3, 192, 768, 16),
        "S/16": _imagenet(12, 6, 384, 1536, 16),
        "B/16": _imagenet(12, 12, 768, 3072, 16),
        "B/32": _imagenet(12, 12, 768, 3072, 32),
        "L/16": _imagenet(24, 16, 1024, 4096, 16),
        "L/32": _imagenet(24, 16, 1024, 4096, 32),
        "H/14": _imagenet(32, 16, 1280, 5120, 14),
        "digits": dict(
            num_layers=2,
            num_heads=4,
            model_dim=64,
            mlp_dim=128,
            image_size=8,
            patch_size=2,
            num_channels=1,
            num_classes=10,
        ),
        "cifar": dict(
            num_layers=6,
            num_heads=8,
            model_dim=256,
            mlp_dim=512,
            image_size=32,
            patch_size=4,
            num_channels=3,
            num_classes=10,
            dropout_rate=0.1,
        ),
    }

    def __post_init__(self):
        owner = "ViTConfig"
        for name in ("num_layers", "patch_size", "num_channels"):
            check_positive(owner, name, getattr(self, name))
        check_transformer_fields(owner, self)
        if self.num_classes is not None:
            check_positive(owner, "num_classes", self.num_classes)
        if self.representation_size is not None:
            check_positive(owner, "representation_size", self.representation_size)
        size = self.image_size
        pair = (
            isinstance(size, tuple | list)
            and len(size) == 2
            and all(isinstance(s, int) and not isinstance(s, bool) for s in size)
        )
        if not (pair or (isinstance(size, int) and not isinstance(size, bool))):
            raise ValueError(
                f"{owner}: image_size must be an int or a pair (height, width), got {size!r}"
            )
        if isinstance(size, list):
            object.__setattr__(self, "image_size", tuple(size))  # keep the config hashable
        height, width = self.image_hw
        check_positive(owner, "image_height", height)
        check_positive(owner, "image_width", width)
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"{owner}: image_size {self.image_size!r} must be divisible by patch_size "
                f"({self.patch_size})"
            )
        if self.pooling not in ("cls", "mean"):
            raise ValueError(f"{owner}: pooling must be 'cls' or 'mean', got {self.pooling!r}")
        if self.position not in ("learned", "sincos2d"):
            raise ValueError(
                f"{owner}: position must be 'learned' or 'sincos2d', got {self.position!r}"
            )
        if self.position == "sincos2d" and self.model_dim % 4:
            raise ValueError(
                f"{owner}: position='sincos2d' needs model_dim divisible by 4, got {self.model_dim}"
            )

    @property
    def image_hw(self) -> tuple[int, int]:
        """(H, W) of the input images."""
        return _size_pair(self.image_size)

    @property
    def grid(self) -> tuple[int, int]:
        """(H/p, W/p): rows and columns of the patch grid."""
        height, width = self.image_hw
        return height // self.patch_size, width // self.patch_size

    @property
    def num_patches(self) -> int:
        """P = (H/p)·(W/p)."""
        rows, cols = self.grid
        return rows * cols

    @property
    def num_prefix_tokens(self) -> int:
        """1 (the class token) for "cls" pooling, 0 for "mean"."""
        return 1 if self.pooling == "cls" else 0

    @property
    def max_length(self) -> int:
        """The number of tokens the blocks see: 1 + P ("cls") or P ("mean")."""
        return self.num_prefix_tokens + self.num_patches


def resize_position_embeddings(
    table: ArrayLike,
    old_grid: int | tuple[int, int],
    new_grid: int | tuple[int, int],
    *,
    num_prefix_tokens: int = 1,
    method: str = "bicubic",
) -> Array:
    """Interpolate a learned position table to another patch grid (Dosovitskiy et al. 2021, §3.2).

    The first `num_prefix_tokens` rows (the class token's) are kept; the other rows, read as a
    row-major (h, w) grid of D-vectors, are resized to (h', w') with `jax.image.resize` (a 2-D
    interpolation at pixel centres, align_corners=False; antialiased when shrinking). "bicubic" is
    Keys' cubic convolution with a = -0.5, as in `jax.image.resize`; torch's bicubic (used by
    Hugging Face's `interpolate_pos_encoding`) uses a = -0.75, so the two differ slightly.

    Args:
      table: [prefix + h·w, D] position embeddings.
      old_grid: (h, w), or an int for a square grid.
      new_grid: (h', w'), or an int.
      num_prefix_tokens: leading rows that are not on the grid (1 for a class token, 0 without).
      method: "bicubic", "bilinear" or "nearest".

    Returns:
      [prefix + h'·w', D], in the dtype of `table` (interpolated in float32 or wider).
    """
    fn = "resize_position_embeddings"
    methods = {"bicubic": "cubic", "bilinear": "linear", "nearest": "nearest"}
    if method not in methods:
        raise ValueError(f"{fn}: method must be one of {sorted(methods)}, got {method!r}")
    table = jnp.asarray(table)
    (h, w), (h2, w2) = _size_pair(old_grid), _size_pair(new_grid)
    if min(h, w, h2, w2) < 1:
        raise ValueError(f"{fn}: grids must be positive, got {old_grid!r} -> {new_grid!r}")
    if table.ndim != 2 or table.shape[0] != num_prefix_tokens + h * w:
        raise ValueError(
            f"{fn}: table must have shape [prefix + h*w, D] = [{num_prefix_tokens + h * w}, D] for "
            f"grid {(h, w)} and {num_prefix_tokens} prefix token(s), got shape {table.shape}"
        )
    D = table.shape[1]
    prefix, patches = table[:num_prefix_tokens], table[num_prefix_tokens:]
    compute = jnp.promote_types(table.dtype, jnp.float32)
    grid = patches.astype(compute).reshape(h, w, D)  # [h*w, D] -> [h, w, D], row-major
    resized = jax.image.resize(grid, (h2, w2, D), method=methods[method])
    resized = resized.reshape(h2 * w2, D).astype(table.dtype)  # [h', w', D] -> [h'*w', D]
    return jnp.concatenate([prefix, resized], axis=0)


class ViT(nnx.Module):
    """Vision transformer: `ViT(images[B, H, W, C]) -> logits[B, classes]`.

    `encode(images) -> hidden[B, 1 + P, D]` (class token first, after the final LayerNorm; [B, P, D]
    with "mean" pooling, which has no class token), `pool(hidden) -> [B, D]` (or [B, R] with a
    pre-logits layer of width R), and `__call__` = head(pool(encode(images))).

    Submodules: `patch_embedding` (`nnx.Conv`, kernel = stride = p, kernel [p, p, C, D]),
    `class_token` (`nnx.Param` [1, 1, D], absent for "mean" pooling), `position_embedding`
    (`LearnedPositions` with max_length rows, absent for sin-cos positions), `blocks` (pre-LN
    `TransformerBlock`s), `final_norm`, `pre_logits` (`nnx.Linear` D → R, absent unless
    `representation_size`) and `head` (`nnx.Linear`, absent when `num_classes` is None).

    Initialisation follows the original code: LeCun normal patch projection, zero class token,
    N(0, 0.02²) positions; the head is LeCun normal (the paper zero-initialises a head that
    replaces a pre-trained one: set `model.head.kernel[...] = 0` for that).
    """

    def __init__(self, config: ViTConfig, *, rngs: nnx.Rngs):
        self.config = config
        dtype, param_dtype = dtype_of(config.dtype), dtype_of(config.param_dtype)
        common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        D, p = config.model_dim, config.patch_size
        self.patch_embedding = nnx.Conv(
            config.num_channels, D, kernel_size=(p, p), strides=(p, p), padding="VALID", **common
        )
        self.class_token = nnx.data(
            nnx.Param(jnp.zeros((1, 1, D), param_dtype)) if config.pooling == "cls" else None
        )
        self.position_embedding = nnx.data(
            LearnedPositions(
                config.max_length,
                D,
                rngs=rngs,
                param_dtype=param_dtype,
                dtype=dtype or param_dtype,
            )
            if config.position == "learned"
            else None
        )
        self.dropout = nnx.Dropout(config.dropout_rate, rngs=rngs)
        self.blocks = nnx.List(
            [
                TransformerBlock.from_config(config, norm_first=True, rngs=rngs)
                for _ in range(config.num_layers)
            ]
        )
        self.final_norm = nnx.LayerNorm(D, epsilon=config.layer_norm_eps, **common)
        R = config.representation_size
        self.pre_logits = nnx.data(None if R is None else nnx.Linear(D, R, **common))
        self.head = nnx.data(
            None if config.num_classes is None else nnx.Linear(R or D, config.num_classes, **common)
        )

    # ------------------------------------------------------------------ pieces

    def _check_images(self, images: ArrayLike) -> Array:
        images = jnp.asarray(images)
        cfg = self.config
        (H, W), C = cfg.image_hw, cfg.num_channels
        expected = f"[B, H, W, C] = [B, {H}, {W}, {C}]"
        if images.ndim != 4:
            raise ValueError(f"ViT: images must have shape {expected}, got shape {images.shape}")
        if not jnp.issubdtype(images.dtype, jnp.floating):
            raise TypeError(
                f"ViT: images must be floating point {expected}, got dtype {images.dtype} (scale "
                "integer pixels to floats first)"
            )
        if images.shape[3] != C:
            raise ValueError(
                f"ViT: images must have shape {expected} (NHWC, C={C} channels), got shape "
                f"{images.shape}"
            )
        if images.shape[1:3] != (H, W):
            raise ValueError(
                f"ViT: images must have shape {expected}, got shape {images.shape}; for another "
                "resolution use ViT.resize_positions(image_size)"
            )
        return images

    def positions(self) -> Array:
        """The position embeddings added to the tokens: [1 + P, D] ("cls") or [P, D] ("mean")."""
        cfg = self.config
        if self.position_embedding is not None:
            return self.position_embedding(cfg.max_length)
        rows, cols = cfg.grid
        dtype = dtype_of(cfg.dtype) or dtype_of(cfg.param_dtype)
        table = sincos_2d_encoding(rows, cols, cfg.model_dim, dtype=dtype)  # [P, D]
        prefix = jnp.zeros((cfg.num_prefix_tokens, cfg.model_dim), dtype)  # class token: zeros
        return jnp.concatenate([prefix, table], axis=0)

    def embed(self, images: ArrayLike, *, deterministic: bool | None = None) -> Array:
        """z_0: patch projections, the class token and positions, with dropout.

        Args:
          images: [B, H, W, C] floating point, channels last.
          deterministic: no dropout when True, dropout when False; None: the mode that
            `.train()` / `.eval()` set.

        Returns:
          [B, 1 + P, D] ([B, P, D] for "mean" pooling); patches in row-major order.
        """
        images = self._check_images(images)
        x = self.patch_embedding(images)  # [B, H, W, C] -> [B, H/p, W/p, D]
        B, rows, cols, D = x.shape
        x = x.reshape(B, rows * cols, D)  # [B, H/p, W/p, D] -> [B, P, D], row-major
        if self.class_token is not None:
            cls = jnp.broadcast_to(self.class_token[...].astype(x.dtype), (B, 1, D))
            x = jnp.concatenate([cls, x], axis=1)  # [B, P, D] -> [B, 1 + P, D]
        x = x + self.positions().astype(x.dtype)
        return self.dropout(x, deterministic=deterministic)

    # ------------------------------------------------------------------ public calls

    def encode(
        self,
        images: ArrayLike,
        *,
        deterministic: bool | None = None,
        return_hidden_states: bool = False,
    ) -> Array | tuple[Array, tuple[Array, ...]]:
        """y = LN(z_L), the encoded tokens.

        Args:
          images: [B, H, W, C] floating point, channels last (Hugging Face's pixel_values are
            [B, C, H, W]: transpose them with `.transpose(0, 2, 3, 1)`).
          deterministic: no dropout when True, dropout when False; None: the mode that
            `.train()` / `.eval()` set.
          return_hidden_states: also return (z_0, z_1, ..., z_L), the embeddings and the output of
            every block before the final LayerNorm (Hugging Face's `output_hidden_states`).

        Returns:
          hidden [B, 1 + P, D], class token first ([B, P, D] for "mean" pooling), or
          (hidden, hidden_states) with L + 1 arrays of that shape.
        """
        h = self.embed(images, deterministic=deterministic)
        states = [h]
        for block in self.blocks:
            h = block(h, deterministic=deterministic)
            states.append(h)
        hidden = self.final_norm(h)
        return (hidden, tuple(states)) if return_hidden_states else hidden

    def pool(self, hidden: Array) -> Array:
        """The image representation: the class token ("cls") or the mean of the patch tokens
        ("mean"), through tanh(x W + b) when the config has a pre-logits layer.

        Args:
          hidden: [B, 1 + P, D] (or [B, P, D] for "mean" pooling), as `encode` returns.

        Returns:
          [B, D], or [B, R] with a pre-logits layer of width R.
        """
        cfg = self.config
        if hidden.ndim != 3 or hidden.shape[1:] != (cfg.max_length, cfg.model_dim):
            raise ValueError(
                f"ViT.pool: hidden must have shape [B, T, D] = [B, {cfg.max_length}, "
                f"{cfg.model_dim}], got shape {hidden.shape}"
            )
        if cfg.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            pooled = jnp.mean(hidden.astype(jnp.float32), axis=1).astype(hidden.dtype)
        if self.pre_logits is not None:
            pooled = jnp.tanh(self.pre_logits(pooled))
        return pooled

    def __call__(self, images: ArrayLike, *, deterministic: bool | None = None) -> Array:
        """Class logits of a batch of images.

        Args:
          images: [B, H, W, C] floating point, channels last.
          deterministic: no dropout when True, dropout when False; None: the mode that
            `.train()` / `.eval()` set.

        Returns:
          logits [B, classes]; without a head (`num_classes=None`) the pooled features [B, D]
          (or [B, R]). float32 for a float32 model, the compute dtype otherwise.
        """
        pooled = self.pool(self.encode(images, deterministic=deterministic))
        return pooled if self.head is None else self.head(pooled)

    def resize_positions(self, image_size: int | tuple[int, int], *, method: str = "bicubic"):
        """A copy of this model for images of another size, its learned position table resized
        with `resize_position_embeddings` (the class token's row kept); sin-cos positions are
        simply recomputed for the new grid. This model is left unchanged.

        Args:
          image_size: the new H = W, or (H, W); multiples of `patch_size`.
          method: "bicubic", "bilinear" or "nearest".

        Returns:
          A `ViT` whose config has the new `image_size`.
        """
        cfg = self.config
        new_cfg = dataclasses.replace(cfg, image_size=image_size)
        model = nnx.clone(self)
        model.config = new_cfg
        if self.position_embedding is not None:
            table = resize_position_embeddings(
                self.position_embedding.embedding[...],
                cfg.grid,
                new_cfg.grid,
                num_prefix_tokens=cfg.num_prefix_tokens,
                method=method,
            )
            positions = model.position_embedding
            positions.max_length = new_cfg.max_length
            positions.embedding = nnx.Param(table)
        return model


__all__ = ["ViT", "ViTConfig", "resize_position_embeddings"]
