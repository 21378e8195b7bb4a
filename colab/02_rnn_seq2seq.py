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
# # 02 · RNN encoder-decoders: the bottleneck, Bahdanau and Luong attention
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/TO-BE-SET-ON-PUBLICATION/attn/blob/TO-BE-SET-ON-PUBLICATION/colab/02_rnn_seq2seq.ipynb)
#
# What you will learn:
# - three GRU/LSTM encoder-decoders of `attn.models.Seq2SeqRNN`: the bottleneck model, whose
#   decoder sees the source only through the encoder's final state (Sutskever et al. 2014; Cho et
#   al. 2014), and its two attention fixes (Bahdanau et al. 2015; Luong et al. 2015);
# - why the bottleneck fails as the source grows: exact match against source length on a copy
#   task, where the attention models stay flat;
# - the reversed source of Sutskever et al.: what it buys the bottleneck, and that the library's
#   `reverse_source=True` is exactly the model run on the reversed sequence;
# - teacher forcing against free running: errors that compound once the decoder reads its own
#   predictions, and greedy decoding equal to the teacher-forced pass over its own output;
# - alignment maps (`attn.layers.collect_intermediates`, `attn.viz.plot_alignment`): rows that
#   sum to 1, exactly 0 on padding, and the diagonal of a copy.
#
# | scale | what runs | time |
# |---|---|---|
# | `ci` | sources of 1-8 letters, 4 small models, 100 training steps each | about 55 s of CPU time (measured) |
# | `cpu` | sources of 1-20 letters, 4 models of width 64, 1,500 steps each | about 5 min of CPU time (measured) |
# | `full` | sources of 1-30 letters, 4 models of width 128, 4,000 steps each | about 8 min on a v5e (estimate) |
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
import dataclasses
import io
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx
from IPython.display import Image, display

from attn import decoding, viz
from attn.layers import collect_intermediates
from attn.models import Seq2SeqRNN, Seq2SeqRNNConfig

SIZES = {
    "ci": dict(longest=8, hidden=32, batch=32, steps=100, per_length=16),
    "cpu": dict(longest=20, hidden=64, batch=64, steps=1500, per_length=64),
    "full": dict(longest=30, hidden=128, batch=128, steps=4000, per_length=128),
}[SCALE]
print(SIZES)


