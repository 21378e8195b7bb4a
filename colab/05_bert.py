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
# # 05 · BERT: masked-language pre-training, fill-mask, the heads, and a classifier
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/TO-BE-SET-ON-PUBLICATION/attn/blob/TO-BE-SET-ON-PUBLICATION/colab/05_bert.ipynb)
#
# What you will learn:
# - BERT's masking (Devlin et al. 2019, §3.1): 15 % of the tokens are chosen, of those 80 %
#   become [MASK], 10 % a random token and 10 % stay, and only the chosen positions enter the
#   loss (`attn.data.mask_tokens`, `attn.training.MLMTask`);
# - a small `attn.models.Bert` pre-trained on characters of Python's own documentation
#   (`attn.data.corpora.pydoc_documents`, shipped with attn: no download), then asked to fill in
#   masked characters, with its top-5 guesses;
# - padding: with `attention_mask`, no token attends to padded positions, so what stands there,
#   and how much of it there is, does not change the real tokens' hidden states;
# - every head of every layer as a grid of attention maps (`attn.layers.collect_intermediates`,
#   `attn.viz.plot_heads`);
# - fine-tuning the same encoder, through its pooled first token, on a generated task: is a
#   window of text real, or are the letters inside its words shuffled?
#   (`attn.training.ClassificationTask`);
# - at `full` scale, where the Hugging Face Hub is reachable: BERT-base's weights in the same
#   `Bert` class (`attn.pretrained.load_bert`) filling in masked words.
#
# | scale | what runs | time |
# |---|---|---|
# | `ci` | a 2-layer BERT (width 64), 120 pre-training and 40 fine-tuning steps | about 55 s of CPU time (measured) |
# | `cpu` | a 2-layer BERT (width 128), 1,200 pre-training and 300 fine-tuning steps | about 9 min of CPU time (measured) |
# | `full` | a 4-layer BERT (width 256), 3,000 + 600 steps; BERT-base from the Hub when reachable | about 5 min on a v5e (estimate) |
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
import math
import re
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx
from IPython.display import Image, display

from attn import viz
from attn.data import BOS_ID, MASK_ID, PAD_ID, CharTokenizer, mask_tokens
from attn.data.corpora import pydoc_documents
from attn.layers import collect_intermediates
from attn.models import Bert, BertConfig
from attn.training.losses import masked_cross_entropy
from attn.training.tasks import ClassificationTask, MLMTask

SIZES = {
    "ci": dict(layers=2, width=64, heads=4, length=32, batch=64, steps=120, tune=40, evals=8),
    "cpu": dict(layers=2, width=128, heads=4, length=64, batch=64, steps=1200, tune=300, evals=32),
    "full": dict(
        layers=4, width=256, heads=8, length=128, batch=128, steps=3000, tune=600, evals=64
    ),
}[SCALE]
print(SIZES)


