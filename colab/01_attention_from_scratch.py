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
# # 01 · Attention from scratch
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/TO-BE-SET-ON-PUBLICATION/attn/blob/TO-BE-SET-ON-PUBLICATION/colab/01_attention_from_scratch.ipynb)
#
# What you will learn:
# - the five score functions of `attn.kernels.scores` (dot, scaled dot, general, additive,
#   cosine) on the same queries and keys, each checked against a float64 NumPy formula;
# - boolean masks (causal, causal with a decoding offset, padding, sliding window) and the rule for
#   a query that may attend to nothing: output 0 and gradient 0, never NaN and never mean(V);
# - why the dot product is divided by √d: without it the softmax saturates as d grows;
# - the worked example of the lecture notes (one scaled-dot head reads "⟨START⟩ Awful plot and
#   actors. The movie is"), reproduced step by step with the notes' numbers checked;
# - that `attention`, `dot_product_attention` (reference, blockwise, XLA) and
#   `jax.nn.dot_product_attention` agree with float64 NumPy.
#
# | scale | what runs | time |
# |---|---|---|
# | `ci` | small sizes, 64 samples per d | about 20 s of CPU time (measured) |
# | `cpu` | larger sizes, 1,024 samples per d | about 20 s of CPU time (measured) |
# | `full` | the `cpu` sizes, T = 1,024 for the parity check | under 1 min on a v5e (estimate) |
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
import math

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from attn.kernels import (
    SCORES,
    attention,
    causal_mask,
    dot_product_attention,
    padding_mask,
    scores,
    window_mask,
)

jax.config.update("jax_enable_x64", True)  # float64 for the exact checks against NumPy
ACCELERATOR = jax.devices()[0]  # a TPU or GPU where there is one, else the CPU
jax.config.update("jax_default_device", jax.devices("cpu")[0])  # float64 runs on the CPU
SIZES = {
    "ci": dict(samples=64, dims=(4, 16, 64, 256), parity_T=16),
    "cpu": dict(samples=1024, dims=(4, 16, 64, 256, 1024), parity_T=256),
    "full": dict(samples=1024, dims=(4, 16, 64, 256, 1024), parity_T=1024),
}[SCALE]
print(SIZES)

# %% [markdown]
# ## 1 · Five ways to score a query against a key
#
# A score function maps queries q [T, Hq] and keys k [S, Hk] to logits s [T, S]:
#
# | name | s_ij | paper |
# |---|---|---|
# | `dot` | q_i · k_j | Luong et al. 2015 |
# | `scaled_dot` | q_i · k_j / √H | Vaswani et al. 2017 |
# | `general` | q_i W k_jᵀ | Luong et al. 2015 |
# | `additive` | v · tanh(q_i W_q + k_j W_k) | Bahdanau et al. 2015 |
# | `cosine` | cos(q_i, k_j) / τ | Graves et al. 2014 |
#
# All five are computed on the same q and k, and each is checked against its formula in NumPy.

# %%
rng = np.random.default_rng(0)
T, S, H, A = 5, 7, 8, 6
q, k = rng.normal(size=(T, H)), rng.normal(size=(S, H))
W, W_q, W_k, v = (rng.normal(size=shape) for shape in [(H, H), (H, A), (H, A), (A,)])
params = {
    "dot": {},
    "scaled_dot": {},
    "general": {"W": W},
    "additive": {"W_q": W_q, "W_k": W_k, "v": v},
    "cosine": {"temperature": 0.5},
}
unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
numpy_formula = {
    "dot": q @ k.T,
    "scaled_dot": q @ k.T / math.sqrt(H),
    "general": q @ W @ k.T,
    "additive": np.tanh((q @ W_q)[:, None, :] + (k @ W_k)[None, :, :]) @ v,
    "cosine": unit(q) @ unit(k).T / 0.5,
}
logits = {name: np.asarray(SCORES[name](q, k, **params[name])) for name in SCORES}
figure, axes = plt.subplots(1, len(logits), figsize=(16, 3), layout="constrained")
for ax, (name, s) in zip(axes, logits.items(), strict=True):
    image = ax.imshow(s, cmap="RdBu_r")
    ax.set(title=name, xlabel="key j", ylabel="query i")
    figure.colorbar(image, ax=ax, shrink=0.8)
