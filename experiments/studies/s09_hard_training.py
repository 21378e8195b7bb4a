"""S09 · Hard vs soft attention trained end to end (part a).

Claim (the lecture notes, seed 000): soft attention is differentiable and trains directly; hard
attention selects one source position and must be trained through an estimator — straight-through
(Bengio et al. 2013), Gumbel-softmax (Jang et al. 2017) or the score function REINFORCE (Williams
1992) — whose gradient is noisier, so it learns more slowly, if at all.

Anchor: Xu et al. 2015, Table 1, Flickr8k BLEU-4: soft 19.5, hard (REINFORCE with a moving
baseline and an entropy bonus) 21.3; COCO BLEU-4 soft 24.3 vs hard 25.0 but METEOR 23.90 vs 23.04,
so the published ranking depends on the metric. The studies brief does not expect Xu's hard >
soft to replicate on a clean algorithmic task.

Protocol as run: the `reverse` task of `attn.data` (strings of `LENGTHS` letters from an alphabet
of `ALPHABET`), `Seq2SeqRNN` "bahdanau" (bidirectional GRU, H = 64, additive attention) trained by
the recipe of `experiments/configs/rnn_seq2seq.py` (batch 64, AdamW 3e-3, warmup 100 then cosine,
gradient clipping 1.0) for `STEPS` steps through the library's own train step
(`attn.training.steps.make_train_step` with `attn.training.tasks.Seq2SeqTask`). Conditions, the
estimators that select one position in the forward pass: soft (estimator None),
straight_through_sample, gumbel_straight_through (τ = 0.5, fixed: the model takes one
temperature, the annealing of `attn.kernels.hard_training.gumbel_temperature` is not wired into
training) and reinforce (the task's surrogate with the moving-average baseline, β = 0.9; the task
has no entropy bonus, so λ = 0 where Xu et al. and the brief use 0.01). 3 paired seeds: a seed fixes
the initialisation (the same parameters in every condition) and the order of the training data.
Evaluation is deterministic (every hard estimator selects the argmax): exact match of greedy
decoding on the first `EVAL_EXAMPLES` validation strings every `EVAL_EVERY` steps, and
`steps_to_90`, the first such step at ≥ 90 % (the step budget, `reached_90` False, when never).
At the end: the entropy of the selection distribution softmax(e) (the soft weights; for a hard
model the policy it samples from or takes the argmax of), averaged over the real target steps, and
the share of target symbols whose argmax alignment is the mirrored source position, and the most
common offset of the argmax from that position (per seed, with its share).
Gradient noise, at steps 0, STEPS/2 and STEPS on a fixed held-out batch of 64: `DRAWS` gradients of
the training loss that differ only in the estimator's random draw; per entry the variance over
draws and the square of the mean, each averaged over the entries of the attention score
parameters (W_q, W_k, v) and of all parameters; their ratio (noise-to-signal) is the indicator
(soft attention draws nothing: exactly 0).

Expected (the studies brief): soft ≥ every hard estimator; straight-through and Gumbel reach soft's
accuracy but more slowly; REINFORCE the slowest and most variable across seeds.

Pass: for every hard estimator the paired mean of EM(soft) − EM(hard) at the end is ≥ 0 (the
brief's rule: no hard estimator beats soft), and the soft model learned (EM ≥ 0.9 in every seed:
otherwise the budget was too small and nothing is concluded, INCONCLUSIVE). NOT REPLICATED when
some hard estimator beats soft with a 95 % interval that excludes 0; INCONCLUSIVE when one is ahead
in the mean only. Steps to 90 % (paired log10 ratio hard / soft) and the noise are reported, not
gated.

Not in this module: the `dates` task of the brief (many-to-one alignment), which does not fit the
budget beside `reverse`; part (b), the estimator variance on the marker task, is `s09_estimators`.
"""

from __future__ import annotations

import dataclasses
import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import attn.data as attn_data
from attn.layers import collect_intermediates
from attn.training.config import dataset_options, model_config
from attn.training.metrics import truncate_at_eos
from attn.training.optimizers import make_optimizer
from attn.training.steps import RUN_ONCE_OPTIONS, create_train_state, make_train_step
from attn.training.tasks import LossOptions, Seq2SeqTask
from experiments.configs import rnn_seq2seq
from experiments.studies import report

