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
# # 03 · Transformer translation: dates, greedy and beam search, cross-attention
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/TO-BE-SET-ON-PUBLICATION/attn/blob/TO-BE-SET-ON-PUBLICATION/colab/03_transformer_translation.ipynb)
#
# What you will learn:
# - the encoder-decoder Transformer (`attn.models.Transformer`, Vaswani et al. 2017) trained,
#   character by character, to translate dates into ISO 8601 ("Monday, November 23rd 2026" →
#   "2026-11-23"), with the recipe of the project's `make train` (generated data, no download);
# - greedy decoding with the key/value cache, equal to re-running the whole decoder on its own
#   output; beam search (`attn.decoding.beam_search`) with its n-best list, beam size 1 equal to
#   greedy search;
# - the GNMT length penalty log p(y) / ((5 + |y|) / 6)^α (Wu et al. 2016) and what α does to
#   the ranking of hypotheses;
# - cross-attention maps (`attn.layers.collect_intermediates`, `attn.viz.plot_heads`): which
#   characters of the input each output digit reads;
# - at `full` scale, a real translation task: TED talks Portuguese → English
#   (`ted_hrlr_translate/pt_to_en`, downloaded by TFDS), scored with BLEU for greedy and beam search.
#
# | scale | what runs | time |
# |---|---|---|
# | `ci` | 256 generated dates, 60 training steps, no network | about 45 s of CPU time (measured) |
# | `cpu` | 50,000 generated dates, 1,200 steps (`make train`) | about 2.5 min of CPU time (measured) |
# | `full` | the dates, then TED pt→en: a 3-layer Transformer, 8,000 steps, BLEU | about 20 min on a v5e (estimate) |
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
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx
from IPython.display import Image, display

from attn import data as attn_data
from attn import decoding, viz
from attn.data import BOS_ID, EOS_ID, PAD_ID, shift_right
from attn.layers import collect_intermediates
from attn.models import Transformer
from attn.training.config import default_config, model_config
from attn.training.losses import masked_cross_entropy
from attn.training.metrics import bleu, exact_match
from attn.training.optimizers import make_optimizer

SIZES = {
    "ci": dict(data="tiny", batch=32, steps=60, beams=(1, 4)),
    "cpu": dict(data="default", batch=64, steps=1200, beams=(1, 2, 4, 8)),
    "full": dict(data="default", batch=64, steps=1200, beams=(1, 2, 4, 8)),
}[SCALE]
print(SIZES)


