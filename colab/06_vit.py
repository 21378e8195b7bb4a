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
# # 06 · ViT: an image as a sequence of patches, and where the class token looks
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/TO-BE-SET-ON-PUBLICATION/attn/blob/TO-BE-SET-ON-PUBLICATION/colab/06_vit.ipynb)
#
# What you will learn:
# - the Vision Transformer (Dosovitskiy et al. 2021, `attn.models.ViT`): an image is cut into
#   p×p patches, each flattened and projected to a token, a learned class token is put in front,
#   and a Transformer encoder reads the sequence; the class token's output is classified;
# - patchify: the projection is a convolution with kernel = stride = p, the same as a matrix
#   product on the flattened patches, and patch k changes token k only;
# - a ViT trained from scratch on scikit-learn's 8×8 handwritten digits (shipped with
#   scikit-learn: no download) with `attn.training.ClassificationTask`;
# - what the class token attends to, head by head, drawn over the digits, and attention
#   rollout (Abnar & Zuidema 2020, `attn.viz.attention_rollout`), which follows the attention
#   through the residual stream of every layer;
# - at `full` scale: CIFAR-10 (downloaded with TFDS) and, where the Hugging Face Hub is
#   reachable, ViT-B/16's ImageNet weights in the same `ViT` class (`attn.pretrained.load_vit`).
#
# | scale | what runs | time |
# |---|---|---|
# | `ci` | the "digits" ViT (2 layers, width 64, 16 patches), 150 steps | about 25 s of CPU time (measured) |
# | `cpu` | the same ViT, 1,500 steps | about 2 min of CPU time (estimate) |
# | `full` | digits, 2,000 steps; a 6-layer ViT on CIFAR-10, 4,000 steps; ViT-B/16 from the Hub | about 10 min on a v5e (estimate) |
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
import optax
from flax import nnx
from IPython.display import Image, display

from attn import viz
from attn.data.corpora import DIGITS_MAX_VALUE, digits
from attn.layers import collect_intermediates
from attn.models import ViT, ViTConfig
from attn.training.tasks import ClassificationTask, LossOptions

SIZES = {
    "ci": dict(steps=150, batch=64, cifar_steps=0),
    "cpu": dict(steps=1500, batch=64, cifar_steps=0),
    "full": dict(steps=2000, batch=64, cifar_steps=4000),
}[SCALE]
print(SIZES)