CONDITIONS = ("soft", "straight_through_sample", "gumbel_straight_through", "reinforce")
HARD = CONDITIONS[1:]
TEMPERATURE = 0.5  # τ of the Gumbel estimator (that of s09_estimators and the README anchor)
ALPHABET = 8
LENGTHS = {"smoke": (1, 5), "full": (1, 15)}
STEPS = {"smoke": 2, "full": 1000}
EVAL_EVERY = {"smoke": 2, "full": 100}
BATCH = {"smoke": 8, "full": 64}
EVAL_EXAMPLES = {"smoke": 16, "full": 500}
NOISE_EXAMPLES = {"smoke": 8, "full": 64}
DRAWS = {"smoke": 4, "full": 32}
TARGET = 0.9  # the exact match of steps_to_90
SCORE_PARAMS = ("W_q", "W_k", "v")  # the additive score of the decoder's attention
XU = "Xu et al. 2015 T1, Flickr8k BLEU-4: soft 19.5, hard 21.3; COCO BLEU-4 24.3 vs 25.0"


def training_config(mode: str, condition: str, seed: int):
    """The reverse/bahdanau recipe of `rnn_seq2seq` with the study's lengths, steps, seed and
    estimator."""
    config = rnn_seq2seq.get_config("reverse,bahdanau")
    config.seed = seed
    config.batch_size = BATCH[mode]
    config.num_train_steps = STEPS[mode]
    low, high = LENGTHS[mode]
    config.dataset.symbols.min_length, config.dataset.symbols.max_length = low, high
    config.dataset.symbols.alphabet_size = ALPHABET
    if mode == "smoke":
        config.dataset.config = "tiny"
    if condition != "soft":
        config.model.overrides.estimator = condition
        config.model.overrides.gumbel_temperature = TEMPERATURE
    return config


class Run:
    """One condition's compiled pieces, shared by its seeds: the task, the train step, the
    gradient-noise probe; the state is rebuilt per seed."""

    def __init__(self, mode: str, condition: str, info: attn_data.DatasetInfo, seed: int):
        self.mode, self.condition = mode, condition
        config = training_config(mode, condition, seed)
        self.model_config = model_config(config, info)
        self.task = Seq2SeqTask(
            "Seq2SeqRNN",
            LossOptions(reinforce_baseline_decay=config.loss.reinforce_baseline_decay),
        )
        self.tx = make_optimizer(
            config.optimizer, total_steps=STEPS[mode], model_dim=self.model_config.hidden_dim
        )
        self.state = self._new_state(seed)
        self._unused = (seed, self.state)  # the first seed's state, not trained yet
        self.train_step = make_train_step(self.task, self.state)
        self.noise = make_gradient_noise(self.task, self.state)

    def _new_state(self, seed: int):
        init_key = jax.random.split(jax.random.key(seed))[0]
        return create_train_state(self.task, self.model_config, self.tx, init_key=init_key)

    def initial_state(self, seed: int):
        """The state at initialisation for `seed` (the same parameters in every condition)."""
        if self._unused is not None and self._unused[0] == seed:
            state, self._unused = self._unused[1], None
            return state
        return self._new_state(seed)

    def model(self, arrays) -> nnx.Module:
        model, *_ = nnx.merge(self.state.graphdef, self.state.rng_state, arrays)
        return model


def make_gradient_noise(task: Seq2SeqTask, state):
    """`noise(arrays, batch, keys) -> {name: float}`: the per-entry variance over draws (one per
    key) of the training-loss gradient, and the squared mean gradient, averaged over the entries
    of the attention score parameters ("score_*") and of all parameters ("all_*")."""
    graphdef, rng_state = state.graphdef, state.rng_state

    def one_draw(arrays, rng_state, batch, key):
        model, _, *task_state = nnx.merge(graphdef, rng_state, arrays)
        nnx.reseed(model, dropout=key, sampling=key)
        baseline = task_state[0].value[...] if task_state else None

        def loss_fn(model):
            return task.train_loss(model, batch, key, baseline=baseline)[0]

        return nnx.grad(loss_fn)(model)

    def noise(arrays, rng_state, batch, keys):
        grads = jax.vmap(one_draw, in_axes=(None, None, None, 0))(arrays, rng_state, batch, keys)
        sums = {"score_var": 0.0, "score_signal": 0.0, "all_var": 0.0, "all_signal": 0.0}
        counts = {"score": 0, "all": 0}
        for path, leaf in nnx.to_flat_state(grads):
            g = leaf[...].reshape(keys.shape[0], -1).astype(jnp.float32)
            var, signal = jnp.sum(jnp.var(g, axis=0, ddof=1)), jnp.sum(jnp.mean(g, axis=0) ** 2)
            groups = ("all", "score") if path[-1] in SCORE_PARAMS else ("all",)
            for group in groups:
                sums[f"{group}_var"] += var
                sums[f"{group}_signal"] += signal
                counts[group] += g.shape[1]
        return {name: total / counts[name.split("_")[0]] for name, total in sums.items()}

    compiled = []  # run a few times per training run: compiled without backend optimisation

    def measure(arrays, batch, keys) -> dict[str, float]:
        if not compiled:
            lowered = jax.jit(noise).lower(arrays, rng_state, batch, keys)
            compiled.append(lowered.compile(compiler_options=RUN_ONCE_OPTIONS))
        values = {name: float(v) for name, v in compiled[0](arrays, rng_state, batch, keys).items()}
        for group in ("score", "all"):
            signal = values[f"{group}_signal"]
            values[f"{group}_noise_ratio"] = values[f"{group}_var"] / signal if signal else 0.0
        return values

    return measure