plt.show()
for name, s in logits.items():
    error = np.abs(s - numpy_formula[name]).max()
    print(f"{name:>10}: max |attn - NumPy| = {error:.1e}")
    assert s.dtype == np.float64 and error < 1e-12, name
assert sorted(SCORES) == ["additive", "cosine", "dot", "general", "scaled_dot"]

# %% [markdown]
# Attention turns each row of logits into weights with a softmax and averages the values:
# `out_i = Σ_j softmax(s_i)_j v_j`. The reference kernel `attn.kernels.attention` returns both.

# %%
values = rng.normal(size=(S, 3))
out, weights = attention(q, k, values, score="scaled_dot")
expected_weights = np.exp(numpy_formula["scaled_dot"])
expected_weights /= expected_weights.sum(axis=1, keepdims=True)
assert np.abs(np.asarray(weights) - expected_weights).max() < 1e-12
assert np.abs(np.asarray(out) - expected_weights @ values).max() < 1e-12
assert np.allclose(np.asarray(weights).sum(axis=1), 1.0, atol=1e-15, rtol=0)
print("weights rows sum to 1; out = weights · values")

# %% [markdown]
# ## 2 · Masks
#
# A mask is a boolean array, True = may attend. Causal: query i sees keys j ≤ i. With a decoding
# offset p (a chunk of queries that starts at position p of the cache) query i sees j ≤ p + i.
# Padding: key j of example b is real iff j < length_b. A window w: |j − i| ≤ w. Black = may
# attend.

# %%
T = S = 8
masks = {
    "causal": causal_mask(T, S),
    "causal, offset 3 (T=5)": causal_mask(5, S, offset=3),
    "padding, length 5": padding_mask(jnp.array([5]), S)[0, 0].repeat(T, axis=0),
    "window 2": window_mask(T, S, 2),
    "causal ∧ window (2, 0)": causal_mask(T, S) & window_mask(T, S, (2, 0)),
}
figure, axes = plt.subplots(1, len(masks), figsize=(16, 3.2), layout="constrained")
for ax, (name, mask) in zip(axes, masks.items(), strict=True):
    ax.imshow(np.asarray(mask), cmap="Greys", vmin=0, vmax=1)
    ax.set(title=name, xlabel="key j", ylabel="query i")
plt.show()
counts = {name: int(np.asarray(mask).sum()) for name, mask in masks.items()}
print(counts)
assert counts == {
    "causal": 36,  # 1 + 2 + … + 8
    "causal, offset 3 (T=5)": 4 + 5 + 6 + 7 + 8,
    "padding, length 5": 8 * 5,
    "window 2": 8 * 5 - 2 * (2 + 1),  # 5 per row, minus the corners
    "causal ∧ window (2, 0)": 1 + 2 + 3 * 6,
}

# %% [markdown]
# ## 3 · The fully masked row
#
# A query may have no key to attend to (a padded query, a window past the end). A plain softmax
# of `-inf` logits gives 0/0 = NaN; a softmax of equal large negative logits gives the uniform
# row, so the output is mean(V), which is what `jax.nn.dot_product_attention` returns. attn's rule
# is output 0 with weights 0, and a gradient that is 0 and finite.

# %%
q1, k1, v1 = rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), rng.normal(size=(5, 2))
row_mask = np.ones((3, 5), bool)
row_mask[1] = False  # query 1 may attend to nothing
naive = jax.nn.softmax(jnp.where(row_mask, q1 @ k1.T, -jnp.inf), axis=-1)
print("plain softmax of -inf, row 1:", np.asarray(naive[1]))
out, weights = attention(q1, k1, v1, mask=row_mask)
print("attn: row 1 weights", np.asarray(weights[1]), "output", np.asarray(out[1]))
jax_nn = jax.nn.dot_product_attention(
    *(jnp.asarray(x, jnp.float32)[None, :, None, :] for x in (q1, k1, v1[:, :1].repeat(4, 1))),
    mask=row_mask[None, None],
)
print("jax.nn row 1:", np.asarray(jax_nn[0, 1, 0]), "= mean(V):", v1[:, 0].mean())
gradient = jax.grad(lambda q: attention(q, k1, v1, mask=row_mask)[0].sum())(q1)
print("gradient of row 1:", np.asarray(gradient[1]))
assert np.isnan(np.asarray(naive[1])).all()
assert (np.asarray(weights[1]) == 0).all() and (np.asarray(out[1]) == 0).all()
assert np.isfinite(np.asarray(gradient)).all() and (np.asarray(gradient[1]) == 0).all()
multi = dot_product_attention(
    q1[None, :, None], k1[None, :, None], v1[None, :, None], mask=row_mask[None, None]
)
assert (np.asarray(multi[0, 1]) == 0).all()

