"""Digits for the vision studies (S11, S12): the splits, nested stratified subsets, and training
with early stopping.

Data: `attn.data.load("digits", ...)`, scikit-learn's 1,797 8×8 digits split 80/10/10 by the
dataset's own seeded shuffle (train 1,439, validation 179, test 179; the "tiny" config 200 / 50 /
50), standardised per channel. Prepared in a temporary folder, so a study leaves nothing behind.

Subsets: `stratified_order(labels, seed)` orders the training images so that every prefix holds
the classes in proportion (±1 image); the first n images are the training set of size n, so the
subsets of one seed are nested and every model of that seed sees the same images.

Training (the recipe of `experiments/configs/digits_vit.py`, used for every network): AdamW
through `attn.training.optimizers.make_optimizer` (peak 1e-3, 100 warm-up steps then cosine,
weight decay 0.05 on matrices, gradient clipping 1.0), cross-entropy with label smoothing 0.1
(`attn.training.losses.cross_entropy_per_token`), batches of min(64, n) drawn without replacement
from the step's key fold_in(seed, step), at most `max_steps` steps. Early stopping: validation
accuracy every `eval_every` steps; the parameters with the best (accuracy, −loss) are kept, and
training stops after `patience` steps without improvement.
"""

from __future__ import annotations

import functools
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import attn.data
from attn.training.losses import cross_entropy_per_token
from attn.training.optimizers import make_optimizer
from experiments.configs.digits_vit import get_config

SPLITS = ("train", "validation", "test")
BATCH = 64
LABEL_SMOOTHING = 0.1


def load_splits(config: str = "default") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (images float32[B, 8, 8, 1] standardised, labels int32[B])} of the digits."""
    out = {}
    with tempfile.TemporaryDirectory() as data_dir:
        for split in SPLITS:
            dataset = attn.data.load(
                "digits",
                split=split,
                batch_size=BATCH,
                data_dir=data_dir,
                shuffle=False,
                num_epochs=1,
                drop_remainder=False,
                config=config,
            )
            batches = list(dataset.iterator())
            valid = np.concatenate([b["valid"] for b in batches])
            images = np.concatenate([b["image"] for b in batches])[valid]
            labels = np.concatenate([b["label"] for b in batches])[valid]
            out[split] = (images.astype(np.float32), labels.astype(np.int32))
    return out


def stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """A permutation of range(len(labels)) whose every prefix holds each class in proportion.

    Each class is shuffled (numpy generator `seed`); its i-th image of m gets the key (i + u)/m
    with u ~ U(0, 1), and the images are sorted by key, so a prefix of n holds n·m/N ± 1 of a
    class of m.
    """
    rng = np.random.default_rng(seed)
    keys = np.empty(len(labels))
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        keys[members] = (np.arange(len(members)) + rng.uniform(size=len(members))) / len(members)
    return np.argsort(keys, kind="stable")


@functools.cache
def digits_optimizer(max_steps: int) -> optax.GradientTransformation:
    """The optimizer of `experiments/configs/digits_vit.py` for a run of `max_steps` steps (one
    object per length, so the compiled training step is reused across runs)."""
    return make_optimizer(get_config().optimizer, total_steps=max_steps, model_dim=64)


def loss_and_accuracy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(mean smoothed cross-entropy, accuracy) of logits [B, 10] against labels [B]."""
    loss = cross_entropy_per_token(logits, labels, label_smoothing=LABEL_SMOOTHING).mean()
    return loss, jnp.mean(jnp.argmax(logits, -1) == labels)


@functools.partial(jax.jit, static_argnames=("graphdef", "tx"), donate_argnums=(1, 3))
def train_step(graphdef, params, rest, opt_state, images, labels, size, key, step, *, tx):
    """One optimizer step on the batch drawn from fold_in(key, step); (params, opt_state, loss).

    The first `size` of `images` [N, 8, 8, 1] are the training set (the rest is padding, so that
    every training-set size runs one compiled step): the batch is min(BATCH, size) of them drawn
    without replacement (the BATCH smallest of `size` uniform keys), the loss their mean.

    One jitted step per Python iteration, not a `lax.scan` over steps: on CPU, XLA runs the
    convolutions inside a loop about 8× slower than at the top level."""
    draws = jax.random.uniform(jax.random.fold_in(key, step), labels.shape)
    index = jnp.argsort(jnp.where(jnp.arange(labels.shape[0]) < size, draws, 2.0))[:BATCH]
    weight = (jnp.arange(BATCH) < size).astype(jnp.float32)  # [BATCH]: 0 past the training set

    def loss_fn(params):
        logits = nnx.merge(graphdef, params, rest)(images[index])
        per_example = cross_entropy_per_token(
            logits, labels[index], label_smoothing=LABEL_SMOOTHING
        )
        return jnp.sum(weight * per_example) / jnp.sum(weight)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


@functools.partial(jax.jit, static_argnames=("graphdef",))
def evaluate(graphdef, params, rest, images, labels) -> tuple[jax.Array, jax.Array]:
    """(loss, accuracy) on a whole split."""
    return loss_and_accuracy(nnx.merge(graphdef, params, rest)(images), labels)


def train(
    model: nnx.Module,
    train_set: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    *,
    seed: int,
    max_steps: int,
    eval_every: int,
    patience: int,
    pad_to: int | None = None,
) -> tuple[nnx.Module, dict[str, Any]]:
    """Train `model` on `train_set` with early stopping on `validation`; (the best model, info).

    `pad_to`: pad the training arrays to this many images (at least BATCH), so that training sets
    of every size share one compiled step (pass the size of the whole training split).

    info: steps (run), best_step, val_acc (at best_step), final_train_loss (mean of the last
    evaluation interval).
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = digits_optimizer(max_steps)
    opt_state = tx.init(params)
    val_images, val_labels = jnp.asarray(validation[0]), jnp.asarray(validation[1])
    size = len(train_set[1])
    capacity = max(pad_to or 0, size, BATCH)
    padding = ((0, capacity - size),)
    images = jnp.asarray(np.pad(train_set[0], padding + ((0, 0),) * 3))
    labels = jnp.asarray(np.pad(train_set[1], padding))
    key = jax.random.key(seed)
    best, best_params, best_step, step, losses = None, params, 0, 0, []
    while step < max_steps and step - best_step < patience:
        losses = []
        for _ in range(min(eval_every, max_steps - step)):
            params, opt_state, loss = train_step(
                graphdef, params, rest, opt_state, images, labels, size, key, step, tx=tx
            )
            losses.append(loss)
            step += 1
        val_loss, val_acc = evaluate(graphdef, params, rest, val_images, val_labels)
        score = (float(val_acc), -float(val_loss))
        if best is None or score > best:
            best, best_step = score, step
            best_params = jax.tree.map(jnp.copy, params)  # the next step donates params
    info = {
        "steps": step,
        "best_step": best_step,
        "val_acc": best[0],
        "final_train_loss": float(np.mean([float(loss) for loss in losses])),
    }
    return nnx.merge(graphdef, best_params, rest), info


def accuracy(model: nnx.Module, images: np.ndarray, labels: np.ndarray) -> float:
    """The share of `images` whose argmax logit is the label."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return float(evaluate(graphdef, params, rest, jnp.asarray(images), jnp.asarray(labels))[1])
