"""Makes the pictures in docs/ from a small ViT trained on scikit-learn's 8×8 digits.

    .venv/bin/python docs/make_figures.py          # about 30 s on 2 CPU cores

The "digits" ViT (2 layers, 4 heads, D = 64, 2×2 patches: 16 patches and a class token) trains
for 300 Adam steps on 1,497 digits and is tested on the other 300 (about 95% accuracy). Then:

    docs/attention_heads.png   every head of both layers for one test digit (`plot_heads`)
    docs/attention_rollout.png the class token's attention rollout over that digit
                               (`attention_rollout`, `plot_rollout_on_image`)
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.datasets import load_digits

from attn import viz
from attn.layers import collect_intermediates
from attn.models import ViT, ViTConfig

DOCS = pathlib.Path(__file__).resolve().parent
STEPS, BATCH, TEST = 300, 64, 300
SHOWN = 7  # the test digit in the pictures


def digits() -> tuple[np.ndarray, np.ndarray]:
    """images [1797, 8, 8, 1] in [0, 1] and labels [1797], shuffled with a fixed seed."""
    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.target))
    images = (data.images[order] / 16.0).astype(np.float32)[..., None]  # [B, 8, 8] -> [B, 8, 8, 1]
    return images, data.target[order]


def train(images: np.ndarray, labels: np.ndarray) -> ViT:
    """The "digits" ViT after STEPS steps of Adam on cross-entropy."""
    model = ViT(ViTConfig.named("digits"), rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(2e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer, x, y):
        def loss(model):
            logits = model(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        value, grads = nnx.value_and_grad(loss)(model)
        optimizer.update(model, grads)
        return value

    rng = np.random.default_rng(1)
    for _ in range(STEPS):
        batch = rng.choice(len(labels), BATCH, replace=False)
        step(model, optimizer, jnp.asarray(images[batch]), jnp.asarray(labels[batch]))
    return model


def main() -> None:
    images, labels = digits()
    model = train(images[TEST:], labels[TEST:])
    logits, found = collect_intermediates(model, jnp.asarray(images[:TEST]))
    weights = {path[:-1]: w for path, w in found.items()}  # {("blocks", l, "self_attention"): w}
    accuracy = float(np.mean(np.argmax(logits, -1) == labels[:TEST]))
    print(f"test accuracy on {TEST} held-out digits: {accuracy:.3f}")

    config = model.config
    rows, cols = config.grid
    tokens = ["cls"] + [f"{r},{c}" for r in range(rows) for c in range(cols)]
    digit = labels[SHOWN]
    viz.plot_heads(
        weights,
        batch_index=SHOWN,
        query_tokens=tokens,
        key_tokens=tokens,
        title=f"ViT heads on a test digit {digit} (rows: query token, columns: key token; "
        "patches as row,col)",
        path=DOCS / "attention_heads.png",
    )
    rollout = viz.attention_rollout(weights)  # [B, 1 + P, 1 + P]
    viz.plot_rollout_on_image(
        images[SHOWN],
        rollout[SHOWN, 0, 1:],  # the class token's row, over the patches
        config.grid,
        title=f"Attention rollout of the class token, digit {digit}",
        path=DOCS / "attention_rollout.png",
    )
    print(f"wrote {DOCS / 'attention_heads.png'} and {DOCS / 'attention_rollout.png'}")


if __name__ == "__main__":
    jax.config.update("jax_default_prng_impl", "rbg")  # faster to compile on CPU
    main()
