"""Gates as attention: squeeze-and-excitation and the gated linear unit.

    squeeze-and-excitation   s = σ(relu(mean(x) W_1 + b_1) W_2 + b_2),   out = x ⊙ s
                                                                         (Hu et al. 2018)
    gated linear unit        g = σ(x W_g + b_g),                         y = g ⊙ (x W + b)
                                                                         (Dauphin et al. 2017)

Both compute weights in (0, 1) from the input and multiply them into a signal, as soft attention
does, but without a softmax: each weight is chosen independently, so the weights need not sum to
one and nothing competes for them. Squeeze-and-excitation weighs channels from a summary of the
whole input; the gated unit weighs every feature at every position.

Looking inside: with `sow_weights` on, each call sows its weights into `nnx.Intermediate`
("channel_weights" / "gates"); `attn.layers.collect_intermediates(model, x)` switches it on in every
such layer of a model for one call and returns them by path. Sowing is off by default: outside
`nnx.capture`, sown values accumulate on the module at every call, which a training loop must not
do.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Initializer

from attn.kernels.validation import check_features, check_float, check_int
from attn.layers.feedforward import (
    ACTIVATIONS,
    default_bias_init,
    default_kernel_init,
    get_activation,
    linear_factory,
)
from attn.typing import Array, ArrayLike, DType


def _check_channels_last(fn: str, name: str, x: ArrayLike, channels: int) -> None:
    """Raise unless `x` is a floating array [B, ..., C] with >= 1 axis between B and C."""
    check_float(fn, name, x)
    shape = tuple(jnp.shape(x))
    if len(shape) < 3 or shape[-1] != channels:
        raise ValueError(
            f"{fn}: {name} must have shape [B, ..., C] = [B, ..., {channels}] with at least one "
            f"axis between B and C (e.g. [B, T, C] or [B, H, W, C]), got shape {shape}"
        )


class SqueezeExcitation(nnx.Module):
    """Squeeze-and-excitation (Hu et al. 2018, "Squeeze-and-Excitation Networks"):

        z = mean over the axes between B and C of x      squeeze:    [B, ..., C] -> [B, C]
        s = σ(relu(z W_1 + b_1) W_2 + b_2)                 excitation: W_1 [C, C/r], W_2 [C/r, C]
        out = x ⊙ s, broadcast over those axes             [B, ..., C]

    Channels are last: images x[B, H, W, C] pool over H and W, sequences x[B, T, C] over T, and
    any rank >= 3 works the same way. The channel weights s[B, C] lie in (0, 1); they act as
    attention over channels that, unlike softmax attention, need not sum to one. The squeeze
    averages in float32 (float64 for float64 inputs) whatever the compute dtype.

    Args:
      channels: C, the size of the last axis of the input.
      reduction: r, the reduction ratio; the hidden width is max(1, C // r) (Hu et al. use r = 16).
      hidden_dim: the hidden width, overriding `reduction` (e.g. for checkpoints whose squeeze
        width is not C // r, like MobileNetV3's or EfficientNet's).
      activation: a name in `feedforward.ACTIVATIONS` for the hidden layer ("relu" in the paper).
      use_bias: whether both projections have biases.
      sow_weights: whether each call sows the channel weights into `nnx.Intermediate` as
        "channel_weights"; can be switched with `nnx.view(model, sow_weights=...)`.
      dtype: compute dtype; None infers it from the input and parameters.
      param_dtype: dtype of the parameters (float32 by default).
      kernel_init: initializer of both kernels (LeCun normal).
      bias_init: initializer of both biases (zeros).
      rngs: initialization randomness.

    Attributes:
      reduce_proj: `nnx.Linear` C → C/r, kernel [C, C/r] (torchvision / timm `fc1`, a 1×1 conv
        whose weight [C/r, C, 1, 1] is this kernel transposed).
      expand_proj: `nnx.Linear` C/r → C, kernel [C/r, C] (torchvision / timm `fc2`).
    """

    def __init__(
        self,
        channels: int,
        *,
        reduction: int = 16,
        hidden_dim: int | None = None,
        activation: str = "relu",
        use_bias: bool = True,
        sow_weights: bool = False,
        dtype: DType | None = None,
        param_dtype: DType = jnp.float32,
        kernel_init: Initializer = default_kernel_init,
        bias_init: Initializer = default_bias_init,
        rngs: nnx.Rngs,
    ):
        fn = "SqueezeExcitation"
        check_int(fn, "channels", channels, minimum=1)
        check_int(fn, "reduction", reduction, minimum=1)
        if hidden_dim is not None:
            check_int(fn, "hidden_dim", hidden_dim, minimum=1)
        get_activation(activation, ACTIVATIONS)
        self.channels = channels
        self.reduction = reduction
        self.hidden_dim = max(1, channels // reduction) if hidden_dim is None else hidden_dim
        self.activation = activation
        self.sow_weights = sow_weights
        self.dtype = dtype
        self.param_dtype = param_dtype
        linear = linear_factory(use_bias, dtype, param_dtype, kernel_init, bias_init, rngs)
        self.reduce_proj = linear(channels, self.hidden_dim)
        self.expand_proj = linear(self.hidden_dim, channels)

    def set_view(self, sow_weights: bool | None = None) -> None:
        """Used by `nnx.view(model, sow_weights=...)` to switch sowing in every such layer."""
        if sow_weights is not None:
            self.sow_weights = sow_weights

    def __call__(self, x: ArrayLike) -> Array:
        """Recalibrates the channels of `x`.

        Args:
          x: [B, ..., C] channels-last input: [B, H, W, C] images, [B, T, C] sequences.

        Returns:
          out [B, ..., C] in the compute dtype (the channel weights s [B, C] in (0, 1) are sown
          as "channel_weights" when `sow_weights` is on).
        """
        _check_channels_last("SqueezeExcitation", "x", x, self.channels)
        x = jnp.asarray(x)
        dtype = self.dtype if self.dtype is not None else jnp.result_type(x, self.param_dtype)
        acc = jnp.float64 if x.dtype == jnp.float64 else jnp.float32
        spatial = tuple(range(1, x.ndim - 1))
        z = jnp.mean(x.astype(acc), axis=spatial).astype(dtype)  # [B, ..., C] -> [B, C]
        act = get_activation(self.activation, ACTIVATIONS)
        s = jax.nn.sigmoid(self.expand_proj(act(self.reduce_proj(z))))  # [B, C]
        # [B, C] -> [B, 1, ..., 1, C]
        out = x.astype(dtype) * jnp.expand_dims(s, spatial).astype(dtype)
        if self.sow_weights:
            self.sow(nnx.Intermediate, "channel_weights", s)
        return out


class GatedLinearUnit(nnx.Module):
    """The gated linear unit (Dauphin et al. 2017, "Language Modeling with Gated Convolutional
    Networks"), with a position-wise linear map in place of their convolution:

        g = σ(x W_g + b_g),   y = g ⊙ (x W + b),   W_g, W [D, F]

    Each gate g in (0, 1) decides how much of its feature passes, a soft attention over features
    computed at every position. The gradient through the linear branch is never squashed, which
    is what made the unit easier to train than tanh gating. `GatedMLP` with "sigmoid" is this unit
    followed by an output projection.

    Args:
      in_features: D, the size of the last axis of the input.
      out_features: F, the size of the output's last axis.
      sow_weights: whether each call sows the gates into `nnx.Intermediate` as "gates"; can be
        switched with `nnx.view(model, sow_weights=...)`.
      use_bias, dtype, param_dtype, kernel_init, bias_init, rngs: as in `SqueezeExcitation`.

    Attributes:
      value_proj: `nnx.Linear` D → F, the linear branch W, b.
      gate_proj: `nnx.Linear` D → F, the gate branch W_g, b_g.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        sow_weights: bool = False,
        dtype: DType | None = None,
        param_dtype: DType = jnp.float32,
        kernel_init: Initializer = default_kernel_init,
        bias_init: Initializer = default_bias_init,
        rngs: nnx.Rngs,
    ):
        check_int("GatedLinearUnit", "in_features", in_features, minimum=1)
        check_int("GatedLinearUnit", "out_features", out_features, minimum=1)
        self.in_features = in_features
        self.out_features = out_features
        self.sow_weights = sow_weights
        self.dtype = dtype
        linear = linear_factory(use_bias, dtype, param_dtype, kernel_init, bias_init, rngs)
        self.value_proj = linear(in_features, out_features)
        self.gate_proj = linear(in_features, out_features)

    def set_view(self, sow_weights: bool | None = None) -> None:
        """Used by `nnx.view(model, sow_weights=...)` to switch sowing in every such layer."""
        if sow_weights is not None:
            self.sow_weights = sow_weights

    def __call__(self, x: ArrayLike) -> Array:
        """Gates the linear map of `x` feature by feature.

        Args:
          x: [..., D] inputs.

        Returns:
          y [..., F] (the gates g [..., F] in (0, 1) are sown as "gates" when `sow_weights` is on).
        """
        check_features("GatedLinearUnit", "x", x, "D", self.in_features)
        g = jax.nn.sigmoid(self.gate_proj(x))  # [..., D] -> [..., F]
        y = g * self.value_proj(x)  # [..., F]
        if self.sow_weights:
            self.sow(nnx.Intermediate, "gates", g)
        return y
