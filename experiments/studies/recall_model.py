"""The one-layer recall model of S04(b) and S05(b): one query attends over key/value pairs.

Task: `attn.data.generated`'s associative_recall ("c7a1k4?a" → "1", Ba et al. 2016): 2–8 pairs of a
distinct letter and a digit, then "?" and one of the letters; the answer is that letter's digit.

Model (D = 64 model width, d = the q/k width under study):

    x_i = (E_key[letter_i] + E_value[digit_i]) / √2          the pairs      [B, S, D]
    q   = E_query[letter]                                   the query      [B, 1, D]
    Q = q W_q [B, 1, d],   K = x W_k [B, S, d],   V = x W_v [B, S, D]
    out, p = attention(Q, K, V, score=...)                   `attn.kernels.attention`
    logits = out W_o                                         [B, 10]

Embeddings are N(0, 1) and every matrix N(0, 1/fan_in), so the components of Q and K have unit
variance at init: q·k then has variance d (Vaswani et al. 2017, fn. 4) and the scores are
    dot        q·k                 variance d
    scaled_dot q·k / √d            variance 1
    general    q W k, W ~ N(0, 1/d) variance ≈ d (as unscaled as dot)
    additive   v · tanh(q A_q + k A_k), A_· ~ N(0, 1/d), v ~ N(0, 1/A): variance ≈ 1, bounded
with A = min(d, 256) hidden units (Britz et al. 2017 use A = d; at d = 1024 that runs at about 5
steps/s here, and the additive score's scale does not depend on A)
(`attn.kernels.scores`). The cross-entropy of the answer is trained with Adam or plain SGD on
batches of 64 drawn from 16,384 training examples (a seed fixes the init and the draw order);
accuracy is measured on 1,024 validation examples every `EVAL_EVERY` steps, and `steps_to_95` is
the first such step at 95% or more (the step budget when never reached, with `reached_95` False).
"""

from __future__ import annotations

import functools
import string

import jax
import jax.numpy as jnp
import numpy as np
import optax

from attn.data.generated import MAX_PAIRS, examples
from attn.kernels import attention
from experiments.studies import report

WIDTH = 64  # D
DIGITS = 10
LETTERS = 26
BATCH = 64
TRAIN_EXAMPLES = 16_384
EVAL_EXAMPLES = 1_024
EVAL_EVERY = 25
ADDITIVE_WIDTH = 256  # A, the hidden width of the additive score: min(d, 256)
TARGET = 0.95
SCORES = ("dot", "general", "additive", "scaled_dot")
OPTIMIZERS = {"adam": lambda: optax.adam(1e-3), "sgd": lambda: optax.sgd(0.5)}
"""Adam at 1e-3 (its default) and plain SGD at 0.5 (no momentum): the rates are fixed before the
comparison and shared by every score and width."""


def recall_arrays(split: str, num_examples: int, seed: int) -> dict[str, np.ndarray]:
    """The associative_recall examples of a split as arrays: letters, digits [N, 8] (padded),
    mask [N, 8], query [N], answer [N]."""
    letters = np.zeros((num_examples, MAX_PAIRS), np.int32)
    digits = np.zeros((num_examples, MAX_PAIRS), np.int32)
    mask = np.zeros((num_examples, MAX_PAIRS), bool)
    query = np.zeros(num_examples, np.int32)
    answer = np.zeros(num_examples, np.int32)
    for n, (text, target) in enumerate(examples("associative_recall", split, num_examples, seed)):
        pairs = text[:-2]  # "c7a1k4?a" -> "c7a1k4"
        count = len(pairs) // 2
        letters[n, :count] = [string.ascii_lowercase.index(c) for c in pairs[::2]]
        digits[n, :count] = [int(c) for c in pairs[1::2]]
        mask[n, :count] = True
        query[n] = string.ascii_lowercase.index(text[-1])
        answer[n] = int(target)
    return {"letters": letters, "digits": digits, "mask": mask, "query": query, "answer": answer}


def init_params(key: jax.Array, score: str, d: int) -> dict[str, jax.Array]:
    """The parameters of the model above for `score` at q/k width d."""
    keys = iter(jax.random.split(key, 10))

    def normal(shape, fan_in=None):
        std = 1.0 if fan_in is None else fan_in**-0.5
        return std * jax.random.normal(next(keys), shape)

    params = {
        "E_key": normal((LETTERS, WIDTH)),
        "E_value": normal((DIGITS, WIDTH)),
        "E_query": normal((LETTERS, WIDTH)),
        "W_q": normal((WIDTH, d), WIDTH),
        "W_k": normal((WIDTH, d), WIDTH),
        "W_v": normal((WIDTH, WIDTH), WIDTH),
        "W_o": normal((WIDTH, DIGITS), WIDTH),
    }
    if score == "general":
        params["W"] = normal((d, d), d)
    if score == "additive":
        a = min(d, ADDITIVE_WIDTH)
        params |= {"A_q": normal((d, a), d), "A_k": normal((d, a), d), "v": normal((a,), a)}
    return params