# %% [markdown]
# ## 4 · Why divide by √d
#
# For q and k with independent unit-variance entries, q · k has variance d. Without the 1/√d
# the logits spread wider as d grows, the softmax puts nearly all its weight on one key (its
# entropy falls towards 0) and its gradient vanishes. Scaled, the logits keep variance 1 and
# the entropy stays put. Below: S = 32 keys, the mean over many random queries.

# %%
S = 32
rows = []
for d in SIZES["dims"]:
    query_key, key_key = jax.random.split(jax.random.key(d))
    qd = jax.random.normal(query_key, (SIZES["samples"], 1, d), jnp.float32)  # one query each
    kd = jax.random.normal(key_key, (SIZES["samples"], S, d), jnp.float32)
    for name in ("dot", "scaled_dot"):
        s = jax.vmap(lambda a, b: SCORES[name](a, b))(qd, kd)[:, 0]  # noqa: B023
        p = jax.nn.softmax(s, axis=-1)
        entropy = float(-(p * jax.nn.log_softmax(s, axis=-1)).sum(-1).mean())
        rows.append(
            dict(
                d=d,
                score=name,
                std=float(s.std()),
                entropy=entropy,
                max_weight=float(p.max(-1).mean()),
            )
        )
for row in rows:
    print(row)
figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.5), layout="constrained")
for name in ("dot", "scaled_dot"):
    picked = [r for r in rows if r["score"] == name]
    left.plot([r["d"] for r in picked], [r["entropy"] for r in picked], "o-", label=name)
    right.plot([r["d"] for r in picked], [r["max_weight"] for r in picked], "o-", label=name)
left.axhline(math.log(S), color="gray", ls=":", label="uniform: log S")
left.set(xscale="log", xlabel="d", ylabel="softmax entropy (nats)", title="entropy")
right.set(xscale="log", xlabel="d", ylabel="largest weight", title="saturation")
left.legend(), right.legend()
plt.show()
by = {(r["score"], r["d"]): r for r in rows}
dims = SIZES["dims"]
for d in dims:  # the standard deviation of the logits: √d unscaled, 1 scaled
    tolerance = 3 / math.sqrt(SIZES["samples"])  # a few standard errors (keys share a query)
    assert abs(by["dot", d]["std"] / math.sqrt(d) - 1) < tolerance, d
    assert abs(by["scaled_dot", d]["std"] - 1) < tolerance, d
# Exact: with scale 1 the scaled score is the dot product, bit for bit.
assert np.array_equal(np.asarray(scores.scaled_dot(q, k, scale=1.0)), np.asarray(scores.dot(q, k)))
assert by["dot", dims[-1]]["entropy"] < 0.5 * by["dot", dims[0]]["entropy"]
assert (
    max(by["scaled_dot", d]["entropy"] for d in dims)
    - min(by["scaled_dot", d]["entropy"] for d in dims)
    < 0.1
)

# %% [markdown]
# ## 5 · The worked example of the lecture notes
#
# A language model of one self-attention layer with one head (no feed-forward layer, no residual)
# reads "⟨START⟩ Awful plot and actors. The movie is" and predicts the next word, "good" or "bad".
# The notes give the word embeddings x_w, positional embeddings p_t = [0, 0, t − 1] and
# W_Q = W_K = W_V = W; the output layer W_yh is "as above" in the notes, and their solution implies
# the rows good = [1, −1] and bad = [−1, 1]. Each step below is checked against the notes' value.