def show(figure):
    """Display a figure made by `attn.viz` (they draw off-screen, without pyplot) as a PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    display(Image(buffer.getvalue()))


# %% [markdown]
# ## 1 · The copy task
#
# The source is 1 to S random lowercase letters, the target the same letters followed by an
# end-of-sequence token (the `copy` task of `attn.data`, generated here). Copying is trivial to
# state and hard for a bottleneck: every letter must pass through one fixed-size vector. Ids:
# 0 is padding, 1 the decoder's start token (BOS), 2 end of sequence (EOS), 3… the letters.
# Sources are right-padded to S, targets to S + 1.

# %%
PAD, BOS, EOS = 0, 1, 2
LETTERS = "abcdefghijklmnopqrstuvwxyz"
V = 3 + len(LETTERS)
S = SIZES["longest"]


def copy_batch(rng, lengths):
    """Sources int32 [B, S] and targets int32 [B, S + 1] (the source, EOS, padding)."""
    src = np.zeros((len(lengths), S), np.int32)
    tgt = np.zeros((len(lengths), S + 1), np.int32)
    for row, n in enumerate(lengths):
        src[row, :n] = tgt[row, :n] = rng.integers(3, V, n)
        tgt[row, n] = EOS
    return src, tgt


def decoder_input(tgt):
    """BOS followed by the target shifted right: position t reads token t - 1, predicts t."""
    return np.concatenate([np.full((len(tgt), 1), BOS, np.int32), tgt[:, :-1]], axis=1)


def reverse_sources(src):
    """The real letters of each row in reverse order, the padding left in place."""
    out = src.copy()
    for row in out:
        n = int((row != PAD).sum())
        row[:n] = row[:n][::-1]
    return out


def letters(ids):
    return "".join(LETTERS[i - 3] for i in ids if i >= 3)


rng = np.random.default_rng(0)
src, tgt = copy_batch(rng, [3, S // 2, S])
for s, t, y in zip(src, decoder_input(tgt), tgt, strict=True):
    print(f"source {s}  decoder reads {t}  predicts {y}  ({letters(s)!r})")
assert np.array_equal(reverse_sources(reverse_sources(src)), src)
assert letters(reverse_sources(src)[0]) == letters(src[0])[::-1]

# %% [markdown]
# ## 2 · Three encoder-decoders
#
# All three encode the source with an RNN. They differ in what the decoder sees of it:
#
# | model | decoder step t | source seen through |
# |---|---|---|
# | bottleneck (`attention="none"`) | s_t = LSTM([y_{t-1}; c], s_{t-1}) | c, the final encoder state only |
# | Bahdanau (`"bahdanau"`) | c_t = Σ_j α_tj h_j, α_t = softmax_j(vᵀ tanh(W s_{t-1} + U h_j)); s_t = GRU([y_{t-1}; c_t], s_{t-1}) | every annotation h_j (bidirectional GRU), queried by the previous state |
# | Luong (`"luong"`) | s_t = LSTM([y_{t-1}; h̃_{t-1}], s_{t-1}); α_t = softmax_j(s_tᵀ W h_j); h̃_t = tanh(W_c [c_t; s_t]) | every h_j, queried by the current state (general score, input feeding) |
#
# A fourth model is the bottleneck trained on reversed sources (section 5).

# %%
width = dict(vocab_size=V, embed_dim=32, hidden_dim=SIZES["hidden"])
CONFIGS = {
    "bottleneck": Seq2SeqRNNConfig(cell="lstm", attention="none", **width),
    "Bahdanau": Seq2SeqRNNConfig(cell="gru", bidirectional=True, attention="bahdanau", **width),
    "Luong": Seq2SeqRNNConfig(cell="lstm", attention="luong", score="general", **width),
}
models = {name: Seq2SeqRNN(config, rngs=nnx.Rngs(0)) for name, config in CONFIGS.items()}
for name, model in models.items():
    parameters = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    print(f"{name:>10}: {parameters:,} parameters")

# %% [markdown]
# ## 3 · Training with teacher forcing
#
# Teacher forcing: step t of the decoder reads the true token y_{t-1}, whatever it predicted
# before, and the loss is the cross-entropy of every target token (EOS included, padding
# excluded). Adam with gradient clipping; the same batches for every model.


# %%
@nnx.jit
def train_step(model, optimizer, src, tgt):
    def loss_fn(model):
        logits = model(src, decoder_input_jnp(tgt), src != PAD, deterministic=False)
        per_token = optax.softmax_cross_entropy_with_integer_labels(logits, tgt)
        weights = (tgt != PAD).astype(jnp.float32)
        return (per_token * weights).sum() / weights.sum()

    loss, grads = nnx.value_and_grad(loss_fn)(model)
    optimizer.update(model, grads)
    return loss


def decoder_input_jnp(tgt):
    return jnp.concatenate([jnp.full((tgt.shape[0], 1), BOS, tgt.dtype), tgt[:, :-1]], axis=1)


def train(model, *, reverse=False):
    """SIZES["steps"] steps on fresh batches of lengths 1..S (reverse: the sources reversed)."""
    optimizer = nnx.Optimizer(
        model, optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-3)), wrt=nnx.Param
    )
    rng = np.random.default_rng(1)
    losses = []
    for _ in range(SIZES["steps"]):
        src, tgt = copy_batch(rng, rng.integers(1, S + 1, SIZES["batch"]))
        if reverse:
            src = reverse_sources(src)
        losses.append(float(train_step(model, optimizer, jnp.asarray(src), jnp.asarray(tgt))))
    return np.asarray(losses)


# A fourth model: the bottleneck, from the same initial parameters, trained on reversed sources.
models["bottleneck, reversed"] = nnx.clone(models["bottleneck"])
losses = {}
for name, model in models.items():
    start = time.perf_counter()
    losses[name] = train(model, reverse="reversed" in name)
    print(
        f"{name:>10}: loss {losses[name][0]:.3f} -> {losses[name][-1]:.3f} in {time.perf_counter() - start:.1f} s"
    )

figure, ax = plt.subplots(figsize=(7, 3))
for name, curve in losses.items():
    ax.plot(np.convolve(curve, np.ones(10) / 10, mode="valid"), label=name)
ax.axhline(np.log(V), color="grey", linestyle=":", label="log V (uniform)")
ax.set(xlabel="step", ylabel="cross-entropy (nats/token)", yscale="log")
ax.legend()
plt.show()
for model in models.values():
    model.eval()  # evaluation mode from here on: teacher forced, no dropout
for name, curve in losses.items():
    assert np.mean(curve[-10:]) < {"ci": 0.9, "cpu": 0.7, "full": 0.7}[SCALE] * np.log(V), name

# %% [markdown]
# ## 4 · Exact match against source length
#
# Greedy decoding (`attn.decoding.greedy`, one jitted loop over the recurrent state) until EOS,
# on fresh sources of every length 1..S; a sequence counts only when every letter and the EOS
# are right. The bottleneck must squeeze a source of any length into one vector of fixed size:
# its accuracy falls with the length. With attention, the decoder looks up the letter it needs,
# and the length hardly matters.

# %%
test_lengths = np.repeat(np.arange(1, S + 1), SIZES["per_length"])
test_src, test_tgt = copy_batch(np.random.default_rng(2), test_lengths)
test_mask = test_src != PAD
start_tokens = jnp.full((len(test_src), 1), BOS, jnp.int32)


def greedy(model, src):
    """Greedy decoding until EOS: the new tokens int32 [B, S + 1], padding after EOS."""
    tokens = decoding.greedy(
        model, start_tokens, source=src, source_mask=src != PAD, max_new_tokens=S + 1, eos_id=EOS
    )
    return np.asarray(tokens[:, 1:])


decoded = {
    name: greedy(model, reverse_sources(test_src) if "reversed" in name else test_src)
    for name, model in models.items()
}
by_length = {
    name: (tokens == test_tgt).all(axis=1).reshape(S, -1).mean(axis=1)
    for name, tokens in decoded.items()
}
figure, ax = plt.subplots(figsize=(7, 3.5))
for name, accuracy in by_length.items():
    ax.plot(np.arange(1, S + 1), accuracy, marker="o", label=name)
ax.set(xlabel="source length", ylabel="exact match (greedy)", ylim=(-0.03, 1.03))
ax.legend()
plt.show()
for name, accuracy in by_length.items():
    print(
        f"{name:>20}: {accuracy.mean():.3f} overall, {accuracy[-3:].mean():.3f} on the 3 longest lengths"
    )

# Per-scale tolerances: attention is near-perfect at every length; the bottleneck falls behind on
# long sources.
long = slice(S - 3, S)
attention_floor = {"ci": 0.0, "cpu": 0.8, "full": 0.9}[SCALE]
for name in ("Bahdanau", "Luong"):
    assert by_length[name][long].mean() >= attention_floor, (name, by_length[name])
if SCALE != "ci":
    assert by_length["bottleneck"][long].mean() < by_length["Luong"][long].mean() - 0.2
    assert by_length["bottleneck"][:3].mean() > by_length["bottleneck"][long].mean()

# %% [markdown]
# ## 5 · The reversed source
#
# Sutskever et al. (2014) fed the source backwards: "a, b, c → α, β, γ" became "c, b, a → α, β,
# γ". The average distance between a source letter and its copy is unchanged, but the first
# target letters are now the last ones the encoder read, a few steps before the decoder needs
# them: the start of the copy is easy, and a good start makes the rest easier. Below, where the
# errors are: greedy token accuracy at each target position, on the longest sources.
#
# `Seq2SeqRNNConfig(reverse_source=True)` does the reversal inside the model (the real tokens of
# each row reversed, the padding left in place) and maps what it shows back to the original
# positions. With the parameters of the model trained on reversed sources, it must give exactly
# the same logits and tokens on the original sources.

# %%
longest = test_lengths == S
figure, ax = plt.subplots(figsize=(7, 3))
for name in ("bottleneck", "bottleneck, reversed", "Luong"):
    correct = decoded[name][longest] == test_tgt[longest]
    ax.plot(np.arange(1, S + 2), correct.mean(axis=0), marker="o", label=name)
ax.set(xlabel="target position (S + 1 = EOS)", ylabel="token accuracy (greedy)", ylim=(-0.03, 1.03))
ax.set_title(f"sources of {S} letters")
ax.legend()
plt.show()


def with_config(model, **changes):
    """The same parameters under a changed config: the model is built abstractly (no
    initialisation), then takes the trained model's state."""
    config = dataclasses.replace(model.config, **changes)
    twin = nnx.eval_shape(lambda: Seq2SeqRNN(config, rngs=nnx.Rngs(0)))
    nnx.update(twin, nnx.state(model))
    return twin


