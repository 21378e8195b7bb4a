# ---
# jupyter:
#   accelerator: TPU
#   colab:
#     gpuType: V5E1
#     provenance: []
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: accelerator,colab
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 08 · Attention beyond Transformers: hard selection, channel weights, gates and path length
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/TO-BE-SET-ON-PUBLICATION/attn/blob/TO-BE-SET-ON-PUBLICATION/colab/08_attention_beyond_transformers.ipynb)
#
# What you will learn:
# - hard attention: each query selects exactly one position, and the five ways of training
#   through that selection in `attn.kernels.hard.ESTIMATORS` (straight-through, Gumbel-softmax,
#   REINFORCE); `HardMultiHeadAttention`; how much each estimator's gradient varies from draw to
#   draw on a marker-selection task, and how a reward baseline tames REINFORCE;
# - squeeze-and-excitation: sigmoid weights over channels, attention that need not sum to one;
# - LSTM gates read as attention maps over the state's units;
# - why attention connects any two positions in one layer, when a dilated convolution needs
#   ⌈log_k n⌉ layers: the receptive field measured with `jax.jacobian`.
#
# | scale | what runs | time |
# |---|---|---|
# | `ci` | small layers, 64 draws per estimator | about 25 s of CPU time (measured) |
# | `cpu` | larger layers, 512 draws per estimator | about 1 min of CPU time (measured) |
# | `full` | the `cpu` run, 2048 draws per estimator | about 1 min on a v5e (estimate) |
#
# The scale is the form field of the set-up cell; the environment variable `ATTN_NOTEBOOK_SCALE`
# (`ci`, `cpu` or `full`) wins over it. Every result below is checked by an `assert`.

# %% cellView="form"
# @title Set-up: installs attn with a matching JAX and checks the accelerator (safe to re-run)
SCALE = "auto"  # @param ["auto", "ci", "cpu", "full"]
# The next three lines equal [project.urls] of attn's pyproject.toml and the jax pin of its
# constraints file (a test checks); every notebook has this same cell.
ATTN_REPOSITORY = "https://github.com/TO-BE-SET-ON-PUBLICATION/attn"
ATTN_DOWNLOAD = (
    "https://github.com/TO-BE-SET-ON-PUBLICATION/attn/archive/TO-BE-SET-ON-PUBLICATION.zip"
)
JAX_VERSION = "0.10.2"
import importlib.metadata
import importlib.util
import os
import pathlib
import subprocess
import sys
import tempfile
import urllib.request


class SetupError(Exception):
    """Stops the notebook with one line (IPython prints `_render_traceback_` instead of a trace)."""

    def _render_traceback_(self):
        return [f"Set-up stopped: {self}"]


def installed_version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


# The runtime, read from what is installed, without importing jax.
if installed_version("libtpu"):
    RUNTIME, JAX_REQUIREMENT = "tpu", f"jax[tpu]=={JAX_VERSION}"
elif installed_version("jax-cuda12-plugin"):
    RUNTIME, JAX_REQUIREMENT = "gpu", f"jax[cuda12]=={JAX_VERSION}"
else:
    RUNTIME, JAX_REQUIREMENT = "cpu", f"jax=={JAX_VERSION}"

if importlib.util.find_spec("attn") is None:
    if "jax" in sys.modules:
        raise SetupError(
            "jax was imported before this cell; Runtime > Restart session, run this first"
        )
    source = os.environ.get("ATTN_SOURCE")
    if source:
        source = pathlib.Path(source).expanduser().resolve().as_uri()
    else:
        try:
            urllib.request.urlopen(urllib.request.Request(ATTN_DOWNLOAD, method="HEAD"), timeout=30)
        except (OSError, ValueError) as error:
            raise SetupError(
                f"attn is not installed, ATTN_SOURCE is not set and {ATTN_DOWNLOAD} cannot be "
                f"reached ({error}); set ATTN_SOURCE to a checkout of {ATTN_REPOSITORY}"
            ) from None
        source = ATTN_DOWNLOAD
    # Colab preloads numpy and runs on its own ipykernel/ipython: upgrading them forces a restart.
    keep = [f"{name}=={installed_version(name)}" for name in ("numpy", "ipykernel", "ipython")]
    keep = [pin for pin in keep if not pin.endswith("==None")]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        constraints.write("\n".join(keep) + "\n")
    print(f"Installing {JAX_REQUIREMENT} and attn[all] from {source}, keeping {', '.join(keep)}")
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "-c",
            constraints.name,
            JAX_REQUIREMENT,
            f"attn[all] @ {source}",
        ],
        capture_output=True,
        text=True,
    )
    print(
        "\n".join(
            line for line in (pip.stdout + pip.stderr).splitlines() if "is ignored" not in line
        )
    )
    if pip.returncode:
        raise SetupError(f"pip install failed (exit {pip.returncode}); its output is above")
    importlib.invalidate_caches()

