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
# # 04 · GPT: a character language model, the key/value cache and sampling
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/TO-BE-SET-ON-PUBLICATION/attn/blob/TO-BE-SET-ON-PUBLICATION/colab/04_gpt.ipynb)
#
# What you will learn:
# - a decoder-only Transformer (`attn.models.TransformerLM`, GPT-style: causal self-attention,
#   learned positions, tied embeddings) trained on characters of Python's own documentation,
#   which ships with Python (`attn.data.corpora.pydoc_documents`, no download);
# - generation with the key/value cache (`attn.decoding.greedy`): each step feeds one token and
#   reuses the keys and values of the earlier ones, and gives exactly the tokens of re-running
#   the whole prefix every step;
# - the sampling knobs of `attn.decoding.sample`: temperature, top-k and top-p (nucleus), what
#   each does to the next-token distribution, and that a fixed key reproduces a sample;
# - at `full` scale, where the Hugging Face Hub is reachable: the real GPT-2 weights in the same
#   `TransformerLM` (`attn.pretrained.load_gpt2`), cached against uncached once more.
#
# | scale | what runs | time |
# |---|---|---|
# | `ci` | a 1-layer LM, 60 training steps, 24 generated characters | about 25 s of CPU time (measured) |
# | `cpu` | a 2-layer LM, 400 steps, 120 characters | about 1.5 min of CPU time (measured) |
# | `full` | a 4-layer LM, 2000 steps; GPT-2 (124M) from the Hub when reachable | about 5 min on a v5e (estimate) |
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
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

from attn import decoding
from attn.data.corpora import pydoc_documents
from attn.models import TransformerLM, TransformerLMConfig

SIZES = {
    "ci": dict(layers=1, width=32, heads=2, documents=200, length=32, batch=16, steps=60, new=24),
    "cpu": dict(
        layers=2, width=128, heads=4, documents=2000, length=64, batch=32, steps=400, new=120
    ),
    "full": dict(
        layers=4, width=256, heads=8, documents=None, length=128, batch=64, steps=2000, new=200
    ),
}[SCALE]
print(SIZES)

# %% [markdown]
# ## 1 · Characters of Python's documentation
#
# The help topics of `pydoc` (the text `help("with")` prints) are English prose that every Python
# installation carries. Each distinct character is a token.

# %%
text = "\n\n".join(pydoc_documents("train", max_documents=SIZES["documents"]))
characters = sorted(set(text))
V = len(characters)
index_of = {c: i for i, c in enumerate(characters)}


def encode(string):
    return np.array([index_of[c] for c in string], np.int32)


def decode(ids):
    return "".join(characters[int(i)] for i in ids)


data = encode(text)
assert decode(data[:200]) == text[:200]  # the tokenizer round-trips
print(f"{len(text):,} characters, vocabulary V = {V}")
print(text[:300])

# %% [markdown]
# ## 2 · Train a small GPT
#
# Next-token cross-entropy on random windows, Adam. A model that knows nothing scores log V nats
# per character; the loss should fall well below that.

# %%
L = SIZES["length"]
config = TransformerLMConfig(
    vocab_size=V,
    num_layers=SIZES["layers"],
    num_heads=SIZES["heads"],
    model_dim=SIZES["width"],
    mlp_dim=4 * SIZES["width"],
    max_length=2 * L + SIZES["new"],
)
model = TransformerLM(config, rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)


@nnx.jit
def train_step(model, optimizer, ids):
    def loss_fn(model):
        logits = model(ids[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:]).mean()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


rng = np.random.default_rng(0)
losses, start = [], time.perf_counter()
for _ in range(SIZES["steps"]):
    starts = rng.integers(0, len(data) - L - 1, SIZES["batch"])
    losses.append(
        float(train_step(model, optimizer, jnp.asarray(data[starts[:, None] + np.arange(L + 1)])))
    )