@nnx.jit
def forward(model, src, tgt_in):
    """Teacher-forced logits [B, T, V] and the alignment [B, T, S] (attention models only)."""
    logits, found = collect_intermediates(model, src, tgt_in, src != PAD, names=("alignment",))
    return logits, found


test_in = decoder_input(test_tgt)
inside = with_config(models["bottleneck, reversed"], reverse_source=True)
outside = models["bottleneck, reversed"]
assert np.array_equal(
    np.asarray(forward(inside, test_src, test_in)[0]),
    np.asarray(forward(outside, reverse_sources(test_src), test_in)[0]),
)  # exact: the same logits, so the same tokens

# The alignment of a reversed-source model is reported over the original positions: source
# position j is position n - 1 - j of what the encoder read.
inside_logits, inside_found = forward(
    with_config(models["Luong"], reverse_source=True), test_src, test_in
)
outside_logits, outside_found = forward(models["Luong"], reverse_sources(test_src), test_in)
assert np.array_equal(np.asarray(inside_logits), np.asarray(outside_logits))  # exact
inside_alignment = np.asarray(inside_found[("alignment",)])
outside_alignment = np.asarray(outside_found[("alignment",)])
for row, n in enumerate(test_lengths):
    read_position = np.r_[np.arange(n)[::-1], np.arange(n, S)]  # of original position j
    assert np.array_equal(inside_alignment[row], outside_alignment[row][:, read_position])