@functools.partial(jax.jit, static_argnums=0)
def _selection_profile(graphdef, state, src, tgt_in, input_length, target_mask):
    """A soft twin's (mean entropy of softmax(e) over the real target steps, the offset of the
    argmax from the mirrored source position [B, T], the target symbols [B, T] bool)."""
    model = nnx.merge(graphdef, state)
    _, found = collect_intermediates(
        model, src, tgt_in, src != attn_data.PAD_ID, deterministic=True, names=("alignment",)
    )
    weights = found[("alignment",)]  # [B, T, S] in source order, 0 at padding
    entropy = -jnp.sum(jnp.where(weights > 0, weights * jnp.log(weights), 0.0), axis=-1)
    mask = target_mask.astype(jnp.float32)
    mean_entropy = jnp.sum(entropy * mask) / jnp.sum(mask)
    steps = jnp.arange(weights.shape[1])
    mirrored = input_length[:, None] - 1 - steps[None, :]  # [B, T]
    symbol = steps[None, :] < input_length[:, None]
    return mean_entropy, jnp.argmax(weights, axis=-1) - mirrored, symbol


def selection_profile(run: Run, arrays, batch) -> dict[str, float]:
    """Of the model in `arrays`, read through a soft twin (the same parameters with estimator
    None, whose alignment is softmax(e) itself): the mean entropy of the selection distribution,
    the share of target symbols whose argmax is the mirrored source position, and the most
    common offset of the argmax from it with its share."""
    twin_config = dataclasses.replace(run.model_config, estimator=None, gumbel_temperature=1.0)
    twin = nnx.eval_shape(lambda: run.task.build_model(twin_config, nnx.Rngs(0)))
    graphdef, _ = nnx.split(twin)
    _, state = nnx.split(run.model(arrays))
    targets = jnp.asarray(batch["targets"])
    tgt_in = attn_data.shift_right(targets, attn_data.BOS_ID)
    entropy, offset, symbol = _selection_profile(
        graphdef,
        state,
        jnp.asarray(batch["inputs"]),
        tgt_in,
        jnp.asarray(batch["input_length"]),
        targets != attn_data.PAD_ID,
    )
    offsets = np.asarray(offset)[np.asarray(symbol)]
    values, counts = np.unique(offsets, return_counts=True)
    return {
        "final_entropy": float(entropy),
        "alignment_accuracy": float(np.mean(offsets == 0)),
        "alignment_offset": int(values[np.argmax(counts)]),
        "offset_share": float(counts.max() / offsets.size),
    }


def _sequence(row: np.ndarray) -> list[int]:
    out = truncate_at_eos(row, attn_data.EOS_ID)
    while out and out[-1] == attn_data.PAD_ID:
        out.pop()
    return out


def exact_match(run: Run, arrays, batch) -> float:
    """Greedy decoding (argmax hard attention) of the batch: the share of exact outputs."""
    tokens, _ = run.task.predict(run.model(arrays), batch, max_new_tokens=batch["targets"].shape[1])
    tokens = np.asarray(tokens)
    hits = [_sequence(p) == _sequence(t) for p, t in zip(tokens, batch["targets"], strict=True)]
    return float(np.mean(hits))