# JAX looks at the accelerator in a subprocess, so this notebook can still set JAX options itself.
probe = subprocess.run(
    [
        sys.executable,
        "-c",
        "import attn, jax; print(jax.default_backend(), jax.__version__, jax.devices())",
    ],
    capture_output=True,
    text=True,
)
if probe.returncode:
    raise SetupError(f"import attn, jax failed: {(probe.stderr.strip().splitlines() or ['?'])[-1]}")
BACKEND, jax_version, devices = probe.stdout.strip().split(" ", 2)
if RUNTIME != "cpu" and BACKEND != RUNTIME:
    raise SetupError(f"this is a {RUNTIME.upper()} runtime but JAX runs on {BACKEND}: {devices}")
SCALE = os.environ.get("ATTN_NOTEBOOK_SCALE") or SCALE
if SCALE == "auto":
    SCALE = "cpu" if BACKEND == "cpu" else "full"
if SCALE not in ("ci", "cpu", "full"):
    raise SetupError(f"SCALE must be auto, ci, cpu or full, got {SCALE!r}")
print(f"runtime {RUNTIME}, jax {jax_version} on {BACKEND} {devices}, scale {SCALE}")


# %%
import io

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx
from IPython.display import Image, display

from attn import viz
from attn.kernels import hard
from attn.kernels.hard_training import gradient_variance, reinforce_loss
from attn.layers import (
    RNN,
    HardMultiHeadAttention,
    MultiHeadAttention,
    SqueezeExcitation,
    collect_intermediates,
)
from attn.models import DilatedCausalConvStack, max_path_length, receptive_field

SIZES = {
    "ci": dict(draws=64, batch=32, slots=7, width=8, channels=16, steps=12, hidden=8, layers=4),
    "cpu": dict(
        draws=512, batch=64, slots=12, width=16, channels=32, steps=24, hidden=16, layers=6
    ),
    "full": dict(
        draws=2048, batch=64, slots=12, width=16, channels=32, steps=24, hidden=16, layers=6
    ),
}[SCALE]
print(SIZES)


