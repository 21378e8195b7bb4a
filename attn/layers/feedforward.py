"""Position-wise feed-forward blocks: the transformer MLP and its gated (GLU) variants.

    MLP(x)      = dropout(act(x W_in + b_in) W_out + b_out)                (Vaswani et al. 2017)
    GatedMLP(x) = dropout((act(x W_gate + b_gate) ⊙ (x W_up + b_up)) W_down + b_down)
                                                                           (Shazeer 2020)

Both act on the last axis of `x[..., D]` and leave every other axis alone, so the same block
serves `[B, T, D]` token sequences and `[B, P, D]` patch sequences.

Parameters are `nnx.Linear` layers with kernels in the JAX (in, out) layout, under stable
attribute names that checkpoint import maps Hugging Face names onto:

    MLP:       input_proj  [D, F]   (GPT-2 `mlp.c_fc`, BERT `intermediate.dense`, ViT `mlp.fc1`)
               output_proj [F, D]   (GPT-2 `mlp.c_proj`, BERT `output.dense`, ViT `mlp.fc2`)
    GatedMLP:  gate_proj   [D, F]   (Llama/Gemma `mlp.gate_proj`)
               up_proj     [D, F]   (`mlp.up_proj`)
               down_proj   [F, D]   (`mlp.down_proj`)

Dropout is applied once, to the block's output (after the output projection): the "residual
dropout" of Vaswani et al. (2017), applied to each sublayer's output before it is added to the
residual stream, as in GPT-2 (`resid_dropout` after `c_proj`) and BERT (`BertOutput.dropout` after
its dense layer). A transformer block built on these layers must not drop the MLP output again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
from flax import nnx
from flax.typing import Initializer

from attn.kernels.validation import check_dropout_rate, check_features, check_int
from attn.typing import Array, ArrayLike, DType

ACTIVATIONS: Mapping[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "silu": jax.nn.silu,
}
"""Activations of `MLP`, by name.

