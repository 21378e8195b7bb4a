"""Train a `Seq2SeqRNN` on `copy`; score its greedy decoding by source length and output position.

Shared by S01 (bottleneck vs attention over source length) and S02 (reversing the source). One run
is a `Condition` (model kind, hidden width H, reversed source or not) trained with one seed:

    config  = experiments/configs/rnn_seq2seq.py (Adam(W) 3e-3, warmup 100 steps then cosine
              decay, gradient clipping 1.0, batch 64), dataset "copy" with the study's
              `attn.data.SymbolRange`, `config.model.overrides` for H and `reverse_source`
    init    = `attn.training.steps.create_train_state` from key(seed) split as the training loop
              does; data = `attn.data.load("copy", seed=seed)`: the seed fixes init and data order
    steps   = `attn.training.steps.make_train_step`, the jitted step of
              `attn.training.loop.train_and_evaluate`, called here without the loop's per-step
              metric sync, checkpoints and evaluations. Measured on this machine (copy 1-12,
              300 steps, load 12): the same steps/s (bottleneck 37 in the loop vs 33 here,
              bahdanau 26 vs 23, within the load's noise) but 15-17 s less fixed cost per run
              (wall 43 vs 28 s and 49 vs 31 s), which the studies' many short runs add up
    decode  = `attn.decoding.greedy` through `Seq2SeqTask.predict` on held-out strings (the
              "validation" split of each `SymbolRange`: draws separate from training)

Scores per held-out string x of n symbols and its decoding ŷ (cut at EOS):

    exact_match    = [ŷ == x]
    token_accuracy = (1/n) Σ_i [ŷ_i == x_i]          (i = 1..n; a missing ŷ_i is wrong)
    position_i     = [ŷ_i == x_i] for each output position i ≤ n

`bin_scores` averages them per source-length bin, `position_scores` per output position.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import attn.data as attn_data
from attn.layers.rnn_attention import LUONG_SCORES
from attn.training.config import dataset_options, model_config
from attn.training.optimizers import make_optimizer
from attn.training.steps import create_train_state, make_train_step
from attn.training.tasks import LossOptions, Seq2SeqTask, task_class
from experiments.configs import rnn_seq2seq
from experiments.studies import report

TASK = "copy"
MODELS = ("bottleneck", "bahdanau", "luong")


@dataclasses.dataclass(frozen=True)
class Condition:
    """One trained model: `model` a variant of `Seq2SeqRNNConfig` (bottleneck: 2-layer LSTM, no
    attention; bahdanau: BiGRU + additive attention; luong: 2-layer LSTM + a Luong score), its
    encoder width H, whether the source is reversed (Sutskever et al. 2014) and, for luong, the
    score (a name in `attn.layers.rnn_attention.LUONG_SCORES`; default "general")."""

    model: str
    hidden_dim: int = 64
    reverse_source: bool = False
    score: str = "general"

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"Condition.model must be one of {MODELS}, got {self.model!r}")
        if self.score not in LUONG_SCORES:
            raise ValueError(
                f"Condition.score must be one of {sorted(LUONG_SCORES)}, got {self.score!r}"
            )
        if self.score != "general" and self.model != "luong":
            raise ValueError(
                f"Condition.score is a Luong score: model must be 'luong', got {self.model!r}"
            )

    @property
    def name(self) -> str:
        order = "reversed" if self.reverse_source else "normal"
        score = f"-{self.score}" if self.model == "luong" else ""
        return f"{self.model}{score}-H{self.hidden_dim}-{order}"


def training_config(
    condition: Condition, symbols: attn_data.SymbolRange, steps: int, seed: int, batch: int = 64
):
    """experiments/configs/rnn_seq2seq.py for `condition` on copy strings of `symbols`."""
    config = rnn_seq2seq.get_config(condition.model)
    config.dataset.name = TASK
    config.dataset.symbols.update(dataclasses.asdict(symbols))
    config.model.overrides.hidden_dim = condition.hidden_dim
    config.model.overrides.reverse_source = condition.reverse_source
    if condition.model == "luong":
        config.model.overrides.score = condition.score
    config.num_train_steps = steps
    config.batch_size = batch
    config.seed = seed
    config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, max(steps // 10, 1))
    return config


@dataclasses.dataclass
class TrainedModel:
    """A trained model, the tokenizer of its training split and how long its steps after the
    first (compiling) one took."""

    condition: Condition
    seed: int
    model: object
    tokenizer: attn_data.Tokenizer
    symbols: attn_data.SymbolRange
    steps: int
    train_seconds: float
    final_loss: float

    @property
    def steps_per_second(self) -> float:
        """Training steps per second after the first (compiling) step; 0 for a 1-step run."""
        if self.steps < 2:
            return 0.0
        return (self.steps - 1) / max(self.train_seconds, 1e-9)


def train(
    condition: Condition,
    symbols: attn_data.SymbolRange,
    *,
    steps: int,
    seed: int,
    batch: int = 64,
    every: int = 0,
    evaluate: Callable[[TrainedModel], None] | None = None,
) -> TrainedModel:
    """Train `condition` for `steps` steps of `batch` copy strings; the seed fixes init and data.

    With `evaluate` and `every` > 0, `evaluate(model so far)` is called after 0, every, 2·every, …
    steps (below `steps`), in evaluation mode; its time is left out of `train_seconds`, and its
    `final_loss` is the loss of the last step taken (NaN at step 0).
    """
    if evaluate is not None and every < 1:
        raise ValueError(f"train: evaluate needs every >= 1 (steps between calls), got {every}")
    config = training_config(condition, symbols, steps, seed, batch)
    data = attn_data.load(
        TASK, split="train", batch_size=batch, seed=seed, **dataset_options(config)
    )
    info = data.info
    family_config = model_config(config, info)
    tx = make_optimizer(config.optimizer, total_steps=steps, model_dim=condition.hidden_dim)
    task = task_class(config.task)(
        config.model.family, LossOptions(), vocab_size=info.vocab_size or 0
    )
    init_key, train_key, _ = jax.random.split(jax.random.key(seed), 3)
    state = create_train_state(task, family_config, tx, init_key=init_key)
    train_step = make_train_step(task, state)

    def snapshot(taken: int, seconds: float) -> TrainedModel:
        loss = float("nan")
        if metrics is not None:
            total, count = jax.device_get(metrics["loss"])
            loss = float(total / max(count, 1.0))
        model = state.merge()[0]
        model.eval()
        return TrainedModel(condition, seed, model, info.tokenizer, symbols, taken, seconds, loss)

    batches = data.iterator()
    metrics = None
    evaluation_seconds = 0.0
    for step in range(steps):
        if evaluate is not None and step % every == 0:
            jax.block_until_ready(metrics)
            clock = report.Timer()
            evaluate(snapshot(step, 0.0))
            evaluation_seconds += clock.seconds if step > 1 else 0.0  # after the timer starts
        if step == 1:  # the first step compiles: the rate is timed from the second
            jax.block_until_ready(metrics)
            timer = report.Timer()
        state.arrays, metrics = train_step(
            state.arrays, next(batches), train_key, jnp.asarray(step, jnp.int32)
        )
    seconds = timer.seconds - evaluation_seconds if steps > 1 else 0.0
    trained = snapshot(steps, seconds)
    if not np.isfinite(trained.final_loss):
        raise FloatingPointError(
            f"{condition.name} seed {seed}: the loss is {trained.final_loss} at the end"
        )
    return trained


@dataclasses.dataclass(frozen=True)
class Decoded:
    """Per held-out string: its length n [N], exact match [N] and correctness per output
    position [N, P] (False beyond n)."""

    lengths: np.ndarray
    exact: np.ndarray
    correct: np.ndarray

    @property
    def token_accuracy(self) -> np.ndarray:
        return self.correct.sum(axis=1) / np.maximum(self.lengths, 1)


def _cut(row: np.ndarray) -> list[int]:
    """The tokens before the first EOS (padding dropped)."""
    out = []
    for token in row.tolist():
        if token == attn_data.EOS_ID:
            break
        if token != attn_data.PAD_ID:
            out.append(token)
    return out


def score(predictions: np.ndarray, targets: np.ndarray, lengths: np.ndarray) -> Decoded:
    """Exact match and per-position correctness of decoded `predictions` [N, M] against
    `targets` [N, T] (both EOS-terminated, PAD after), for sources of `lengths` [N]."""
    n, positions = len(targets), int(lengths.max())
    correct = np.zeros((n, positions), bool)
    exact = np.zeros(n, bool)
    for row, (p, t) in enumerate(zip(predictions, targets, strict=True)):
        predicted, target = _cut(p), _cut(t)
        exact[row] = predicted == target
        for i, symbol in enumerate(target[:positions]):
            correct[row, i] = i < len(predicted) and predicted[i] == symbol
    return Decoded(np.asarray(lengths), exact, correct)


def decode(
    trained: TrainedModel,
    symbols: attn_data.SymbolRange,
    *,
    examples: int,
    length: int,
    batch: int = 250,
) -> Decoded:
    """Greedy decoding of the first `examples` validation strings of `symbols` (held out: the
    validation split draws its own strings), scored against their copies. Sources and targets
    are padded to `length` (>= symbols.max_length + 1), so that ranges share one compiled
    decoder."""
    data = attn_data.load(
        TASK,
        split="validation",
        batch_size=batch,
        shuffle=False,
        num_epochs=1,
        drop_remainder=False,
        max_length=(length, length),
        symbols=symbols,
        tokenizer=trained.tokenizer,
    )
    task = Seq2SeqTask("Seq2SeqRNN", LossOptions(), vocab_size=data.info.vocab_size or 0)
    predictions, targets, lengths = [], [], []
    seen = 0
    for b in data.iterator():
        valid = np.asarray(b["valid"])
        tokens, _ = task.predict(trained.model, b, max_new_tokens=b["targets"].shape[1] + 1)
        predictions.append(np.asarray(tokens)[valid])
        targets.append(np.asarray(b["targets"])[valid])
        lengths.append(np.asarray(b["input_length"])[valid])
        seen += int(valid.sum())
        if seen >= examples:
            break
    width = max(p.shape[1] for p in predictions)
    predictions = [np.pad(p, ((0, 0), (0, width - p.shape[1]))) for p in predictions]
    return score(
        np.concatenate(predictions)[:examples],
        np.concatenate(targets)[:examples],
        np.concatenate(lengths)[:examples],
    )


def length_bins(symbols: attn_data.SymbolRange, width: int) -> list[tuple[int, int]]:
    """[(lo, hi)] bins of `width` lengths covering symbols.min_length..max_length."""
    lo, hi = symbols.min_length, symbols.max_length
    return [(start, min(start + width - 1, hi)) for start in range(lo, hi + 1, width)]


def bin_scores(decoded: Decoded, bins: Sequence[tuple[int, int]]) -> list[dict]:
    """One dict per bin: len_bin "lo-hi", n, token_acc, exact_match (means over its strings)."""
    rows = []
    for lo, hi in bins:
        inside = (decoded.lengths >= lo) & (decoded.lengths <= hi)
        if not inside.any():
            raise ValueError(f"bin_scores: no held-out string has a length in [{lo}, {hi}]")
        rows.append(
            {
                "len_bin": f"{lo}-{hi}",
                "n": int(inside.sum()),
                "token_acc": float(decoded.token_accuracy[inside].mean()),
                "exact_match": float(decoded.exact[inside].mean()),
            }
        )
    return rows


def position_scores(decoded: Decoded) -> list[dict]:
    """One dict per output position i (1-based): n (strings with ≥ i symbols), accuracy."""
    rows = []
    for i in range(decoded.correct.shape[1]):
        reaching = decoded.lengths > i
        if reaching.any():
            accuracy = float(decoded.correct[reaching, i].mean())
            rows.append({"position": i + 1, "n": int(reaching.sum()), "accuracy": accuracy})
    return rows


@dataclasses.dataclass(frozen=True)
class Protocol:
    """What one study run trains and scores: the training strings, the extrapolation strings
    (longer than any trained on; reported, not judged), the bin width, the steps, the number of
    held-out strings decoded per range."""

    symbols: attn_data.SymbolRange
    extrapolation: attn_data.SymbolRange
    bin_width: int
    steps: int
    examples: int

    @property
    def bins(self) -> list[tuple[int, int]]:
        return length_bins(self.symbols, self.bin_width)

    @property
    def first_bin(self) -> str:
        lo, hi = self.bins[0]
        return f"{lo}-{hi}"

    @property
    def last_bin(self) -> str:
        lo, hi = self.bins[-1]
        return f"{lo}-{hi}"

    @property
    def overall_bin(self) -> str:
        return f"{self.symbols.min_length}-{self.symbols.max_length}"

    def settings(self) -> dict:
        """The protocol as plain values, for meta.json (and to check that runs can be shared)."""
        return {
            "task": TASK,
            "symbols": dataclasses.asdict(self.symbols),
            "extrapolation": dataclasses.asdict(self.extrapolation),
            "bin_width": self.bin_width,
            "steps": self.steps,
            "examples": self.examples,
        }


def measure_run(condition: Condition, seed: int, protocol: Protocol) -> tuple[list[dict], float]:
    """Train one (condition, seed) and score it: rows of kind "bin" (per length bin), "overall"
    (the whole training range), "extrapolation" (the longer strings) and "position" (per output
    position, training range); and the training steps per second."""
    trained = train(condition, protocol.symbols, steps=protocol.steps, seed=seed)
    length = max(protocol.symbols.max_length, protocol.extrapolation.max_length) + 1
    inside = decode(trained, protocol.symbols, examples=protocol.examples, length=length)
    beyond = decode(trained, protocol.extrapolation, examples=protocol.examples, length=length)
    ext = protocol.extrapolation
    head = {
        "model": condition.model,
        "H": condition.hidden_dim,
        "reversed": condition.reverse_source,
        "seed": seed,
    }
    rows = [head | {"kind": "bin"} | r for r in bin_scores(inside, protocol.bins)]
    overall = [(protocol.symbols.min_length, protocol.symbols.max_length)]
    rows += [head | {"kind": "overall"} | r for r in bin_scores(inside, overall)]
    rows += [
        head | {"kind": "extrapolation"} | r
        for r in bin_scores(beyond, [(ext.min_length, ext.max_length)])
    ]
    rows += [
        head | {"kind": "position", "len_bin": protocol.overall_bin} | r
        for r in position_scores(inside)
    ]
    print(
        f"{condition.name} seed={seed}: {trained.steps_per_second:.1f} steps/s, final loss "
        f"{trained.final_loss:.3f}, exact match "
        + ", ".join(
            f"{r['len_bin']}: {r['exact_match']:.3f}" for r in rows if r["kind"] != "position"
        ),
        flush=True,
    )
    return rows, trained.steps_per_second


def select(
    rows: Sequence[dict],
    kind: str,
    model: str,
    H: int,
    reversed_: bool,
    len_bin: str,
    key: str = "exact_match",
) -> list[float]:
    """`key` of the rows of one condition, kind and bin, ordered by seed."""
    chosen = sorted(
        (
            r
            for r in rows
            if r["kind"] == kind
            and r["model"] == model
            and r["H"] == H
            and r["reversed"] == reversed_
            and r.get("len_bin") == len_bin
        ),
        key=lambda r: r["seed"],
    )
    return [r[key] for r in chosen]