print(
    f"loss {losses[0]:.3f} -> {losses[-1]:.3f} nats/char (log V = {math.log(V):.3f}) "
    f"in {time.perf_counter() - start:.1f} s"
)
figure, ax = plt.subplots(figsize=(6, 2.8))
ax.plot(losses)
ax.axhline(math.log(V), color="grey", linestyle=":", label="log V (uniform)")
ax.set(xlabel="step", ylabel="cross-entropy (nats/char)")
ax.legend()
plt.show()
target = {"ci": 0.85, "cpu": 0.6, "full": 0.5}[SCALE]
assert np.mean(losses[-5:]) < target * math.log(V), (losses[-5:], math.log(V))

# %% [markdown]
# ## 3 · Greedy decoding with the cache equals re-running the prefix
#
# Without a cache, generating token t re-runs the model over all t − 1 earlier tokens: O(T²) work
# for T tokens. `decoding.greedy` first runs the prompt once, storing every layer's keys and values,
# then feeds one token per step: the queries of the new token attend to the stored keys. Causal
# attention makes this exact, so the tokens must be identical to the slow loop below (float32
# matrix products at full precision, so that the two orders of summation round alike).

# %%
prompt_text = "The with statement"
prompt = jnp.asarray(encode(prompt_text))[None]  # [1, T0]
M = SIZES["new"]


@nnx.jit
def forward(model, ids):
    return model(ids)


def greedy_without_cache(model, prompt, new_tokens):
    """Re-run the whole sequence for every new token. The sequence has its final length from the
    start (zeros after the prefix), so `forward` compiles once; causal attention keeps position
    t - 1 blind to the zeros after it."""
    T0 = prompt.shape[1]
    ids = jnp.zeros((prompt.shape[0], T0 + new_tokens), prompt.dtype).at[:, :T0].set(prompt)
    for t in range(T0, T0 + new_tokens):
        ids = ids.at[:, t].set(jnp.argmax(forward(model, ids)[:, t - 1], axis=-1))
    return ids


with jax.default_matmul_precision("highest"):
    cached = decoding.greedy(model, prompt, max_new_tokens=M)
    uncached = greedy_without_cache(model, prompt, M)
print(repr(decode(cached[0])))
assert cached.shape == (1, prompt.shape[1] + M)
assert np.array_equal(np.asarray(cached), np.asarray(uncached))  # exact: the same tokens

# %% [markdown]
# ## 4 · Sampling: temperature, top-k, top-p
#
# Sampling draws y ~ softmax(logits / τ), optionally restricted to the k most probable tokens
# (top-k) and then to the smallest set whose probability reaches p (top-p, the nucleus;
# Holtzman et al. 2020). τ < 1 sharpens, τ > 1 flattens. Below, the next-character distribution
# after the prompt under each knob, computed here in NumPy from the model's logits.

# %%
logits = np.asarray(model(prompt)[0, -1], np.float64)


def knob_distribution(logits, temperature=1.0, top_k=None, top_p=None):
    """softmax(logits / τ) restricted to the top-k, then to the top-p nucleus, renormalised."""
    p = np.exp((logits - logits.max()) / temperature)
    p /= p.sum()
    order = np.argsort(-p, kind="stable")
    keep = np.zeros_like(p, bool)
    keep[order[: top_k or len(p)]] = True
    p = np.where(keep, p, 0.0) / np.where(keep, p, 0.0).sum()
    if top_p is not None:
        before = np.cumsum(p[order]) - p[order]  # mass of the more probable tokens
        keep = np.zeros_like(p, bool)
        keep[order[before < top_p]] = True
        p = np.where(keep, p, 0.0) / np.where(keep, p, 0.0).sum()
    return p


KNOBS = {
    "τ = 1": dict(),
    "τ = 0.5": dict(temperature=0.5),
    "τ = 1.5": dict(temperature=1.5),
    "top-k = 5": dict(top_k=5),
    "top-p = 0.8": dict(top_p=0.8),
}
shown = np.argsort(-logits)[:15]
figure, axes = plt.subplots(1, len(KNOBS), figsize=(15, 2.6), sharey=True, layout="constrained")
for ax, (name, knobs) in zip(axes, KNOBS.items(), strict=True):
    ax.bar(range(len(shown)), knob_distribution(logits, **knobs)[shown])
    ax.set_xticks(range(len(shown)), [repr(characters[i])[1:-1] for i in shown], fontsize=7)
    ax.set_title(name)