# %%
words = ["<START>", "Awful", "plot", "and", "actors.", "The", "movie", "is"]
x_w = np.array(
    [[0, 0, 0], [0, -5, 0], [1, 0, 0], [0, 0, 0], [-1, 0, 0], [0, 0, 0], [-2, 0, 0], [0, 0, 0]],
    np.float64,
)
p_t = np.stack([np.zeros(8), np.zeros(8), np.arange(8)], axis=1)  # p_t = [0, 0, t - 1]
W = np.array([[0.1, 0.0], [0.0, -0.1], [0.0, 0.1]])  # W_Q = W_K = W_V
W_yh = np.array([[1.0, -1.0], [-1.0, 1.0]])  # rows "good", "bad"

# The notes' solution, step by step.
NOTES_X = np.array(
    [[0, 0, 0], [0, -5, 1], [1, 0, 2], [0, 0, 3], [-1, 0, 4], [0, 0, 5], [-2, 0, 6], [0, 0, 7]]
)
NOTES_QKV = np.array(
    [[0, 0], [0, 0.6], [0.1, 0.2], [0, 0.3], [-0.1, 0.4], [0, 0.5], [-0.2, 0.6], [0, 0.7]]
)
NOTES_S8_TIMES_SQRT2 = np.array([0, 0.42, 0.14, 0.21, 0.28, 0.35, 0.42, 0.49])
NOTES_P8 = np.array([0.101, 0.136, 0.112, 0.118, 0.124, 0.130, 0.136, 0.143])
NOTES_Z8 = np.array([-0.028, 0.436])
NOTES_LOGITS = np.array([-0.464, 0.464])  # good, bad

# %% [markdown]
# Step 1: X = x_w + p_t. The notes' matrix, exactly.

# %%
X = x_w + p_t
print(X)
assert np.array_equal(X, NOTES_X)

# %% [markdown]
# Step 2: Q = K = V = X W (the notes print them to one decimal, which is exact here).

# %%
Q = K = V = X @ W
print(Q)
assert np.abs(Q - NOTES_QKV).max() < 1e-12

# %% [markdown]
# Step 3: the scores of the last token, s_8 = q_8 Kᵀ / √2 (H = 2).

# %%
s_8 = Q[-1] @ K.T / math.sqrt(2)
print("s_8 · √2 =", s_8 * math.sqrt(2))
assert np.abs(s_8 * math.sqrt(2) - NOTES_S8_TIMES_SQRT2).max() < 1e-12

# %% [markdown]
# Step 4: p_8 = softmax(s_8), z_8 = p_8 V and the logits W_yh z_8. The notes round to three
# decimals: rounded, ours are the notes' numbers exactly.

# %%
p_8 = np.exp(s_8) / np.exp(s_8).sum()
z_8 = p_8 @ V
logits_8 = W_yh @ z_8
print("p_8 =", p_8.round(4), "\nz_8 =", z_8.round(4), "\nlogits (good, bad) =", logits_8.round(4))
assert np.array_equal(p_8.round(3), NOTES_P8)
assert np.array_equal(z_8.round(3), NOTES_Z8)
assert np.array_equal(logits_8.round(3), NOTES_LOGITS)
prediction = ["good", "bad"][int(np.argmax(logits_8))]
print("prediction:", prediction)
assert prediction == "bad"

# %% [markdown]
# Step 5: the library computes the same. `attention` with the last query alone (the notes' hint)
# and the full causal self-attention matrix, whose last row is the same computation.

# %%
z_lib, p_lib = attention(Q[-1:], K, V, score="scaled_dot")
z_causal, p_causal = attention(Q, K, V, mask=causal_mask(8, 8), score="scaled_dot")
assert np.abs(np.asarray(p_lib[0]) - p_8).max() < 1e-15
assert np.abs(np.asarray(z_lib[0]) - z_8).max() < 1e-15
assert np.abs(np.asarray(z_causal[-1]) - z_8).max() < 1e-15