print("reverse_source=True equals the model on reversed sources: logits and alignments, exactly")

# %% [markdown]
# ## 6 · Teacher forcing and free running
#
# Training was teacher forced: step t read the true y_{t-1}. Decoding runs free: step t reads
# the model's own prediction, so one wrong letter changes everything the decoder reads after it
# (exposure bias; Bengio et al. 2015). Below, for the bottleneck on the longest sources, token
# accuracy with the true prefix against accuracy on its own prefix.
#
# Three exact checks, for every model and every test source:
# - greedy decoding is the teacher-forced pass over its own output: feed back the decoded tokens
#   and the argmax at every step (up to EOS) is the decoded token again;
# - so where greedy decoding is right, the teacher-forced argmax on the true target is that target;
# - the training pass with `teacher_forcing_ratio=0` (every step reads its own previous argmax)
#   predicts exactly the tokens of greedy decoding.


# %%
def teacher_forced_argmax(model, src, tgt_in):
    return np.asarray(jnp.argmax(forward(model, src, tgt_in)[0], axis=-1))


def up_to_eos(tokens):
    """True at every position up to and including each row's first EOS (all if none)."""
    seen = np.cumsum(tokens == EOS, axis=1)
    return (seen == 0) | ((seen == 1) & (tokens == EOS))


teacher = teacher_forced_argmax(models["bottleneck"], test_src, test_in)
figure, ax = plt.subplots(figsize=(7, 3))
for label, predicted in (
    ("teacher forced", teacher),
    ("free running (greedy)", decoded["bottleneck"]),
):
    ax.plot(
        np.arange(1, S + 2),
        (predicted[longest] == test_tgt[longest]).mean(axis=0),
        marker="o",
        label=label,
    )
ax.set(xlabel="target position", ylabel="token accuracy", ylim=(-0.03, 1.03))
ax.set_title(f"bottleneck, sources of {S} letters")
ax.legend()
plt.show()
teacher_accuracy = (teacher == test_tgt)[longest].mean()
free_accuracy = (decoded["bottleneck"] == test_tgt)[longest].mean()
print(
    f"bottleneck token accuracy: teacher forced {teacher_accuracy:.3f}, free running {free_accuracy:.3f}"
)
if SCALE != "ci":
    assert teacher_accuracy >= free_accuracy, (teacher_accuracy, free_accuracy)