axes[0].set_ylabel(f"p(next | {prompt_text!r})")
plt.show()

key = jax.random.key(0)
for name, knobs in KNOBS.items():
    tokens = decoding.sample(model, prompt, key=key, max_new_tokens=M, **knobs)
    print(f"{name:12} {decode(tokens[0])!r}")

# %% [markdown]
# The checks. Exact: the same key gives the same sample; top-k = 1 is greedy whatever the
# temperature; every sampled token lies in the top-k set or in the nucleus. Within sampling
# noise: the frequencies of many one-token samples follow the distribution drawn above.

# %%
first = decoding.sample(model, prompt, key=key, max_new_tokens=M, temperature=1.5)
again = decoding.sample(model, prompt, key=key, max_new_tokens=M, temperature=1.5)
assert np.array_equal(np.asarray(first), np.asarray(again))
with jax.default_matmul_precision("highest"):
    top1 = decoding.sample(model, prompt, key=key, max_new_tokens=M, temperature=2.0, top_k=1)
assert np.array_equal(np.asarray(top1), np.asarray(cached))

rows = {"ci": 1000, "cpu": 4000, "full": 16000}[SCALE]
many = jnp.repeat(prompt, rows, axis=0)
for name, knobs in {"top-k = 5": dict(top_k=5), "top-p = 0.8": dict(top_p=0.8)}.items():
    drawn = np.asarray(decoding.sample(model, many, key=key, max_new_tokens=1, **knobs)[:, -1])
    expected = knob_distribution(logits, **knobs)
    assert np.all(expected[drawn] > 0), name  # exact: never outside the kept set
    frequencies = np.bincount(drawn, minlength=V) / rows
    total_variation = 0.5 * np.abs(frequencies - expected).sum()
    print(f"{name}: total variation between sampled and expected {total_variation:.3f}")
    assert total_variation < 3.0 / math.sqrt(rows), name

# %% [markdown]
# ## 5 · GPT-2 (`full` scale, where the Hugging Face Hub is reachable)
#
# `attn.pretrained.load_gpt2` puts the weights of a Hugging Face GPT-2 checkpoint into the same
# `TransformerLM` class (its logits equal the Hugging Face model's; the project's tests check
# this). The 124M-parameter model is about 500 MB to download, so it runs only at `full` scale
# and is skipped, with one line, when the Hub or its client is not available.

# %%
gpt2 = None
if SCALE == "full":
    try:
        import json

        from huggingface_hub import hf_hub_download
        from transformers import AutoTokenizer

        from attn.pretrained import load_gpt2

        with open(hf_hub_download("gpt2", "config.json")) as f:
            gpt2_config = json.load(f)
        gpt2 = load_gpt2(hf_hub_download("gpt2", "model.safetensors"), gpt2_config)
        tokenizer = AutoTokenizer.from_pretrained("gpt2")
    except Exception as error:  # no network, no Hub client: skip, saying why
        print(f"GPT-2 skipped: {type(error).__name__}: {str(error).splitlines()[0][:120]}")
else:
    print(f"GPT-2 skipped: it runs at scale 'full' (here {SCALE!r})")
if gpt2 is not None:
    ids = jnp.asarray(tokenizer("Attention is all you need because")["input_ids"])[None]
    with jax.default_matmul_precision("highest"):
        continued = decoding.greedy(gpt2, ids, max_new_tokens=20)
        slow = greedy_without_cache(gpt2, ids, 20)
    print(tokenizer.decode(np.asarray(continued[0])))
    print(
        tokenizer.decode(
            np.asarray(decoding.sample(gpt2, ids, key=key, max_new_tokens=40, top_p=0.9)[0])
        )
    )
    assert np.array_equal(np.asarray(continued), np.asarray(slow))

# %%
print(f"notebook 04 passed its checks at scale {SCALE!r}")