def show(figure):
    """Display a figure made by `attn.viz` (they draw off-screen, without pyplot) as a PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    display(Image(buffer.getvalue()))


# %% [markdown]
# ## 1 · Characters of Python's documentation, and BERT's masking
#
# One token per character (`CharTokenizer`); ids 0-4 are the special tokens PAD, BOS, EOS, UNK
# and MASK. `mask_tokens` chooses each real token with probability 0.15 and returns the
# corrupted `inputs`, the original `targets` and the `weights` (1 where a token was chosen).
# Below, ▒ is [MASK]; the chosen positions are underlined by ^.

# %%
train_text = "\n\n".join(pydoc_documents("train"))
valid_text = "\n\n".join(pydoc_documents("validation"))
tokenizer = CharTokenizer.from_texts([train_text])
V = tokenizer.vocab_size
train_ids = np.array(tokenizer.encode(train_text), np.int32)
valid_ids = np.array(tokenizer.encode(valid_text), np.int32)
L = SIZES["length"]
print(f"{len(train_text):,} training characters, {len(valid_text):,} validation, V = {V}")


def shown(ids):
    """The characters of ids, with ▒ for [MASK] and · for the other special tokens."""
    return "".join(
        "▒" if i == MASK_ID else "·" if i < 5 else tokenizer.decode([int(i)]) for i in ids
    ).replace("\n", "⏎")


rng = np.random.default_rng(0)
example = jnp.asarray(valid_ids[None, :72])
masked = mask_tokens(example, jax.random.key(1), vocab_size=V)
print(shown(example[0]))
print(shown(masked["inputs"][0]))
print("".join("^" if w else " " for w in masked["weights"][0]))

# %% [markdown]
# The masking rule, counted on 200,000 characters. Exact: the targets are the original tokens,
# unchosen tokens are left alone, special tokens are never chosen. Within sampling noise: 15 %
# chosen, and of those 80 / 10 / 10 %.

# %%
big = jnp.asarray(train_ids[: 200 * 1000].reshape(200, 1000))
m = mask_tokens(big, jax.random.key(2), vocab_size=V)
inputs, targets, chosen = (np.asarray(m[k]) for k in ("inputs", "targets", "weights"))
chosen = chosen > 0
assert np.array_equal(targets, np.asarray(big))  # exact
assert np.array_equal(inputs[~chosen], targets[~chosen])  # exact: unchosen tokens unchanged
specials = np.asarray(
    mask_tokens(jnp.full((4, 50), BOS_ID), jax.random.key(3), vocab_size=V)["weights"]
)
assert not specials.any()  # exact: special tokens are never chosen
rates = {
    "chosen": chosen.mean(),
    "[MASK] of chosen": (inputs[chosen] == MASK_ID).mean(),
    "random of chosen": ((inputs[chosen] != MASK_ID) & (inputs[chosen] != targets[chosen])).mean(),
    "kept of chosen": (inputs[chosen] == targets[chosen]).mean(),
}
print({name: round(float(rate), 4) for name, rate in rates.items()})
for (name, rate), expected in zip(rates.items(), (0.15, 0.8, 0.1, 0.1), strict=True):
    assert abs(rate - expected) < 0.01 + 0.05 * expected, name
# (a random replacement can hit the original character: about 1/V of the 10 % count as kept)

# %% [markdown]
# ## 2 · Only the chosen positions are in the loss
#
# The loss is Σ_t w_t ℓ_t / Σ_t w_t. Exact, whatever the model: changing the labels of the
# unchosen positions leaves the loss unchanged to the bit, and the gradient reaches the logits
# of the chosen positions only.

# %%
config = BertConfig(
    vocab_size=V,
    num_layers=SIZES["layers"],
    num_heads=SIZES["heads"],
    model_dim=SIZES["width"],
    mlp_dim=4 * SIZES["width"],
    max_length=L,
    num_classes=2,  # the classifier of section 6 (the pooled first token); unused before
)
model = Bert(config, rngs=nnx.Rngs(0))
print(f"{sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))):,} parameters")

logits = model(m["inputs"][:8, :L])
labels, weights = m["targets"][:8, :L], m["weights"][:8, :L]
other_labels = jnp.where(weights > 0, labels, (labels + 7) % V)
loss = masked_cross_entropy(logits, labels, weights)[0]
assert masked_cross_entropy(logits, other_labels, weights)[0] == loss  # exact
gradient = jax.grad(lambda z: masked_cross_entropy(z, labels, weights)[0])(logits)
assert np.all(np.asarray(gradient)[np.asarray(weights) == 0] == 0.0)  # exact
assert np.all(np.abs(np.asarray(gradient)[np.asarray(weights) > 0]).sum(-1) > 0)
print(f"untrained loss {float(loss):.3f} nats (log V = {math.log(V):.3f})")

# %% [markdown]
# ## 3 · Pre-training: masked characters
#
# `MLMTask.train_loss` masks a batch with the step's key, runs the model and returns the loss
# over the chosen positions (and its accuracy). Adam with a short warm-up.

# %%
mlm = MLMTask(family="Bert", vocab_size=V)
schedule = optax.warmup_cosine_decay_schedule(0.0, 2e-3, 50, SIZES["steps"])
optimizer = nnx.Optimizer(model, optax.adam(schedule), wrt=nnx.Param)


@nnx.jit
def mlm_step(model, optimizer, ids, key):
    def loss_fn(model):
        return mlm.train_loss(model, {"inputs": ids}, key)

    (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    return loss


def windows(ids, count, rng):
    starts = rng.integers(0, len(ids) - L, count)
    return jnp.asarray(ids[starts[:, None] + np.arange(L)])


losses, start = [], time.perf_counter()
for step in range(SIZES["steps"]):
    batch = windows(train_ids, SIZES["batch"], rng)
    losses.append(float(mlm_step(model, optimizer, batch, jax.random.key(step))))
print(f"loss {losses[0]:.3f} -> {np.mean(losses[-10:]):.3f} in {time.perf_counter() - start:.1f} s")


@nnx.jit
def mlm_eval(model, ids, key):
    return mlm.eval_metrics(model, {"inputs": ids}, key)["accuracy"]


eval_rng = np.random.default_rng(1)
correct = count = 0.0
for i in range(SIZES["evals"]):
    hits, n = mlm_eval(model, windows(valid_ids, 32, eval_rng), jax.random.key(10_000 + i))
    correct, count = correct + float(hits), count + float(n)
accuracy = correct / count
unigram = np.bincount(train_ids, minlength=V).max() / len(train_ids)  # always guess " "
print(f"masked-character accuracy on validation: {accuracy:.3f} over {int(count):,} characters")
print(
    f"(always guessing the most frequent character, {shown([np.argmax(np.bincount(train_ids))])!r}: {unigram:.3f})"
)
figure, ax = plt.subplots(figsize=(6, 2.8))
ax.plot(losses)
ax.axhline(math.log(V), color="grey", linestyle=":", label="log V (uniform)")
ax.set(xlabel="step", ylabel="masked-LM loss (nats)")
ax.legend()
plt.show()
# At `ci` the model has only had time to learn how frequent each character is (the loss of
# that is about 2.9 nats); context-aware guessing comes with the longer runs: at `cpu`, 63 % of
# the masked characters (measured).
assert np.mean(losses[-10:]) < 0.7 * math.log(V), losses[-10:]
assert accuracy >= {"ci": 0.5, "cpu": 2.5, "full": 2.5}[SCALE] * unigram, (accuracy, unigram)

# %% [markdown]
# ## 4 · Fill-mask
#
# Mask letters of a validation sentence and read the model's five most probable characters at
# each [MASK]: p = softmax(logits) over the vocabulary, which sums to 1 at every position.

# %%
sentence = valid_text[valid_text.index("Assert statements are") :][:L]  # the text is fixed
ids = np.array(tokenizer.encode(sentence), np.int32)
letters = [t for t, c in enumerate(sentence) if c.isalpha()]
holes = sorted(
    np.random.default_rng(4).choice(letters, size=max(4, len(letters) // 6), replace=False)
)
corrupted = ids.copy()
corrupted[holes] = MASK_ID
with jax.default_matmul_precision("highest"):
    probabilities = np.asarray(jax.nn.softmax(model(jnp.asarray(corrupted)[None])[0], axis=-1))
assert np.allclose(probabilities.sum(-1), 1.0, atol=1e-5)
print(shown(corrupted))
print(sentence.replace("\n", "⏎"))
top5 = np.argsort(-probabilities[holes], axis=-1)[:, :5]
for t, best in zip(holes, top5, strict=True):
    guesses = "  ".join(f"{shown([i])!r} {probabilities[t, i]:.2f}" for i in best)
    print(f"position {t:3}: true {sentence[t]!r}   top-5 {guesses}")
top1 = np.mean([best[0] == ids[t] for t, best in zip(holes, top5, strict=True)])
in_top5 = np.mean([ids[t] in best for t, best in zip(holes, top5, strict=True)])
print(f"top-1 {top1:.2f}, top-5 {in_top5:.2f} on {len(holes)} masked letters")
assert in_top5 >= {"ci": 0.0, "cpu": 0.5, "full": 0.6}[SCALE]

# %% [markdown]
# ## 5 · Padding changes nothing, and every head at a glance
#
# A batch pads short sequences to a common length; `attention_mask` (1 = real token) keeps every
# query from attending to the padded keys: their attention weight is exactly 0. Exact: whatever
# tokens stand in the padding, the real tokens' hidden states are the same to the bit. Up to
# float rounding: with no padding at all (a shorter array), they are the same too.

# %%
T0, extra = L // 2, L - L // 2
real = jnp.asarray(ids[:T0])[None]
mask = jnp.asarray([[1] * T0 + [0] * extra])
padded = jnp.concatenate([real, jnp.full((1, extra), PAD_ID)], axis=1)
garbage = jnp.concatenate([real, jnp.asarray(rng.integers(5, V, (1, extra)), jnp.int32)], axis=1)
with jax.default_matmul_precision("highest"):
    alone = model.encode(real)
    with_pad = model.encode(padded, attention_mask=mask)
    with_garbage = model.encode(garbage, attention_mask=mask)
assert np.array_equal(np.asarray(with_pad[:, :T0]), np.asarray(with_garbage[:, :T0]))  # exact
difference = float(jnp.max(jnp.abs(with_pad[:, :T0] - alone)))
print(f"max |Δ hidden| with {extra} padded positions against none: {difference:.1e}")
assert difference < 1e-4

# %% [markdown]
# The attention weights of every head, gathered by `collect_intermediates` (each attention layer
# sows its weights [B, N, T, S] during one call) and drawn by `viz.plot_heads`: layer l on row l,
# head n on column n, queries down and keys across. The padded keys on the right are blank.

# %%
_, found = collect_intermediates(
    model.encode, padded, attention_mask=mask, names=("attention_weights",)
)
for path, weights in found.items():
    weights = np.asarray(weights)
    assert np.all(weights[..., T0:] == 0.0), path  # exact: no attention to padding
    assert np.allclose(weights.sum(-1), 1.0, atol=1e-5), path
characters = [shown([i]) for i in np.asarray(padded[0])]
show(
    viz.plot_heads(
        found,
        query_tokens=characters,
        key_tokens=characters,
        mask=np.asarray(mask[0], bool)[None, :],
        title="masked-LM BERT on characters",
    )
)

# %% [markdown]
# Heads that look one character to the left or to the right, heads that spread over the word,
# heads that fix on spaces: with masked characters to recover, the neighbours on both sides are
# what matters most (BERT's attention is bidirectional; compare the causal maps of notebook 04).
#
# ## 6 · Fine-tuning: real text or shuffled words?
#
# A generated task. Each example is a window of pydoc text of random length (BOS + text + EOS,
# padded), and in half of them the letters inside every word are shuffled: "attention" may
# become "teintonat". Label 1 is real text. The characters are the same; only their order
# tells, so the classifier must look at neighbours, which is what pre-training taught.
# `ClassificationTask` reads the pooled first token (BOS plays BERT's [CLS]):
# logits = W_c tanh(W_p h_L[BOS]) — the head that section 2 built and nobody trained so far.


# %%
def shuffle_words(text, rng):
    return re.sub(r"[A-Za-z]+", lambda word: "".join(rng.permutation(list(word.group()))), text)


def real_or_shuffled(source_text, count, rng):
    """ids int32 [count, L] (BOS + text + EOS, padded) and labels int32 [count] (1 = real)."""
    ids = np.full((count, L), PAD_ID, np.int32)
    labels = rng.integers(0, 2, count).astype(np.int32)
    for row in range(count):
        length = int(rng.integers(L // 2, L - 1))
        start = int(rng.integers(0, len(source_text) - length))
        text = source_text[start : start + length]
        if not labels[row]:
            text = shuffle_words(text, rng)
        ids[row, : length + 2] = tokenizer.encode(text, add_bos=True, add_eos=True)
    return ids, labels


batch_ids, batch_labels = real_or_shuffled(train_text, 4, np.random.default_rng(5))
for row, label in zip(batch_ids, batch_labels, strict=True):
    print(f"{['shuffled', 'real'][label]:>8}: {shown(row)}")

classify = ClassificationTask(family="Bert")
optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)  # a fresh one for the new task


@nnx.jit
def classify_step(model, optimizer, ids, labels):
    def loss_fn(model):
        return classify.train_loss(model, {"inputs": ids, "label": labels}, jax.random.key(0))

    (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def class_logits(model, ids):
    return classify.logits(model, (ids,))


tune_losses = []
for _ in range(SIZES["tune"]):
    batch_ids, batch_labels = real_or_shuffled(train_text, SIZES["batch"], rng)
    tune_losses.append(
        float(classify_step(model, optimizer, jnp.asarray(batch_ids), jnp.asarray(batch_labels)))
    )
test_ids, test_labels = real_or_shuffled(valid_text, 512, np.random.default_rng(6))
predicted = np.argmax(np.asarray(class_logits(model, jnp.asarray(test_ids))), axis=-1)
tune_accuracy = float(np.mean(predicted == test_labels))
print(
    f"loss {tune_losses[0]:.3f} -> {np.mean(tune_losses[-10:]):.3f}; accuracy on 512 "
    f"validation windows {tune_accuracy:.3f} (chance 0.5)"
)
# (`ci` is too short to learn the task: its check is the exact one below)
assert tune_accuracy >= {"ci": 0.0, "cpu": 0.85, "full": 0.9}[SCALE], tune_accuracy

# Exact again: whatever stands in the padded positions, the class logits are the same to the bit.
real_mask = jnp.asarray(test_ids != PAD_ID)
noise = np.where(test_ids == PAD_ID, rng.integers(5, V, test_ids.shape), test_ids)
for_noise = model.classify(model.encode(jnp.asarray(noise, jnp.int32), attention_mask=real_mask))
for_pad = model.classify(model.encode(jnp.asarray(test_ids), attention_mask=real_mask))
assert np.array_equal(np.asarray(for_noise), np.asarray(for_pad))

# %% [markdown]
# ## 7 · BERT-base (`full` scale, where the Hugging Face Hub is reachable)
#
# `attn.pretrained.load_bert` puts the weights of a Hugging Face BERT checkpoint into the same
# `Bert` class (its outputs equal the Hugging Face model's; the project's tests check this on a
# small checkpoint). `bert-base-uncased` is about 440 MB to download, so it runs only at `full`
# scale, and is skipped with one line when the Hub or its client is not available.

# %%
bert_base = None
if SCALE == "full":
    try:
        import json

        from huggingface_hub import hf_hub_download
        from transformers import AutoTokenizer

        from attn.pretrained import load_bert

        with open(hf_hub_download("bert-base-uncased", "config.json")) as f:
            base_config = json.load(f)
        bert_base = load_bert(
            hf_hub_download("bert-base-uncased", "model.safetensors"), base_config
        )
        wordpiece = AutoTokenizer.from_pretrained("bert-base-uncased")
    except Exception as error:  # no network, no Hub client: skip, saying why
        print(f"BERT-base skipped: {type(error).__name__}: {str(error).splitlines()[0][:120]}")
else:
    print(f"BERT-base skipped: it runs at scale 'full' (here {SCALE!r})")
if bert_base is not None:
    sentences = [
        "The capital of France is [MASK].",
        "Attention is all you [MASK].",
        "The [MASK] sat on the mat.",
    ]
    encoded = wordpiece(sentences, padding=True, return_tensors="np")
    with jax.default_matmul_precision("highest"):
        word_logits = bert_base(
            encoded["input_ids"], encoded["token_type_ids"], encoded["attention_mask"]
        )
    guesses = []
    for row, text in enumerate(sentences):
        t = int(np.flatnonzero(encoded["input_ids"][row] == wordpiece.mask_token_id)[0])
        p = np.asarray(jax.nn.softmax(word_logits[row, t]))
        best = np.argsort(-p)[:5]
        guesses.append(wordpiece.convert_ids_to_tokens(best.tolist()))
        print(text, " ".join(f"{w} {p[i]:.2f}" for w, i in zip(guesses[-1], best, strict=True)))
        assert abs(p.sum() - 1.0) < 1e-4
    assert "paris" in guesses[0], guesses[0]

# %%
print(f"notebook 05 passed its checks at scale {SCALE!r}")