def show(figure):
    """Display a figure made by `attn.viz` (they draw off-screen, without pyplot) as a PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    display(Image(buffer.getvalue()))


# %% [markdown]
# ## 1 · Dates in twenty formats
#
# `attn.data` generates the task: a calendar day between 1950 and 2049 written in one of 20
# formats, to be translated into ISO 8601. The validation days are never seen in training.
# `attn.data.load` prepares the data (a TFDS dataset in `~/tensorflow_datasets`, about 10-20 s
# the first time for the full 52,000 examples) and returns fixed-shape batches: `inputs` [B, S]
# and `targets` [B, T], one id per character, each ending with EOS and padded with 0.

# %%
train_data = attn_data.load(
    "dates", split="train", batch_size=SIZES["batch"], config=SIZES["data"], seed=0
)
tokenizer = train_data.info.tokenizer
validation = next(
    iter(
        attn_data.load(
            "dates",
            split="validation",
            batch_size=1000,
            config=SIZES["data"],
            tokenizer=tokenizer,
            shuffle=False,
            num_epochs=1,
            drop_remainder=False,
        )
    )
)
src, tgt = validation["inputs"][validation["valid"]], validation["targets"][validation["valid"]]
S, T = src.shape[1], tgt.shape[1]
print(
    f"{len(src)} validation dates, source length S = {S}, target length T = {T}, V = {tokenizer.vocab_size}"
)
for row in range(5):
    print(f"{tokenizer.decode(src[row])!r:>36} → {tokenizer.decode(tgt[row])!r}")
assert all(len(tokenizer.decode(t)) == 10 for t in tgt)  # YYYY-MM-DD, then EOS

# %% [markdown]
# ## 2 · Train a small Transformer
#
# The recipe of `make train` (`experiments/configs/dates.py`): the "tiny" variant (2 encoder and
# 2 decoder blocks, width 64, 4 heads, post-LN, sinusoidal positions, shared and tied
# embeddings), AdamW with a linear warmup and a cosine decay, peak learning rate 3·10⁻³,
# gradient clipping at 1, batches of 64 dates. The loss is the cross-entropy of each target
# character given the source and the true earlier characters (teacher forcing).

# %%
recipe = default_config()  # the fields of experiments/configs/dates.py
recipe.model.family, recipe.model.variant = "Transformer", "tiny"
recipe.optimizer.learning_rate = 3e-3
recipe.optimizer.warmup_steps = min(100, SIZES["steps"] // 4)
config = model_config(recipe, train_data.info)
model = Transformer(config, rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(
    model,
    make_optimizer(recipe.optimizer, total_steps=SIZES["steps"], model_dim=config.model_dim),
    wrt=nnx.Param,
)
print(config)
print(f"{sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))):,} parameters")


@nnx.jit(static_argnames="deterministic")
def teacher_forced_logits(model, src, tgt_in, *, deterministic=True):
    """Logits [B, T, V] of the decoder input tgt_in = [BOS, y_1, …] given the source."""
    tgt_in = jnp.asarray(tgt_in)
    tgt_mask = (tgt_in != PAD_ID).at[:, 0].set(True)  # BOS is a real token
    return model(
        src, tgt_in, src_mask=src != PAD_ID, tgt_mask=tgt_mask, deterministic=deterministic
    )


@nnx.jit(static_argnames="label_smoothing")
def train_step(model, optimizer, src, tgt, label_smoothing):
    def loss_fn(model):
        logits = teacher_forced_logits(model, src, shift_right(tgt, BOS_ID), deterministic=False)
        loss, _ = masked_cross_entropy(logits, tgt, tgt != PAD_ID, label_smoothing=label_smoothing)
        return loss

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


def train(model, optimizer, batches, steps, label_smoothing=0.0):
    losses, start = [], time.perf_counter()
    for _ in range(steps):
        batch = next(batches)
        loss = train_step(
            model, optimizer, batch["inputs"], batch["targets"], label_smoothing=label_smoothing
        )
        losses.append(float(loss))
    print(
        f"{steps} steps in {time.perf_counter() - start:.1f} s, loss {losses[0]:.3f} -> {losses[-1]:.3f}"
    )
    return np.asarray(losses)


losses = train(model, optimizer, iter(train_data), SIZES["steps"])
model.eval()  # evaluation mode from here on: no dropout
figure, ax = plt.subplots(figsize=(6, 2.8))
ax.plot(losses)
ax.set(xlabel="step", ylabel="cross-entropy (nats/char)", yscale="log")
plt.show()
assert np.mean(losses[-10:]) < {"ci": 0.5, "cpu": 0.02, "full": 0.02}[SCALE] * np.log(
    tokenizer.vocab_size
)

# %% [markdown]
# ## 3 · Greedy decoding
#
# `decoding.greedy` encodes the source once, then feeds one character per step, the decoder
# reusing the keys and values of the earlier characters (its cache) and the projected encoder
# output. It stops where every row has emitted EOS. Exact match counts a date only when all ten
# characters are right.
#
# Exact check: re-running the whole decoder, teacher forced, on the decoded characters gives the
# same argmax at every position: the cache changes the cost (one new query per step), not the
# result.

# %%
start_tokens = jnp.full((len(src), 1), BOS_ID, jnp.int32)
with jax.default_matmul_precision("highest"):
    greedy = np.asarray(
        decoding.greedy(
            model, start_tokens, source=src, source_mask=src != PAD_ID, max_new_tokens=T
        )
    )
    rerun = np.asarray(jnp.argmax(teacher_forced_logits(model, src, greedy[:, :-1]), axis=-1))
assert np.array_equal(rerun, greedy[:, 1:])  # exact: cached == uncached

matches, total = exact_match(greedy[:, 1:], tgt, eos_id=EOS_ID)
greedy_accuracy = matches / total
print(f"greedy exact match: {greedy_accuracy:.1%} of {total} dates never seen in training")
for row in np.flatnonzero((greedy[:, 1:] != tgt).any(axis=1))[:5]:
    print(
        f"  wrong: {tokenizer.decode(src[row])!r} → {tokenizer.decode(greedy[row, 1:])!r} (true {tokenizer.decode(tgt[row])!r})"
    )
assert greedy_accuracy >= {"ci": 0.0, "cpu": 0.95, "full": 0.95}[SCALE]

# %% [markdown]
# ## 4 · Beam search
#
# Beam search keeps the K most probable prefixes at each step instead of one, and returns the
# K best finished hypotheses (the n-best list) ranked by log p(y | x) / lp(|y|), with
# lp(n) = ((5 + n) / 6)^α. With K = 1 and no EOS it is greedy search, exactly.

# %%
with jax.default_matmul_precision("highest"):
    beam_1 = decoding.beam_search(
        model, start_tokens, source=src, source_mask=src != PAD_ID, beam_size=1, max_new_tokens=T
    )
assert np.array_equal(np.asarray(beam_1.tokens), greedy)  # exact: beam size 1 == greedy

beams = {}
for K in SIZES["beams"]:
    beams[K] = decoding.beam_search(
        model,
        start_tokens,
        source=src,
        source_mask=src != PAD_ID,
        beam_size=K,
        max_new_tokens=T,
        eos_id=EOS_ID,
    )
    matches, _ = exact_match(np.asarray(beams[K].tokens[:, 1:]), tgt, eos_id=EOS_ID)
    print(
        f"beam size {K}: exact match {matches / total:.1%}, mean log p(y|x) {float(beams[K].log_probs[:, 0].mean()):.4f}"
    )
    if K > 1:
        assert matches / total >= greedy_accuracy - {"ci": 1.0, "cpu": 0.01, "full": 0.01}[SCALE]

K = max(SIZES["beams"])
row = int(np.argmin(np.asarray(beams[K].scores[:, 0])))  # the date the model is least sure of
print(f"the n-best list of {tokenizer.decode(src[row])!r} (true {tokenizer.decode(tgt[row])!r}):")
for k in range(K):
    print(
        f"  {k + 1}. {tokenizer.decode(np.asarray(beams[K].sequences[row, k, 1:]))!r:14}"
        f" log p = {float(beams[K].log_probs[row, k]):8.4f}, score = {float(beams[K].scores[row, k]):8.4f}"
    )

# %% [markdown]
# Exact checks of the n-best list: the scores are sorted, each hypothesis's log p(y | x) is the
# sum of the teacher-forced log-probabilities of its characters up to its EOS, and each score
# is that log-probability divided by lp(|y|).

# %%
result, alpha = beams[K], 0.6  # the default length penalty
sequences = np.asarray(result.sequences).reshape(-1, T + 1)  # [B·K, 1 + T]
scores, log_probs = np.asarray(result.scores).ravel(), np.asarray(result.log_probs).ravel()
finite = np.isfinite(scores)  # a row can have fewer than K distinct hypotheses
assert np.all(
    np.diff(np.asarray(result.scores), axis=1)[np.isfinite(np.asarray(result.scores[:, 1:]))] <= 0
)
with jax.default_matmul_precision("highest"):
    logits = teacher_forced_logits(model, np.repeat(src, K, axis=0), sequences[:, :-1])
per_token = np.take_along_axis(
    np.asarray(jax.nn.log_softmax(logits.astype(jnp.float32))), sequences[:, 1:, None], axis=-1
)[..., 0]
new = sequences[:, 1:]
counted = (np.cumsum(new == EOS_ID, axis=1) - (new == EOS_ID)) == 0  # up to the first EOS
lengths = counted.sum(axis=1)
assert np.allclose(
    np.where(counted, per_token, 0).sum(axis=1)[finite], log_probs[finite], atol=1e-4
)
assert np.allclose(
    scores[finite], log_probs[finite] / ((5 + lengths[finite]) / 6) ** alpha, rtol=1e-5, atol=1e-6
)
print("n-best lists: sorted; log p = Σ teacher-forced log-probabilities; score = log p / lp(|y|)")

# %% [markdown]
# ## 5 · The length penalty
#
# Without a penalty (α = 0) beam search prefers short hypotheses: every extra token multiplies
# in a probability below 1. The GNMT penalty divides by lp(|y|), which grows with the length;
# larger α favours longer outputs. Every date in ISO form has the same length, so α barely
# matters here (on TED, at `full` scale, it does). Below: the same n-best list re-ranked by
# hand for several α (the scores of `beam_search` for one α, checked above, make this exact),
# and beam search itself for each α.

# %%
penalties = (0.0, 0.6, 1.0, 2.0)
for alpha in penalties:
    by_alpha = decoding.beam_search(
        model,
        start_tokens,
        source=src,
        source_mask=src != PAD_ID,
        beam_size=K,
        max_new_tokens=T,
        eos_id=EOS_ID,
        length_penalty=alpha,
    )
    matches, _ = exact_match(np.asarray(by_alpha.tokens[:, 1:]), tgt, eos_id=EOS_ID)
    characters = (np.cumsum(np.asarray(by_alpha.tokens[:, 1:]) == EOS_ID, axis=1) == 0).sum(axis=1)
    print(
        f"alpha = {alpha}: exact match {matches / total:.1%}, mean output length {characters.mean():.2f} characters"
    )

# The n-best list of the date above, re-ranked for each alpha from its log-probabilities.
figure, ax = plt.subplots(figsize=(7, 3))
for k in range(K):
    ranked = [
        log_probs.reshape(-1, K)[row, k] / ((5 + lengths.reshape(-1, K)[row, k]) / 6) ** a
        for a in penalties
    ]
    label = tokenizer.decode(np.asarray(result.sequences[row, k, 1:]))
    ax.plot(
        penalties, ranked, marker="o", label=f"{label!r} ({lengths.reshape(-1, K)[row, k]} tokens)"
    )
ax.set(xlabel="length penalty alpha", ylabel="score log p / lp(|y|)")
ax.set_title(f"the n-best list of {tokenizer.decode(src[row])!r}")
ax.legend(fontsize=7)
plt.show()

# %% [markdown]
# ## 6 · Cross-attention
#
# Each decoder block attends from the output characters (queries) to the encoded input
# characters (keys). `collect_intermediates` runs the model on its own greedy output, teacher
# forced, and returns every block's cross-attention weights [B, N, T, S]; `viz.plot_heads` draws
# all heads of all blocks, the padding left blank. Row t is what the step that wrote output
# character t + 1 read.
#
# Exact checks: every row sums to 1 and the padding gets exactly 0. Then a measurement: the
# share of attention that the four year digits put on the year in the input, per head.

# %%
found = nnx.jit(
    lambda model, src, tgt_in: collect_intermediates(
        model, src, tgt_in, src != PAD_ID, names=("attention_weights",)
    )[1]
)(model, src, greedy[:, :-1])
cross = {path: np.asarray(w) for path, w in found.items() if "cross_attention" in path}
example = int(np.argmax((src != PAD_ID).sum(axis=1)))  # the longest input
source_text, output_text = tokenizer.decode(src[example]), tokenizer.decode(greedy[example, 1:])
show(
    viz.plot_heads(
        found,
        batch_index=example,
        select="cross_attention",
        query_tokens=["BOS", *output_text][:T],
        key_tokens=list(source_text) + [""] * (S - len(source_text)),
        mask=(src[example] != PAD_ID)[None, :],
        title=f"cross-attention: {source_text!r} → {output_text!r}",
    )
)

real = (src != PAD_ID)[:, None, None, :]  # [B, 1, 1, S]
year_share = []
for path, weights in cross.items():  # [B, N, T, S]
    assert np.all(weights[~np.broadcast_to(real, weights.shape)] == 0.0), path  # exact
    assert np.allclose(weights.sum(axis=-1), 1.0, atol=1e-5), path
    on_year = np.zeros(weights.shape[:2])  # [B, N]
    for b in range(len(src)):
        start = tokenizer.decode(src[b]).find(tokenizer.decode(tgt[b])[:4])
        on_year[b] = weights[b, :, 0:4, start : start + 4].sum(axis=-1).mean(axis=-1)
    year_share.append(on_year.mean(axis=0))
    print(
        f"{'/'.join(map(str, path[:2]))}: share of the year digits' attention on the year, per head: {np.round(on_year.mean(axis=0), 2)}"
    )
year_share = np.asarray(year_share)  # [layers, heads]
assert year_share.max() >= {"ci": 0.0, "cpu": 0.5, "full": 0.5}[SCALE], year_share

# %% [markdown]
# ## 7 · TED talks, Portuguese → English (`full` scale)
#
# A real translation task: 51,785 sentence pairs from TED talks (`ted_hrlr_translate/pt_to_en`
# of TensorFlow Datasets, downloaded and prepared by `attn.data.prepare`, about 2 min), a shared
# SentencePiece vocabulary of 8,000 pieces trained on the training split, and the recipe of
# `experiments/configs/translate.py`: the "small" Transformer (3 + 3 blocks, width 256, dropout
# 0.1), label smoothing 0.1, Adam with the inverse-square-root warmup of the paper, bfloat16
# compute. The notebook trains 8,000 steps of that 20,000-step recipe and scores the 1,803 test
# sentences with BLEU (sacrebleu), greedy against beam search, with and without the length
# penalty. It runs only at `full` scale, and is skipped with one line where TFDS cannot download.

# %%
TED = "ted_hrlr_translate/pt_to_en"
ted_ready = False
if SCALE == "full":
    try:
        attn_data.prepare(TED)
        ted_ready = True
    except Exception as error:  # no network: skip, saying why
        print(f"TED skipped: {type(error).__name__}: {str(error).splitlines()[0][:160]}")
else:
    print(f"TED skipped: it runs at scale 'full' (here {SCALE!r})")

if ted_ready:
    ted_train = attn_data.load(TED, split="train", batch_size=128, max_length=64, vocab_size=8000)
    ted_tokenizer = ted_train.info.tokenizer
    ted_test = attn_data.load(
        TED,
        split="test",
        batch_size=128,
        max_length=64,
        tokenizer=ted_tokenizer,
        shuffle=False,
        num_epochs=1,
        drop_remainder=False,
    )
    ted_recipe = default_config()  # the fields of experiments/configs/translate.py
    ted_recipe.model.family, ted_recipe.model.variant = "Transformer", "small"
    ted_recipe.optimizer.schedule = "inverse_sqrt"
    ted_recipe.optimizer.learning_rate = 1.0
    ted_recipe.optimizer.warmup_steps = 4000
    ted_recipe.optimizer.grad_clip_norm = 0.0
    ted_recipe.compute_dtype = "bfloat16"
    ted_config = model_config(ted_recipe, ted_train.info)
    ted_model = Transformer(ted_config, rngs=nnx.Rngs(0))
    ted_steps = 8000
    ted_optimizer = nnx.Optimizer(
        ted_model,
        make_optimizer(ted_recipe.optimizer, total_steps=ted_steps, model_dim=ted_config.model_dim),
        wrt=nnx.Param,
    )
    ted_losses = train(ted_model, ted_optimizer, iter(ted_train), ted_steps, label_smoothing=0.1)
    ted_model.eval()

    def translate_test_set(**search):
        """Hypotheses and references (text) of the whole test split: greedy search, or beam
        search when `search` names a beam_size (and a length_penalty)."""
        hypotheses, references = [], []
        for batch in ted_test:
            sources, valid = batch["inputs"], batch["valid"]
            start = jnp.full((len(sources), 1), BOS_ID, jnp.int32)
            options = dict(
                source=sources, source_mask=sources != PAD_ID, max_new_tokens=64, eos_id=EOS_ID
            )
            if search:
                tokens = decoding.beam_search(ted_model, start, **options, **search).tokens
            else:
                tokens = decoding.greedy(ted_model, start, **options)
            hypotheses += ted_tokenizer.decode_batch(np.asarray(tokens[:, 1:])[valid])
            references += ted_tokenizer.decode_batch(batch["targets"][valid])
        return hypotheses, references

    ted_results = {}
    for name, search in {
        "greedy": {},
        "beam 4, alpha = 0.6": dict(beam_size=4, length_penalty=0.6),
        "beam 4, alpha = 0": dict(beam_size=4, length_penalty=0.0),
    }.items():
        hypotheses, references = translate_test_set(**search)
        ted_results[name] = dict(
            bleu=bleu(hypotheses, references),
            length=sum(map(len, hypotheses)) / sum(map(len, references)),
        )
        print(
            f"{name:16}: BLEU {ted_results[name]['bleu']:.1f}, output/reference length {ted_results[name]['length']:.3f}"
        )
    first_sources = ted_tokenizer.decode_batch(next(iter(ted_test))["inputs"][:3])
    for source, hypothesis, reference in zip(first_sources, hypotheses, references, strict=False):
        print(f"pt: {source}\nen: {hypothesis}\nreference: {reference}\n")
    assert ted_results["greedy"]["bleu"] >= 10.0, ted_results
    assert ted_results["beam 4, alpha = 0.6"]["bleu"] >= ted_results["greedy"]["bleu"] - 1.0
    assert (
        ted_results["beam 4, alpha = 0"]["length"] <= ted_results["beam 4, alpha = 0.6"]["length"]
    )

# %% [markdown]
# ## The same runs from the command line
#
#     make train   # = python experiments/train.py --config experiments/configs/dates.py --workdir runs/dates
#     python experiments/train.py --config experiments/configs/translate.py --workdir runs/ted
#
# The command-line runs add checkpoints (resumable), TensorBoard logs and attention-map PNGs
# (see the project's README, "Training").

# %%
print(f"notebook 03 passed its checks at scale {SCALE!r}")