def score_params(score: str, params: dict[str, jax.Array]) -> dict[str, jax.Array]:
    if score == "general":
        return {"W": params["W"]}
    if score == "additive":
        return {"W_q": params["A_q"], "W_k": params["A_k"], "v": params["v"]}
    return {}


def forward(score: str, params, batch) -> tuple[jax.Array, jax.Array]:
    """(logits [B, 10], attention weights over the pairs [B, S])."""
    x = (params["E_key"][batch["letters"]] + params["E_value"][batch["digits"]]) / np.sqrt(2)
    q = params["E_query"][batch["query"]][:, None, :]  # [B, D] -> [B, 1, D]
    Q, K, V = q @ params["W_q"], x @ params["W_k"], x @ params["W_v"]

    def one(Q, K, V, mask):
        return attention(
            Q, K, V, mask=mask[None, :], score=score, score_params=score_params(score, params)
        )

    out, weights = jax.vmap(one)(Q, K, V, batch["mask"])  # [B, 1, D], [B, 1, S]
    return out[:, 0] @ params["W_o"], weights[:, 0]


def loss_fn(score: str, params, batch) -> jax.Array:
    logits, _ = forward(score, params, batch)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["answer"]).mean()


def entropy(weights: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean entropy (nats) of the attention weights [B, S] over the real pairs."""
    terms = jnp.where(mask & (weights > 0), weights * jnp.log(jnp.maximum(weights, 1e-30)), 0.0)
    return -terms.sum(axis=-1).mean()


@functools.partial(jax.jit, static_argnames=("score",))
def evaluate(score: str, params, batch) -> tuple[jax.Array, jax.Array]:
    """(accuracy, mean attention entropy) on a batch."""
    logits, weights = forward(score, params, batch)
    return jnp.mean(logits.argmax(-1) == batch["answer"]), entropy(weights, batch["mask"])


@functools.partial(jax.jit, static_argnames=("score",))
def grad_norm(score: str, params, batch) -> jax.Array:
    """‖∂L/∂W_q‖_F on a batch."""
    return jnp.linalg.norm(jax.grad(functools.partial(loss_fn, score))(params, batch)["W_q"])


@functools.partial(jax.jit, static_argnames=("score", "optimizer", "steps"))
def train_chunk(score, optimizer, params, opt_state, train, key, start, steps: int):
    """`steps` optimizer steps from step `start`; step i's batch is drawn with fold_in(key, i)."""
    tx = OPTIMIZERS[optimizer]()

    def step(carry, i):
        params, opt_state = carry
        size = train["answer"].shape[0]
        rows = jax.random.randint(jax.random.fold_in(key, i), (BATCH,), 0, size)
        batch = jax.tree.map(lambda a: a[rows], train)
        loss, grads = jax.value_and_grad(functools.partial(loss_fn, score))(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), start + jnp.arange(steps))
    return params, opt_state, losses


def data(
    seed: int, train_examples: int = TRAIN_EXAMPLES, eval_examples: int = EVAL_EXAMPLES
) -> tuple[dict, dict]:
    """(training arrays, validation arrays) of one seed, as jax arrays."""
    train = recall_arrays("train", train_examples, seed)
    valid = recall_arrays("validation", eval_examples, seed)
    return jax.tree.map(jnp.asarray, train), jax.tree.map(jnp.asarray, valid)


def train(
    score: str, d: int, optimizer: str, seed: int, steps: int, arrays: tuple[dict, dict]
) -> dict:
    """Train one condition; its row: accuracy, steps_to_95, grad_norm0, entropies, wall time."""
    train_set, valid = arrays
    params = init_params(jax.random.key(seed), score, d)
    opt_state = OPTIMIZERS[optimizer]().init(params)
    data_key = jax.random.fold_in(jax.random.key(seed), 1)
    first = jax.tree.map(lambda a: a[:BATCH], train_set)
    grad_norm0 = float(grad_norm(score, params, first))
    _, entropy_init = evaluate(score, params, valid)
    timer = report.Timer()
    steps_to_95, curve = None, []
    for start in range(0, steps, EVAL_EVERY):
        chunk = min(EVAL_EVERY, steps - start)
        params, opt_state, losses = train_chunk(
            score, optimizer, params, opt_state, train_set, data_key, start, chunk
        )
        accuracy, _ = evaluate(score, params, valid)
        curve.append((start + chunk, float(accuracy)))
        if steps_to_95 is None and float(accuracy) >= TARGET:
            steps_to_95 = start + chunk
    train_s = timer.seconds
    accuracy, entropy_final = evaluate(score, params, valid)
    return {
        "score": score,
        "d": d,
        "optimizer": optimizer,
        "seed": seed,
        "accuracy": float(accuracy),
        "steps_to_95": steps_to_95 if steps_to_95 is not None else steps,
        "reached_95": steps_to_95 is not None,
        "grad_norm0": grad_norm0,
        "attn_entropy_init": float(entropy_init),
        "attn_entropy_final": float(entropy_final),
        "final_loss": float(np.asarray(losses).mean()),
        "steps": steps,
        "train_s": train_s,
        "curve": " ".join(f"{s}:{a:.3f}" for s, a in curve),
    }