def load_data(mode: str, seed: int):
    """(the training set in this seed's order, the evaluation batch, the noise batch)."""
    config = training_config(mode, "soft", seed)
    options = dataset_options(config)
    train = attn_data.load(
        config.dataset.name,
        split="train",
        batch_size=config.batch_size,
        seed=seed,
        **options,
    )
    valid = attn_data.load(
        config.dataset.name,
        split=config.dataset.eval_split,
        batch_size=EVAL_EXAMPLES[mode],
        shuffle=False,
        num_epochs=1,
        tokenizer=train.info.tokenizer,
        **options,
    )
    evaluation = next(iter(valid.iterator()))
    noise = {k: jnp.asarray(v[: NOISE_EXAMPLES[mode]]) for k, v in evaluation.items()}
    return train, evaluation, noise


def train_one(run: Run, seed: int, data) -> list[dict]:
    """Train one condition on one seed; its curve rows and its final row."""
    mode, condition = run.mode, run.condition
    train, evaluation, noise_batch = data
    state = run.initial_state(seed)
    arrays = state.arrays
    train_key = jax.random.split(jax.random.key(seed))[1]
    noise_keys = jax.random.split(jax.random.key(30_000 + seed), DRAWS[mode])
    noise_at = {0, STEPS[mode] // 2, STEPS[mode]}
    iterator = train.iterator()
    rows, window, timer = [], [], report.Timer()
    steps_to_90 = None

    def record(step: int):
        nonlocal steps_to_90
        em = exact_match(run, arrays, evaluation)
        if steps_to_90 is None and em >= TARGET:
            steps_to_90 = step
        sums = jax.device_get(window)
        row = {
            "row": "curve",
            "task": "reverse",
            "estimator": condition,
            "seed": seed,
            "step": step,
            "exact_match": em,
        }
        if sums:
            loss = sum(m["loss"][0] for m in sums) / sum(m["loss"][1] for m in sums)
            row["train_loss"] = float(loss)
            row["grad_norm"] = float(np.mean([m["grad_norm"][0] for m in sums]))
        if step in noise_at:
            row |= run.noise(arrays, noise_batch, noise_keys)
        rows.append(row)
        window.clear()
        print(
            f"s09a {condition:24s} seed={seed} step {step:5d}: EM {em:.3f}"
            + (f" loss {row['train_loss']:.3f}" if "train_loss" in row else "")
            + (f" noise/signal(score) {row['score_noise_ratio']:.3g}" if step in noise_at else ""),
            flush=True,
        )

    record(0)
    for step in range(STEPS[mode]):
        batch = {k: jnp.asarray(v) for k, v in next(iterator).items()}
        arrays, metrics = run.train_step(arrays, batch, train_key, jnp.int32(step))
        window.append(metrics)
        if (step + 1) % EVAL_EVERY[mode] == 0 or step + 1 == STEPS[mode]:
            record(step + 1)
    profile = selection_profile(run, arrays, evaluation)
    last = rows[-1]
    rows.append(
        {
            "row": "final",
            "task": "reverse",
            "estimator": condition,
            "seed": seed,
            "step": STEPS[mode],
            "exact_match": last["exact_match"],
            "steps_to_90": steps_to_90 if steps_to_90 is not None else STEPS[mode],
            "reached_90": steps_to_90 is not None,
            **profile,
            "score_noise_ratio": last["score_noise_ratio"],
            "all_noise_ratio": last["all_noise_ratio"],
            "wall_s": timer.seconds,
        }
    )
    return rows


def measure(mode: str, seeds: int) -> list[dict]:
    rows, runs = [], {}
    for seed in range(seeds):
        data = load_data(mode, seed)
        for condition in CONDITIONS:
            if condition not in runs:
                runs[condition] = Run(mode, condition, data[0].info, seed)
            rows += train_one(runs[condition], seed, data)
            final = rows[-1]
            print(
                f"s09a {condition:24s} seed={seed}: EM {final['exact_match']:.3f} steps_to_90 "
                f"{final['steps_to_90']}{'' if final['reached_90'] else ' (not reached)'} "
                f"entropy {final['final_entropy']:.3f} aligned {final['alignment_accuracy']:.3f} "
                f"(offset {final['alignment_offset']:+d}: {final['offset_share']:.3f})"
                f" ({final['wall_s']:.0f} s)",
                flush=True,
            )
    return rows


def _final(rows: list[dict], condition: str, key: str) -> list[float]:
    group = sorted(
        (r for r in rows if r["row"] == "final" and r["estimator"] == condition),
        key=lambda r: r["seed"],
    )
    return [float(r[key]) for r in group]


def differences(rows: list[dict]) -> list[dict]:
    """Per hard estimator: EM(soft) − EM(hard) and log10(steps_to_90 hard / soft), paired."""
    out = []
    for estimator in HARD:
        em = report.paired_difference(
            _final(rows, "soft", "exact_match"), _final(rows, estimator, "exact_match")
        )
        steps = report.paired_difference(
            np.log10(_final(rows, estimator, "steps_to_90")),
            np.log10(_final(rows, "soft", "steps_to_90")),
        )

        def interval(d):
            return f"[{d.low:+.3f}, {d.high:+.3f}]" if d.n > 1 else "n = 1"

        out.append(
            {
                "estimator": estimator,
                "EM soft - hard": em.mean,
                "EM 95% CI": interval(em),
                "seeds soft ≥ hard": sum(
                    s >= h
                    for s, h in zip(
                        _final(rows, "soft", "exact_match"),
                        _final(rows, estimator, "exact_match"),
                        strict=True,
                    )
                ),
                "log10 steps_to_90 hard/soft": steps.mean,
                "steps 95% CI": interval(steps),
                "verdict": _estimator_verdict(em),
            }
        )
    return out


def _estimator_verdict(em: report.PairedDifference) -> str:
    if em.mean >= 0:
        return report.REPLICATED
    if em.high < 0:
        return report.NOT_REPLICATED
    return report.INCONCLUSIVE


def soft_learned(rows: list[dict]) -> bool:
    ems = _final(rows, "soft", "exact_match")
    return bool(ems) and min(ems) >= TARGET


def verdict(rows: list[dict]) -> str:
    if not soft_learned(rows):
        return report.INCONCLUSIVE
    verdicts = [d["verdict"] for d in differences(rows)]
    if report.NOT_REPLICATED in verdicts:
        return report.NOT_REPLICATED
    if all(v == report.REPLICATED for v in verdicts):
        return report.REPLICATED
    return report.INCONCLUSIVE


def table(rows: list[dict]) -> list[dict]:
    out = []
    for condition in CONDITIONS:
        reached = _final(rows, condition, "reached_90")
        out.append(
            {
                "estimator": condition,
                "exact match": report.mean_std(_final(rows, condition, "exact_match")),
                "steps to 90 %": report.mean_std(_final(rows, condition, "steps_to_90")),
                "reached": f"{int(sum(reached))}/{len(reached)}",
                "final entropy (nats)": report.mean_std(_final(rows, condition, "final_entropy")),
                "aligned": report.mean_std(_final(rows, condition, "alignment_accuracy")),
                "common offset (share)": ", ".join(
                    f"{int(o):+d} ({share:.2f})"
                    for o, share in zip(
                        _final(rows, condition, "alignment_offset"),
                        _final(rows, condition, "offset_share"),
                        strict=True,
                    )
                ),
                "noise/signal, score (end)": report.mean_std(
                    _final(rows, condition, "score_noise_ratio")
                ),
                "noise/signal, all (end)": report.mean_std(
                    _final(rows, condition, "all_noise_ratio")
                ),
                "wall s per run": report.mean_std(_final(rows, condition, "wall_s")),
            }
        )
    return out


def noise_table(rows: list[dict]) -> tuple[list[dict], list[str]]:
    """Noise-to-signal of the score gradients at each measured step, mean ± std over seeds."""
    steps = sorted({r["step"] for r in rows if r["row"] == "curve" and "score_var" in r})
    out = []
    for condition in CONDITIONS:
        row = {"estimator": condition}
        for step in steps:
            values = [
                r["score_noise_ratio"]
                for r in rows
                if r["row"] == "curve" and r["estimator"] == condition and r["step"] == step
            ]
            row[f"step {step}"] = report.mean_std(values)
        out.append(row)
    return out, [f"step {s}" for s in steps]


def plot(rows: list[dict]):
    figure, (curve_ax, noise_ax) = report.new_figure(11, 3.8, columns=2)
    styles = dict(zip(CONDITIONS, ("k-", "C0-", "C1-", "C3-"), strict=True))
    for condition in CONDITIONS:
        curve = [r for r in rows if r["row"] == "curve" and r["estimator"] == condition]
        steps = sorted({r["step"] for r in curve})
        per_step = [[r["exact_match"] for r in curve if r["step"] == s] for s in steps]
        mean = [np.mean(v) for v in per_step]
        curve_ax.plot(steps, mean, styles[condition], label=condition)
        curve_ax.fill_between(
            steps,
            [min(v) for v in per_step],
            [max(v) for v in per_step],
            alpha=0.15,
            color=styles[condition][:-1],
        )
        noisy = sorted(
            (r for r in curve if "score_noise_ratio" in r and r["score_noise_ratio"] > 0),
            key=lambda r: r["step"],
        )
        if noisy:
            noise_steps = sorted({r["step"] for r in noisy})
            noise_ax.plot(
                noise_steps,
                [
                    10
                    ** np.mean([np.log10(r["score_noise_ratio"]) for r in noisy if r["step"] == s])
                    for s in noise_steps
                ],
                styles[condition][:-1] + "o-",
                label=condition,
            )
    curve_ax.axhline(TARGET, color="grey", lw=0.8, ls=":")
    curve_ax.set(xlabel="training step", ylabel="exact match (greedy, argmax attention)")
    curve_ax.set_title("S09a: reverse, mean over seeds (band: min to max)", fontsize=10)
    curve_ax.legend(fontsize=8)
    noise_ax.set(xlabel="training step", ylabel="Var/mean² of the score gradient", yscale="log")
    noise_ax.set_title("gradient noise over the estimator's draws (soft: 0)", fontsize=10)
    if noise_ax.get_legend_handles_labels()[0]:
        noise_ax.legend(fontsize=8)
    return figure


def summary(rows: list[dict], seeds: int, mode: str) -> str:
    noise_rows, noise_columns = noise_table(rows)
    low, high = LENGTHS[mode]
    return "\n".join(
        [
            "# S09 · Hard vs soft attention trained end to end (part a)",
            "",
            f"reverse, {low} to {high} letters of {ALPHABET}; Seq2SeqRNN bahdanau; {STEPS[mode]} "
            f"steps, batch {BATCH[mode]}; exact match of greedy decoding on "
            f"{EVAL_EXAMPLES[mode]} validation strings every {EVAL_EVERY[mode]} steps; Gumbel "
            f"τ = {TEMPERATURE}; REINFORCE with the moving baseline (β = 0.9), no entropy bonus; "
            f"mean ± std over {seeds} paired seed(s).",
            "",
            report.markdown_table(
                table(rows),
                [
                    "estimator",
                    "exact match",
                    "steps to 90 %",
                    "reached",
                    "final entropy (nats)",
                    "aligned",
                    "common offset (share)",
                    "noise/signal, score (end)",
                    "noise/signal, all (end)",
                    "wall s per run",
                ],
            ),
            "",
            "Wall s per run: training, evaluations and noise probes; the first seed's run of "
            "each estimator also compiles.",
            "",
            "Gradient noise over the estimator's draws, Var/mean² of the score gradients "
            f"({DRAWS[mode]} draws on {NOISE_EXAMPLES[mode]} held-out strings):",
            "",
            report.markdown_table(noise_rows, ["estimator", *noise_columns]),
            "",
            report.markdown_table(
                differences(rows),
                [
                    "estimator",
                    "EM soft - hard",
                    "EM 95% CI",
                    "seeds soft ≥ hard",
                    "log10 steps_to_90 hard/soft",
                    "steps 95% CI",
                    "verdict",
                ],
            ),
            "",
            f"Soft attention learned (EM ≥ {TARGET} in every seed): "
            f"{'yes' if soft_learned(rows) else 'no — the budget is too small, no conclusion'}.",
            "",
            f"| anchor | {XU} (hard: REINFORCE + baseline + entropy) |",
            "|---|---|",
            "",
            f"**Verdict: {verdict(rows)}**",
            "",
            "Not measured here: the dates task of the brief; Gumbel τ annealing (fixed τ); the "
            "entropy bonus of REINFORCE.",
        ]
    )


def run(argv: list[str] | None = None) -> str:
    args = report.parse_args(__doc__.splitlines()[0], argv)
    timer = report.Timer()
    rows = measure(args.mode, args.seeds)
    report.write_outputs(
        args.out,
        rows=rows,
        summary=summary(rows, args.seeds, args.mode),
        figure=plot(rows),
        meta={
            "study": "s09_hard_training",
            "mode": args.mode,
            "seeds": list(range(args.seeds)),
            "conditions": CONDITIONS,
            "lengths": LENGTHS[args.mode],
            "alphabet": ALPHABET,
            "steps": STEPS[args.mode],
            "eval_every": EVAL_EVERY[args.mode],
            "eval_examples": EVAL_EXAMPLES[args.mode],
            "draws": DRAWS[args.mode],
            "temperature": TEMPERATURE,
            "wall_s": timer.seconds,
        },
    )
    return verdict(rows)


if __name__ == "__main__":
    print(run(sys.argv[1:]))