def show(figure):
    """Display a figure made by `attn.viz` (they draw off-screen, without pyplot) as a PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    display(Image(buffer.getvalue()))


# %% [markdown]
# ## 1 · Hard attention and its estimators
#
# Soft attention returns Σ_j p_j v_j with p = softmax(s). Hard attention returns one v_{i*}:
# i* = argmax_j s_j at evaluation, or i* ~ Categorical(softmax(s)) in training ("Show, Attend and
# Tell", Xu et al. 2015). The selection has no gradient, so training needs an estimator:
#
# | name | value in training | gradient to the scores |
# |---|---|---|
# | `straight_through_argmax` | one_hot(argmax s) | that of softmax(s) (Bengio et al. 2013) |
# | `straight_through_sample` | one_hot(i), i ~ softmax(s) | that of softmax(s) |
# | `gumbel_relaxed` | softmax((s + g)/τ), g ~ Gumbel | exact, of the relaxation (Jang et al. 2017) |
# | `gumbel_straight_through` | one_hot(argmax(s + g)) | that of softmax((s + g)/τ) |
# | `reinforce` | one_hot(i), i ~ softmax(s) | none through the output: R ∇ log p(i) (Williams 1992) |
#
# Every sampling estimator draws i with the Gumbel-max trick from its key, so for one key they
# select the same position. Below: the weights of each estimator for one row of scores, and their
# gradient of a "reward" ⟨w, r⟩ that prefers position 2.

# %%
logits = jnp.array([1.0, 0.5, 2.0, -1.0, 0.0])
mask = jnp.array([True, True, True, True, False])  # position 4 may not be selected
reward_per_position = jnp.array([0.0, 0.0, 1.0, 0.0, 0.0])
key = jax.random.key(7)
np.set_printoptions(precision=3, suppress=True, floatmode="fixed")
print(f"{'estimator':24} {'needs key':9}  {'weights w':36}  d<w, r>/ds")
table = {}
for name, estimator in hard.ESTIMATORS.items():

    def reward(s, name=name):
        weights = hard.training_weights(name, s, mask, key=key, temperature=0.5)
        return weights @ reward_per_position, weights

    grad, weights = jax.grad(reward, has_aux=True)(logits)
    table[name] = (weights, grad)
    print(f"{name:24} {estimator.needs_key!s:9}  {np.asarray(weights)!s:36}  {np.asarray(grad)}")

# Exact checks: the one-hot estimators give exact one-hots; those that sample with the same key
# select the same position, the one `sample_index` draws; masked positions get nothing.
drawn = int(hard.sample_index(key, logits, mask))
for name in ("straight_through_sample", "gumbel_straight_through", "reinforce"):
    assert np.array_equal(np.asarray(table[name][0]), np.eye(5)[drawn]), name
assert np.array_equal(np.asarray(table["straight_through_argmax"][0]), np.eye(5)[2])
assert np.isclose(float(jnp.sum(table["gumbel_relaxed"][0])), 1.0, atol=1e-6)
assert all(float(w[4]) == 0.0 for w, _ in table.values())
assert np.all(np.asarray(table["reinforce"][1]) == 0.0)  # REINFORCE: nothing through the output

# %% [markdown]
# ## 2 · `HardMultiHeadAttention` on a marker-selection task
#
# A query must fetch the one context slot whose last feature carries a marker (3.0); the others
# carry 0. The task loss is the squared error between the attended value and that slot. The hard
# layer has exactly the parameters of `MultiHeadAttention`; at evaluation it selects the argmax of
# the same scores the soft layer turns into a softmax.

# %%
B, S, D = SIZES["batch"], SIZES["slots"], SIZES["width"]


def marker_batch(key):
    """query [B, 1, D] (ones), context [B, S, D], target [B, 1, D] (the marked slot), marker [B]."""
    payload_key, marker_key = jax.random.split(key)
    context = jax.random.normal(payload_key, (B, S, D)).at[:, :, -1].set(0.0)
    marker = jax.random.randint(marker_key, (B,), 0, S)
    context = context.at[jnp.arange(B), marker, -1].set(3.0)
    target = context[jnp.arange(B), marker][:, None, :]
    return jnp.ones((B, 1, D)), context, target, marker


batch = marker_batch(jax.random.key(5))
query, context, target, marker = batch
soft = MultiHeadAttention(2, D, rngs=nnx.Rngs(0))
hard_layer = HardMultiHeadAttention(2, D, estimator="reinforce", rngs=nnx.Rngs(0))
hard_layer.eval()  # evaluation: the argmax (layers are built in training mode, as in nnx)
_, soft_found = collect_intermediates(soft, query, context)
out, hard_found = collect_intermediates(hard_layer, query, context)
soft_weights = np.asarray(soft_found[("attention_weights",)])  # [B, N, 1, S]
hard_weights = np.asarray(hard_found[("attention_weights",)])
selection = hard_found[("selection",)]
print("soft weights of example 0, head 0:", np.round(soft_weights[0, 0, 0], 3))
print("hard weights of example 0, head 0:", hard_weights[0, 0, 0])
print("selected:", np.asarray(selection.index)[:8, 0, 0], " marked:", np.asarray(marker)[:8])

# Exact: one-hot rows, at the argmax of the soft layer's weights (same parameters, same scores).
assert set(np.unique(hard_weights)) <= {0.0, 1.0} and np.all(hard_weights.sum(-1) == 1.0)
assert np.array_equal(np.asarray(selection.index), soft_weights.argmax(-1))
assert np.array_equal(hard_weights.argmax(-1), np.asarray(selection.index))

# %% [markdown]
# ## 3 · How noisy is each estimator's gradient?
#
# `gradient_variance` evaluates the gradient of one draw's loss for many keys (same batch, same
# parameters) and averages the variance of every entry of the query and key projections'
# gradients. REINFORCE's estimate R ∇ log p(i) is unbiased but noisy; subtracting a baseline b
# (here the mean reward, what the moving average of `reinforce_loss` converges to) keeps it
# unbiased and shrinks the variance. Straight-through and Gumbel-softmax are biased but quiet.

# %%
LEARNERS = ("straight_through_sample", "gumbel_relaxed", "gumbel_straight_through", "reinforce")


def gradient_fn(estimator, baseline):
    """(estimator, key) -> gradients of the query and key projections for one draw."""
    layer = HardMultiHeadAttention(2, D, estimator=estimator, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    def per_example_loss(params, key):
        layer = nnx.merge(graphdef, params, rest)
        out, found = collect_intermediates(
            layer, query, context, deterministic=False, key=key, temperature=0.5
        )
        return jnp.mean((out - target) ** 2, axis=(1, 2)), found[("selection",)]

    def loss(params, key):
        per_example, selection = per_example_loss(params, key)
        total = jnp.mean(per_example)
        if estimator == "reinforce":
            total = total + reinforce_loss(selection.log_prob, -per_example, baseline)[0]
        return total

    def gradient(name, key):
        grads = jax.grad(loss)(params, key)
        return {"query": grads["query"], "key": grads["key"]}

    return gradient, per_example_loss, params


variances = {}
for estimator in LEARNERS:
    gradient, _, _ = gradient_fn(estimator, 0.0)
    variances.update(
        gradient_variance(
            gradient, jax.random.key(0), estimators=[estimator], num_samples=SIZES["draws"]
        )
    )
_, per_example_loss, params = gradient_fn("reinforce", 0.0)
keys = jax.random.split(jax.random.key(3), 32)
mean_reward = float(-jnp.mean(jax.vmap(lambda k: per_example_loss(params, k)[0])(keys)))
gradient, _, _ = gradient_fn("reinforce", mean_reward)
variances["reinforce, baseline = mean reward"] = gradient_variance(
    gradient, jax.random.key(0), estimators=["reinforce"], num_samples=SIZES["draws"]
)["reinforce"]
for name, value in variances.items():
    print(f"{name:36} {value:.3e}")

figure, ax = plt.subplots(figsize=(7, 2.8))
ax.barh(list(variances), list(variances.values()))
ax.set(xscale="log", xlabel="gradient variance per entry (log)")
ax.invert_yaxis()
plt.show()

assert all(np.isfinite(v) and v > 0 for v in variances.values()), variances
assert variances["reinforce"] > 2 * max(
    variances["straight_through_sample"], variances["gumbel_relaxed"]
)
assert variances["reinforce, baseline = mean reward"] < 0.5 * variances["reinforce"]

# %% [markdown]
# ## 4 · Squeeze-and-excitation: attention over channels
#
# SE (Hu et al. 2018) pools each channel over space, z = mean_{h,w} x, and rescales the channels
# by s = σ(relu(z W_1 + b_1) W_2 + b_2) ∈ (0, 1)^C: a weight per channel, computed from the whole
# image, that need not sum to one. The layer sows s as "channel_weights".
#
# Below: images whose class decides which half of the channels is bright. The weights s differ by
# class even in an untrained layer, because they are a function of the pooled channels.

# %%
C = SIZES["channels"]
rng = np.random.default_rng(0)
classes = np.repeat([0, 1], 4)
images = rng.normal(size=(8, 6, 6, C)).astype(np.float32)
images[classes == 0, :, :, : C // 2] += 2.0
images[classes == 1, :, :, C // 2 :] += 2.0
se = SqueezeExcitation(C, reduction=4, rngs=nnx.Rngs(0))
out, found = collect_intermediates(se, images)
s = np.asarray(found[("channel_weights",)])  # [B, C]
show(viz.plot_channel_weights(s, row_labels=[f"class {c}" for c in classes], title="SE weights s"))

# Exact: the output is the input times s, broadcast over the image; s is the formula above.
assert np.array_equal(np.asarray(out), np.asarray(jnp.asarray(images) * s[:, None, None, :]))
z = images.mean(axis=(1, 2))
recomputed = jax.nn.sigmoid(se.expand_proj(jax.nn.relu(se.reduce_proj(jnp.asarray(z)))))
np.testing.assert_allclose(np.asarray(recomputed), s, rtol=1e-5, atol=1e-6)
assert np.all((s > 0) & (s < 1))

# %% [markdown]
# ## 5 · LSTM gates as attention maps
#
# An LSTM's gates i_t, f_t, o_t ∈ (0, 1)^H weigh each unit of the state at each step: what to
# write, what to keep, what to show. `RNN(..., cell="lstm")` sows them per cell as "gates";
# `viz.plot_gates` draws them like an attention map, unit on the rows and step on the columns.
# A padded step (mask False) gets no gate at all: exactly zero.

# %%
T, H = SIZES["steps"], SIZES["hidden"]
text = "attention is all you need, or is it?"[:T]
vocab = sorted(set(text))
one_hot = jnp.asarray(np.eye(len(vocab), dtype=np.float32)[[vocab.index(c) for c in text]])[None]
lstm = RNN(len(vocab), H, cell="lstm", rngs=nnx.Rngs(0))
length = T - 3
mask = jnp.arange(T)[None] < length  # the last 3 steps are padding
(outputs, _), found = collect_intermediates(lstm, one_hot, mask)
gates = {name: np.asarray(g[0]) for name, g in found[("cells", 0, "gates")].items()}
show(viz.plot_gates(gates, tokens=list(text), mask=np.asarray(mask[0]), title="LSTM gates"))

# Exact: padded steps have zero gates; the first step's input gate is σ(x_0 W_i + b_i) (h_0 = 0).
for name, g in gates.items():
    assert np.all(g[length:] == 0.0) and np.all((g[:length] > 0) & (g[:length] < 1)), name
cell = lstm.cells[0]
pre = one_hot[0, 0] @ cell.input_kernel[...] + cell.input_bias[...] + cell.hidden_bias[...]
np.testing.assert_allclose(gates["input"][0], np.asarray(jax.nn.sigmoid(pre[:H])), rtol=1e-5)
(short_outputs, _) = lstm(one_hot[:, :length])  # the real steps alone give the same outputs
np.testing.assert_allclose(np.asarray(outputs[:, :length]), np.asarray(short_outputs), atol=1e-6)

# %% [markdown]
# ## 6 · Path length: convolution against attention
#
# How many layers must a signal cross from position 0 to position n − 1 (Vaswani et al. 2017,
# Table 1)? Self-attention: 1. A recurrence: n − 1 steps. Convolutions of width k: ⌈(n−1)/(k−1)⌉
# layers, dilated ones (dilations 1, k, k², …): ⌈log_k n⌉. A stack of causal convolutions sees
# the r = 1 + Σ_l (k − 1) d_l inputs before each output (its receptive field).
#
# We measure which inputs each output depends on with `jax.jacobian`: entry (t, s) is nonzero
# exactly when output t depends on input s. For a WaveNet stack that is the band
# t − r + 1 ≤ s ≤ t; for one causal self-attention layer, every s ≤ t.

# %%
n = 2 ** SIZES["layers"]
KINDS = {
    "self-attention": ("self_attention", {}),
    "recurrent": ("recurrent", {}),
    "convolution k=3": ("convolution", {"kernel_size": 3}),
    "dilated k=2": ("dilated_convolution", {"kernel_size": 2}),
}
print(f"{'n':>6}" + "".join(f"{name:>18}" for name in KINDS))
for size in (16, 256, 4096):
    lengths = [max_path_length(kind, size, **options) for kind, options in KINDS.values()]
    print(f"{size:>6}" + "".join(f"{length:>18}" for length in lengths))


def dependence(module, length):
    """bool [T, S]: whether output t depends on input s (one example, summed over channels)."""
    x = jnp.asarray(np.random.default_rng(1).normal(size=(1, length, 4)), jnp.float32)
    graphdef, state = nnx.split(module)
    jacobian = jax.jacobian(lambda x: nnx.merge(graphdef, state)(x))(x)  # [1, T, C', 1, S, 4]
    return np.asarray(jnp.abs(jacobian[0, :, :, 0]).sum(axis=(1, 3)) > 0)


needed = max_path_length("dilated_convolution", n, kernel_size=2)
maps = {}
for layers in (needed - 1, needed):
    stack = DilatedCausalConvStack(
        4, residual_channels=8, skip_channels=4, kernel_size=2, num_layers=layers, rngs=nnx.Rngs(0)
    )
    r = receptive_field(2, [2**l for l in range(layers)])
    assert r == stack.receptive_field == 2**layers
    output_t, input_s = np.indices((n, n))
    band = (input_s <= output_t) & (input_s > output_t - r)
    found_map = dependence(stack, n)
    assert np.array_equal(found_map, band), layers  # exact: the band, nothing more, nothing less
    maps[f"{layers} dilated conv layers (r = {r})"] = found_map


class CausalSelfAttention(nnx.Module):
    def __init__(self, rngs):
        self.attention = MultiHeadAttention(2, 4, rngs=rngs)

    def __call__(self, x):
        return self.attention(x, is_causal=True)


maps["1 causal self-attention layer"] = dependence(CausalSelfAttention(nnx.Rngs(0)), n)
assert np.array_equal(maps["1 causal self-attention layer"], np.tril(np.ones((n, n), bool)))
# Output n - 1 reaches input 0 after exactly ⌈log_2 n⌉ dilated layers, and after 1 attention layer.
first, second, attention_map = maps.values()
assert not first[n - 1, 0] and second[n - 1, 0] and attention_map[n - 1, 0]
assert needed == SIZES["layers"] and max_path_length("self_attention", n) == 1

figure, axes = plt.subplots(1, 3, figsize=(12, 4), layout="constrained")
for ax, (title, dependence_map) in zip(axes, maps.items(), strict=True):
    ax.imshow(dependence_map, cmap="Greys", vmin=0, vmax=1)
    ax.set(title=title, xlabel="input s", ylabel="output t")
plt.show()

# %%
print(f"notebook 08 passed its checks at scale {SCALE!r}")