with jax.default_matmul_precision("highest"):
    for name, model in models.items():
        source = reverse_sources(test_src) if "reversed" in name else test_src
        tokens = decoded[name]
        again = teacher_forced_argmax(model, source, decoder_input(tokens))
        upto = up_to_eos(tokens)
        assert np.array_equal(np.where(upto, again, 0), np.where(upto, tokens, 0)), name
        right = (tokens == test_tgt).all(axis=1)
        on_target = teacher_forced_argmax(model, source, test_in)
        on_target = np.where(up_to_eos(test_tgt), on_target, PAD)  # after EOS: padding
        assert np.array_equal(on_target[right], test_tgt[right]), name

    free = with_config(models["Luong"], teacher_forcing_ratio=0.0)
    free_running = jnp.argmax(
        free(test_src, test_in, test_mask, deterministic=False, key=jax.random.key(0)), axis=-1
    )
    upto = up_to_eos(decoded["Luong"])
    assert np.array_equal(np.where(upto, free_running, 0), np.where(upto, decoded["Luong"], 0))
print("greedy decoding = the teacher-forced pass over its own output = the free-running pass")

# %% [markdown]
# ## 7 · Alignment maps
#
# Bahdanau and Luong attention sow their weights α [B, T, S] as "alignment" (over the original
# source positions); `collect_intermediates` gathers them from a teacher-forced pass and
# `viz.plot_alignment` draws one as in Bahdanau et al. (2015, Figure 3). A copy should align
# target letter t with source letter t: the diagonal.
#
# Checks: every row is a distribution over the real source letters (it sums to 1, and the
# padding gets exactly 0), and more padding on the sources gets exactly 0 too while the logits
# and the weights on the real letters move only by float rounding.

# %%
example = int(np.flatnonzero(test_lengths == S - 1)[0])  # one padded position
source_labels = [*letters(test_src[example]), "·"]
target_labels = [*letters(test_tgt[example]), "EOS", "·"]
alignments = {}
for name in ("Bahdanau", "Luong"):
    _, found = forward(models[name], test_src, test_in)
    alignments[name] = np.asarray(found[("alignment",)])  # [B, S + 1, S]
    show(
        viz.plot_alignment(
            found, source_labels, target_labels, batch_index=example, title=f"{name} attention"
        )
    )

for name, alignment in alignments.items():
    real = test_mask[:, None, :]  # [B, 1, S]
    assert np.all(alignment[~np.broadcast_to(real, alignment.shape)] == 0.0), name  # exact
    assert np.allclose(alignment.sum(axis=-1), 1.0, atol=1e-5), name
    steps = np.arange(S + 1)[None, :] < test_lengths[:, None]  # target steps that copy a letter
    diagonal = (alignment.argmax(axis=-1) == np.arange(S + 1)[None, :])[steps].mean()
    print(f"{name}: the largest weight is on the copied letter at {diagonal:.1%} of the steps")
    assert diagonal >= {"ci": 0.0, "cpu": 0.8, "full": 0.8}[SCALE], name

# Padding invariance: 5 more padding columns on every source, the decoder fed its own tokens.
# The extra columns get exactly 0; the rest moves only by float rounding (longer reductions).
padded_src = np.pad(test_src, ((0, 0), (0, 5)))
with jax.default_matmul_precision("highest"):
    for name in ("Bahdanau", "Luong"):
        tokens_in = decoder_input(decoded[name])
        logits, found = forward(models[name], padded_src, tokens_in)
        wider = np.asarray(found[("alignment",)])
        assert np.all(wider[:, :, S:] == 0.0), name  # exact
        plain_logits, plain = forward(models[name], test_src, tokens_in)
        assert np.allclose(wider[:, :, :S], plain[("alignment",)], atol=1e-4), name
        assert np.allclose(logits, plain_logits, atol=1e-3), name
print("alignment rows sum to 1, padding gets exactly 0, more padding changes only rounding")

# %% [markdown]
# ## The same models from the command line
#
# `experiments/configs/rnn_seq2seq.py` trains these three models with `attn.training` on the
# `reverse` and `sort` tasks, with checkpoints, evaluation and alignment maps written to the run
# directory:
#
#     python experiments/train.py --config experiments/configs/rnn_seq2seq.py:reverse,bahdanau --workdir runs/reverse_bahdanau
#     python experiments/train.py --config experiments/configs/rnn_seq2seq.py:reverse,bottleneck --workdir runs/reverse_bottleneck

# %%
print(f"notebook 02 passed its checks at scale {SCALE!r}")