def show(figure):
    """Display a figure made by `attn.viz` (they draw off-screen, without pyplot) as a PNG."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    display(Image(buffer.getvalue()))


# %% [markdown]
# ## 1 · The digits, and an image as a sequence of patches
#
# 1,797 grey 8×8 images with 17 levels (0-16), split 80/10/10. The "digits" ViT cuts each into
# 2×2 patches: a 4×4 grid of P = 16 patches, read row by row, each a vector of 2·2·1 = 4 pixels.

# %%
train_images, train_labels = digits("train")
valid_images, valid_labels = digits("validation")
test_images, test_labels = digits("test")
scale_pixels = lambda images: images.astype(np.float32) / DIGITS_MAX_VALUE  # noqa: E731
x_train, x_valid, x_test = (scale_pixels(i) for i in (train_images, valid_images, test_images))
print(f"train {x_train.shape}, validation {x_valid.shape}, test {x_test.shape}")

config = ViTConfig.named("digits")
p, (rows, cols) = config.patch_size, config.grid
print(f"patch {p}x{p}, grid {rows}x{cols}, P = {config.num_patches}, tokens = {config.max_length}")


def patchify(images):
    """[B, H, W, C] -> [B, P, p·p·C], patches row-major, each flattened row-major."""
    B, H, W, C = images.shape
    x = images.reshape(B, H // p, p, W // p, p, C)  # [B, rows, p, cols, p, C]
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(B, (H // p) * (W // p), p * p * C)


patches = patchify(x_train[:1])
figure, axes = plt.subplots(1, 2, figsize=(7, 3.2), gridspec_kw=dict(width_ratios=[1, 1.3]))
axes[0].imshow(x_train[0, ..., 0], cmap="gray_r")
axes[0].set_title(f"label {train_labels[0]}")
axes[1].imshow(patches[0], cmap="gray_r", aspect="auto")
axes[1].set(title="the 16 patches as tokens", xlabel="pixel of the patch", ylabel="patch k")
axes[0].set_xticks([])
axes[0].set_yticks([])
plt.show()

# %% [markdown]
# The patch projection of `ViT` is a convolution with kernel = stride = p. It equals the
# flattened patches times the kernel reshaped to [p·p·C, D] (up to float rounding), and it is
# local. Exact: change one pixel of patch k and, of the tokens `ViT.embed` makes (class token,
# then the patches, each plus its position), only token 1 + k changes, to the bit.

# %%
model = ViT(config, rngs=nnx.Rngs(0))
print(f"{sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))):,} parameters")
kernel = np.asarray(model.patch_embedding.kernel[...]).reshape(p * p * config.num_channels, -1)
bias = np.asarray(model.patch_embedding.bias[...])
with jax.default_matmul_precision("highest"):
    convolved = np.asarray(model.patch_embedding(jnp.asarray(x_train[:8])))
by_matmul = patchify(x_train[:8]).astype(np.float64) @ kernel + bias
assert np.allclose(convolved.reshape(8, config.num_patches, -1), by_matmul, atol=1e-5)

k = 6  # row 1, column 2 of the grid: pixels [2:4, 4:6]
changed = x_train[:1].copy()
changed[0, 2, 5, 0] += 0.5
before, after = np.asarray(model.embed(x_train[:1])), np.asarray(model.embed(changed))
moved = np.flatnonzero(np.any(before != after, axis=-1)[0])
print(f"tokens changed by one pixel of patch {k}: {moved.tolist()}")
assert moved.tolist() == [1 + k]  # exact

# %% [markdown]
# ## 2 · Train from scratch
#
# `ClassificationTask` runs the model on `batch["image"]` and scores `batch["label"]`; AdamW
# with warm-up and cosine decay, weight decay and label smoothing (a ViT overfits 1,437 images
# quickly without them).

# %%
task = ClassificationTask(family="ViT", loss=LossOptions(label_smoothing=0.1))


def train(model, images, labels, steps, batch, learning_rate=1e-3):
    """AdamW on random batches; returns the losses."""
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, steps // 20 + 1, steps)
    optimizer = nnx.Optimizer(model, optax.adamw(schedule, weight_decay=0.05), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss_fn(model):
            return task.train_loss(model, {"image": x, "label": y}, jax.random.key(0))

        (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        optimizer.update(model, grads)
        return loss

    rng, losses = np.random.default_rng(0), []
    for _ in range(steps):
        index = rng.integers(0, len(labels), batch)
        losses.append(
            step(model, optimizer, jnp.asarray(images[index]), jnp.asarray(labels[index]))
        )
    return np.asarray(jax.device_get(losses))


@nnx.jit
def predict(model, images):
    return jnp.argmax(model(images), axis=-1)


start = time.perf_counter()
losses = train(model, x_train, train_labels, SIZES["steps"], SIZES["batch"])
valid_accuracy = float(np.mean(np.asarray(predict(model, x_valid)) == valid_labels))
test_accuracy = float(np.mean(np.asarray(predict(model, x_test)) == test_labels))
print(
    f"loss {losses[0]:.3f} -> {losses[-10:].mean():.3f} in {time.perf_counter() - start:.1f} s; "
    f"accuracy: validation {valid_accuracy:.3f}, test {test_accuracy:.3f}"
)
figure, ax = plt.subplots(figsize=(6, 2.8))
ax.plot(losses)
ax.set(xlabel="step", ylabel="cross-entropy (label smoothing 0.1)")
plt.show()
assert test_accuracy >= {"ci": 0.7, "cpu": 0.93, "full": 0.93}[SCALE], test_accuracy

# Exact: an image's logits do not depend on the other images of its batch.
batch = jnp.asarray(x_test[:16])
other = batch.at[1:].set(jnp.asarray(x_test[16:31]))
assert np.array_equal(np.asarray(model(batch)[0]), np.asarray(model(other)[0]))

# %% [markdown]
# ## 3 · Every head, and what the class token looks at
#
# `collect_intermediates` gathers the attention weights [B, N, T, T] of each layer during one
# call (T = 1 + 16: the class token, then the patches). `viz.plot_heads` draws every head of
# every layer for one test image.

# %%
shown = jnp.asarray(x_test[:8])
_, found = collect_intermediates(model, shown, names=("attention_weights",))
layers = sorted(found)
for path in layers:
    assert np.allclose(np.asarray(found[path]).sum(-1), 1.0, atol=1e-5), path
tokens = ["cls"] + [f"{r},{c}" for r in range(rows) for c in range(cols)]
show(viz.plot_heads(found, batch_index=0, query_tokens=tokens, key_tokens=tokens))

# %% [markdown]
# Row 0 of each map is the class token's query: its weights over the 16 patches, put back on
# the 4×4 grid and laid over the image, show where each head of each layer looks.

# %%
images_shown = 4
figure, axes = plt.subplots(
    len(layers),
    config.num_heads * images_shown,
    figsize=(1.1 * config.num_heads * images_shown, 1.3 * len(layers)),
    squeeze=False,
)
for layer, path in enumerate(layers):
    weights = np.asarray(found[path])  # [B, N, T, T]
    for b in range(images_shown):
        for head in range(config.num_heads):
            ax = axes[layer, b * config.num_heads + head]
            ax.imshow(x_test[b, ..., 0], cmap="gray_r", extent=(0, 8, 8, 0))
            ax.imshow(
                weights[b, head, 0, 1:].reshape(rows, cols),
                cmap="inferno",
                alpha=0.6,
                extent=(0, 8, 8, 0),
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if layer == 0:
                ax.set_title(f"img {b} h{head}", fontsize=7)
        axes[layer, 0].set_ylabel(f"layer {layer}", fontsize=8)
plt.show()

# %% [markdown]
# ## 4 · Attention rollout
#
# One layer's map says little about where the information came from, because of the residual
# connections. Rollout (Abnar & Zuidema 2020) mixes each layer's head-averaged map with the
# identity and multiplies the layers: Â_l = norm_rows(½ A_l + ½ I), R = Â_L ··· Â_1. Each Â_l
# is a row-stochastic matrix, so every row of R sums to 1 (exactly, up to float64 rounding),
# and R[0, 1:] is the class token's share of each patch.

# %%
rollout = viz.attention_rollout(found)  # [B, T, T], float64
assert rollout.shape == (8, config.max_length, config.max_length)
assert np.allclose(rollout.sum(-1), 1.0, rtol=0, atol=1e-12)  # row-stochastic
assert np.all(rollout >= 0)
# By hand for the first image: the same product.
by_hand = np.eye(config.max_length)
for path in layers:
    mixed = 0.5 * np.asarray(found[path][0], np.float64).mean(0) + 0.5 * np.eye(config.max_length)
    by_hand = (mixed / mixed.sum(-1, keepdims=True)) @ by_hand
assert np.allclose(rollout[0], by_hand, atol=1e-12)
for b in range(3):
    predicted = int(np.asarray(predict(model, shown[b : b + 1]))[0])
    show(
        viz.plot_rollout_on_image(
            x_test[b],
            rollout[b, 0, 1:],
            config.grid,
            title=f"label {test_labels[b]}, predicted {predicted}",
        )
    )

# %% [markdown]
# ## 5 · CIFAR-10 (`full` scale)
#
# 50,000 32×32 colour images of 10 classes, downloaded and prepared with TFDS
# (`attn.data.prepare`, about 170 MB, a few minutes) and read with `attn.data.load`, which
# standardises each channel. The "cifar" ViT: 6 layers, width 256, 4×4 patches (64 patches).
# A ViT without convolutions' prior learns CIFAR slowly from scratch: about 70-75 % after 20,000
# steps (`experiments/configs/cifar10_vit.py`); here 4,000.

# %%
cifar_accuracy = None
if SCALE == "full":
    try:
        from attn import data

        data.prepare("cifar10")
        cifar_train = data.load("cifar10", split="train", batch_size=128)
        cifar_test = data.load(
            "cifar10",
            split="test",
            batch_size=500,
            shuffle=False,
            num_epochs=1,
            drop_remainder=False,
        )
    except Exception as error:  # no network, or TFDS cannot prepare it here: skip, saying why
        print(f"CIFAR-10 skipped: {type(error).__name__}: {str(error).splitlines()[0][:120]}")
        cifar_train = None
else:
    cifar_train = None
    print(f"CIFAR-10 skipped: it runs at scale 'full' (here {SCALE!r})")
if cifar_train is not None:
    cifar = ViT(ViTConfig.named("cifar"), rngs=nnx.Rngs(0))
    schedule = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 200, SIZES["cifar_steps"])
    cifar_optimizer = nnx.Optimizer(cifar, optax.adamw(schedule, weight_decay=0.05), wrt=nnx.Param)

    @nnx.jit
    def cifar_step(model, optimizer, batch, key):
        def loss_fn(model):
            return task.train_loss(model, batch, key)

        (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        optimizer.update(model, grads)
        return loss

    start, iterator = time.perf_counter(), iter(cifar_train.iterator())
    for step in range(SIZES["cifar_steps"]):
        batch = next(iterator)
        batch = {"image": batch["image"], "label": batch["label"]}
        loss = cifar_step(cifar, cifar_optimizer, batch, jax.random.key(step))
        if step % 1000 == 0:
            print(f"step {step}: loss {float(loss):.3f}")
    correct = total = 0
    for batch in cifar_test.iterator():
        right = np.asarray(predict(cifar, jnp.asarray(batch["image"]))) == batch["label"]
        correct, total = (
            correct + int(right[batch["valid"]].sum()),
            total + int(batch["valid"].sum()),
        )
    cifar_accuracy = correct / total
    print(
        f"CIFAR-10 test accuracy {cifar_accuracy:.3f} on {total} images after "
        f"{SIZES['cifar_steps']} steps ({time.perf_counter() - start:.0f} s)"
    )
    assert total == 10_000 and cifar_accuracy >= 0.5, cifar_accuracy

# %% [markdown]
# ## 6 · ViT-B/16 (`full` scale, where the Hugging Face Hub is reachable)
#
# `attn.pretrained.load_vit` puts the weights of a Hugging Face ViT checkpoint into the same
# `ViT` class (its logits equal the Hugging Face model's; the project's tests check this on a
# small checkpoint). `google/vit-base-patch16-224` (ImageNet-21k, fine-tuned on ImageNet-1k, about
# 350 MB) classifies a photograph that ships with scikit-learn, and its rollout over the 14×14
# patches shows where it looked.

# %%
vit_b16 = None
if SCALE == "full":
    try:
        import json

        from huggingface_hub import hf_hub_download
        from sklearn.datasets import load_sample_image

        from attn.pretrained import load_vit

        name = "google/vit-base-patch16-224"
        with open(hf_hub_download(name, "config.json")) as f:
            b16_config = json.load(f)
        vit_b16 = load_vit(hf_hub_download(name, "model.safetensors"), b16_config)
    except Exception as error:  # no network, no Hub client: skip, saying why
        print(f"ViT-B/16 skipped: {type(error).__name__}: {str(error).splitlines()[0][:120]}")
else:
    print(f"ViT-B/16 skipped: it runs at scale 'full' (here {SCALE!r})")
if vit_b16 is not None:
    photo = load_sample_image("china.jpg").astype(np.float32) / 255.0  # [427, 640, 3]
    side = min(photo.shape[:2])
    photo = photo[:side, (photo.shape[1] - side) // 2 :][:, :side]  # the central square
    photo = jax.image.resize(jnp.asarray(photo), (224, 224, 3), "bilinear")
    pixels = (photo - 0.5) / 0.5  # the checkpoint's normalisation
    with jax.default_matmul_precision("highest"):
        logits, found_b16 = collect_intermediates(
            vit_b16, pixels[None], names=("attention_weights",)
        )
    probabilities = np.asarray(jax.nn.softmax(logits[0]))
    for i in np.argsort(-probabilities)[:5]:
        print(f"{probabilities[i]:.3f}  {b16_config['id2label'][str(i)]}")
    assert abs(probabilities.sum() - 1.0) < 1e-4
    rollout_b16 = viz.attention_rollout(found_b16)
    assert np.allclose(rollout_b16.sum(-1), 1.0, rtol=0, atol=1e-12)
    show(viz.plot_rollout_on_image(np.asarray(photo), rollout_b16[0, 0, 1:], vit_b16.config.grid))

# %%
print(f"notebook 06 passed its checks at scale {SCALE!r}")