figure, (left, right) = plt.subplots(1, 2, figsize=(12, 3.6), layout="constrained")
left.bar(np.arange(8), p_8, label="attn")
left.plot(np.arange(8), NOTES_P8, "k_", markersize=18, label="notes (3 decimals)")
left.set_xticks(np.arange(8), words, rotation=30)
left.set(ylabel="weight", title='attention of "is" (p_8)')
left.legend()
right.imshow(np.asarray(p_causal), cmap="viridis")
right.set_xticks(np.arange(8), words, rotation=30)
right.set_yticks(np.arange(8), words)
right.set(title="the whole causal matrix; its last row is p_8")
plt.show()

# %% [markdown]
# What changes the reading? Without positional embeddings every q_t is 0 or points along the first
# axis, q_8 = 0, and p_8 is uniform (mean pooling); unscaled scores sharpen p_8 a little. The
# sentence still reads as negative in every variant. The logit of "bad" is z[1] − z[0]; with the
# positions every row of V has v[1] − v[0] ≥ 0, so any weighting reads "bad"; without them only
# "plot" leans to "good", and the uniform weights still favour "bad".

# %%
variants = {
    "scaled dot (the notes)": attention(Q[-1:], K, V, score="scaled_dot")[0][0],
    "unscaled dot": attention(Q[-1:], K, V, score="dot")[0][0],
    "no positional embeddings": attention(*(3 * [x_w @ W]), score="scaled_dot")[0][-1],
    "mean pooling": V.mean(axis=0),
}
for name, z in variants.items():
    lg = W_yh @ np.asarray(z)
    print(
        f"{name:>26}: logits good {lg[0]:+.3f}, bad {lg[1]:+.3f} -> {['good', 'bad'][lg.argmax()]}"
    )
    assert lg.argmax() == 1, name

# %% [markdown]
# ## 6 · One kernel, several implementations
#
# `dot_product_attention` takes the layout of `jax.nn.dot_product_attention` ([B, T, N, H]) and
# runs the reference kernel lifted over heads ("reference"), the memory-efficient online-softmax
# kernel ("blockwise") or XLA's ("xla"). All are compared with a float64 NumPy computation on a
# causal problem with padded keys; float32 inputs, so the tolerance is float32's.

# %%
B, T, N, H = 2, SIZES["parity_T"], 4, 32
qkv_host = rng.normal(size=(3, B, T, N, H)).astype(np.float32)
qkv = jax.device_put(qkv_host, ACCELERATOR)
lengths = np.array([T, T // 2 + 1], np.int32)
keep = np.tril(np.ones((T, T), bool))[None, None] & (np.arange(T) < lengths[:, None])[:, None, None]
logits_np = np.einsum("btnh,bsnh->bnts", *qkv_host[:2].astype(np.float64)) / math.sqrt(H)
logits_np = np.where(keep, logits_np, -np.inf)
weights_np = np.exp(logits_np - logits_np.max(-1, keepdims=True))
weights_np /= weights_np.sum(-1, keepdims=True)
reference_np = np.einsum("bnts,bsnh->btnh", weights_np, qkv_host[2].astype(np.float64))
with jax.default_matmul_precision("highest"):  # float32 matmuls on TPUs too
    results = {
        name: dot_product_attention(
            *qkv, is_causal=True, key_value_seq_lengths=lengths, implementation=name
        )
        for name in ("reference", "blockwise", "xla")
    }
    results["jax.nn"] = jax.nn.dot_product_attention(
        *qkv, is_causal=True, key_value_seq_lengths=jnp.asarray(lengths)
    )
tolerance = 1e-5 if ACCELERATOR.platform == "cpu" else 2e-4  # TPU/GPU matmuls: an estimate
for name, result in results.items():
    error = float(np.abs(np.asarray(result, np.float64) - reference_np).max())
    print(f"{name:>10} on {ACCELERATOR.platform}: max |out - float64 NumPy| = {error:.1e}")
    assert result.dtype == jnp.float32 and error < tolerance, name

# %% [markdown]
# ## Checked
#
# Every `assert` above passed: the five scores equal their formulas, the mask counts, the fully
# masked row (weights 0, output 0, gradient 0 and finite), the standard deviation of the logits
# (√d unscaled, 1 scaled), the worked example's numbers to the notes' three decimals, and the
# parity of four implementations with float64 NumPy.

# %%
print(f"notebook 01 passed its checks at scale {SCALE!r}")