"gelu" is the exact x·Φ(x) with the Gaussian CDF computed from erf (BERT, ViT); "gelu_tanh" is the
tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) that GPT-2 uses (Hendrycks and
Gimpel 2016); "silu" is x·sigmoid(x), also called swish (Ramachandran et al. 2017).
"""

GATE_ACTIVATIONS: Mapping[str, Callable[[Array], Array]] = {
    **ACTIVATIONS,
    "sigmoid": jax.nn.sigmoid,
    "identity": lambda x: x,
}
"""Activations of the gate branch of `GatedMLP`, by name. With the names of Shazeer (2020):
"sigmoid" → GLU (Dauphin et al. 2017), "identity" → Bilinear, "relu" → ReGLU, "gelu" → GEGLU,
"gelu_tanh" → GEGLU with the tanh GELU (Gemma), "silu" → SwiGLU (PaLM, Llama)."""

default_kernel_init: Initializer = nnx.initializers.lecun_normal()
"""Kernel initializer of every projection unless `kernel_init` is given: LeCun normal, a truncated
normal with variance 1 / fan_in (the default of `nnx.Linear`). Wrap an initializer with
`nnx.with_partitioning` to attach sharding names to the kernels."""

default_bias_init: Initializer = nnx.initializers.zeros_init()
"""Bias initializer unless `bias_init` is given: zeros."""


def get_activation(
    name: str,
    registry: Mapping[str, Callable[[Array], Array]] = ACTIVATIONS,
    *,
    arg: str = "activation",
) -> Callable[[Array], Array]:
    """Looks `name` up in `registry`; a ValueError lists the allowed names otherwise."""
    if not isinstance(name, str) or name not in registry:
        raise ValueError(f"{arg} must be one of {sorted(registry)}, got {name!r}")
    return registry[name]


def linear_factory(
    use_bias: bool,
    dtype: DType | None,
    param_dtype: DType,
    kernel_init: Initializer,
    bias_init: Initializer,
    rngs: nnx.Rngs,
    /,
) -> Callable[[int, int], nnx.Linear]:
    """`nnx.Linear(in_features, out_features)` with the settings that every projection of one
    block shares (biases, dtypes, initializers, initialization randomness)."""
    return functools.partial(
        nnx.Linear,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=kernel_init,
        bias_init=bias_init,
        rngs=rngs,
    )


class _FeedForward(nnx.Module):
    """What `MLP` and `GatedMLP` share: the argument checks, the projections (built in order by
    `_build_projections`, so that they draw their initial values from `rngs` in that order), and
    the dropout on the output. A subclass names its default activation and its activation table
    and says how the projections combine (`_project`)."""

    default_activation: str
    activations: Mapping[str, Callable[[Array], Array]]

    def __init__(
        self,
        model_dim: int,
        mlp_dim: int,
        *,
        activation: str | None = None,
        dropout_rate: float = 0.0,
        use_bias: bool = True,
        deterministic: bool = False,
        dtype: DType | None = None,
        param_dtype: DType = jnp.float32,
        kernel_init: Initializer = default_kernel_init,
        bias_init: Initializer = default_bias_init,
        rngs: nnx.Rngs,
    ):
        fn = type(self).__name__
        activation = self.default_activation if activation is None else activation
        check_int(fn, "model_dim", model_dim, minimum=1)
        check_int(fn, "mlp_dim", mlp_dim, minimum=1)
        check_dropout_rate(fn, "dropout_rate", dropout_rate)
        get_activation(activation, self.activations)
        self.model_dim = model_dim
        self.mlp_dim = mlp_dim
        self.activation = activation
        self.dtype = dtype
        linear = linear_factory(use_bias, dtype, param_dtype, kernel_init, bias_init, rngs)
        self._build_projections(linear)
        self.dropout = nnx.Dropout(dropout_rate, deterministic=deterministic, rngs=rngs)

    def _build_projections(self, linear: Callable[[int, int], nnx.Linear]) -> None:
        """Creates the projections with `linear(in_features, out_features)`."""
        raise NotImplementedError

    def _project(self, x: ArrayLike, act: Callable[[Array], Array]) -> Array:
        """[..., D] -> [..., F] -> [..., D]: the block without its output dropout."""
        raise NotImplementedError

    def __call__(
        self,
        x: ArrayLike,
        *,
        deterministic: bool | None = None,
        rngs: nnx.Rngs | jax.Array | None = None,
    ) -> Array:
        """Applies the block to the last axis of `x`.

        Args:
          x: [..., D] inputs.
          deterministic: True disables dropout, False applies it; None keeps the module's mode.
          rngs: dropout randomness (an `nnx.Rngs` or a key) overriding the one given at
            construction.

        Returns:
          [..., D], in `dtype` (or the promoted dtype of `x` and the parameters).
        """
        check_features(type(self).__name__, "x", x, "D", self.model_dim)
        y = self._project(x, get_activation(self.activation, self.activations))
        return self.dropout(y, deterministic=deterministic, rngs=rngs)


class MLP(_FeedForward):
    """The transformer's position-wise feed-forward block (Vaswani et al. 2017, §3.3):

        MLP(x) = dropout(act(x W_in + b_in) W_out + b_out),   W_in [D, F],  W_out [F, D]

    applied to each position independently; F is usually 4·D.

    Args:
      model_dim: D, the width of the input and output.
      mlp_dim: F, the hidden width.
      activation: a name in `ACTIVATIONS`: "relu" (Vaswani et al.), "gelu" (exact erf GELU,
        BERT/ViT, the default), "gelu_tanh" (GPT-2), "silu".
      dropout_rate: dropout probability on the output of `output_proj` (see the module docstring).
      use_bias: whether both projections have biases.
      deterministic: the initial dropout mode; False (training, the `nnx.Dropout` convention).
        Switch a whole model with `nnx.view(model, deterministic=True)` or `model.eval()`, or
        override per call.
      dtype: compute dtype; None infers it from the input and parameters, as `nnx.Linear` does.
      param_dtype: dtype of the parameters (float32 by default).
      kernel_init: initializer of both kernels (`default_kernel_init`: LeCun normal).
      bias_init: initializer of both biases (zeros).
      rngs: initialization randomness; the "dropout" stream (or "default") also seeds dropout.

    Attributes:
      input_proj: `nnx.Linear` D → F, kernel [D, F].
      output_proj: `nnx.Linear` F → D, kernel [F, D].
      dropout: `nnx.Dropout` on the output.
    """

    default_activation = "gelu"
    activations = ACTIVATIONS

    def _build_projections(self, linear: Callable[[int, int], nnx.Linear]) -> None:
        self.input_proj = linear(self.model_dim, self.mlp_dim)
        self.output_proj = linear(self.mlp_dim, self.model_dim)

    def _project(self, x: ArrayLike, act: Callable[[Array], Array]) -> Array:
        h = act(self.input_proj(x))  # [..., D] -> [..., F]
        return self.output_proj(h)  # [..., F] -> [..., D]


class GatedMLP(_FeedForward):
    """The gated feed-forward block of the GLU family (Shazeer 2020, "GLU Variants Improve
    Transformer"):

        GatedMLP(x) = dropout((act(x W_gate + b_gate) ⊙ (x W_up + b_up)) W_down + b_down)

    with W_gate, W_up [D, F] and W_down [F, D]. The activation names the variant: "sigmoid" → GLU
    (Dauphin et al. 2017), "identity" → Bilinear, "relu" → ReGLU, "gelu" → GEGLU, "silu" →
    SwiGLU (PaLM, Llama), "gelu_tanh" → GEGLU with the tanh GELU (Gemma). Shazeer's experiments
    and Llama use no biases (`use_bias=False`); with three matrices, F = 8·D/3 keeps the parameter
    count of an ungated MLP with F = 4·D.

    Args:
      model_dim: D, the width of the input and output.
      mlp_dim: F, the hidden width.
      activation: a name in `GATE_ACTIVATIONS`, applied to the gate branch only ("silu" by
        default: SwiGLU).
      dropout_rate: dropout probability on the output of `down_proj`.
      use_bias: whether the three projections have biases.
      deterministic: the initial dropout mode, as in `MLP`.
      dtype: compute dtype; None infers it from the input and parameters.
      param_dtype: dtype of the parameters (float32 by default).
      kernel_init: initializer of the kernels (`default_kernel_init`: LeCun normal).
      bias_init: initializer of the biases (zeros).
      rngs: initialization randomness; the "dropout" stream (or "default") also seeds dropout.

    Attributes:
      gate_proj: `nnx.Linear` D → F, the branch that goes through the activation.
      up_proj: `nnx.Linear` D → F, the linear branch.
      down_proj: `nnx.Linear` F → D.
      dropout: `nnx.Dropout` on the output.
    """

    default_activation = "silu"
    activations = GATE_ACTIVATIONS

    def _build_projections(self, linear: Callable[[int, int], nnx.Linear]) -> None:
        self.gate_proj = linear(self.model_dim, self.mlp_dim)
        self.up_proj = linear(self.model_dim, self.mlp_dim)
        self.down_proj = linear(self.mlp_dim, self.model_dim)

    def _project(self, x: ArrayLike, act: Callable[[Array], Array]) -> Array:
        h = act(self.gate_proj(x)) * self.up_proj(x)  # [..., D] -> [..., F]
        return self.down_proj(h)  # [..., F] -> [..., D]
