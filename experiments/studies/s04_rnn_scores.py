"""S04a · Score functions in an RNN encoder-decoder: dot, general, concat (additive), scaled dot.

Claim: the score functions of Luong attention perform about the same (part a of S04; part b, the
width sweep where unscaled scores fall behind, is `s04_scores`).

Anchor: Luong et al. 2015, Table 4 (global attention, ppl / BLEU / BLEU after unk replacement):
location 6.4 / 18.1 / 19.3, dot 6.1 / 18.6 / 20.5, general 6.1 / 17.3 / 19.1; concat "does not
yield good performances" (ppl 6.7). Their spread between dot and general is 1.3 BLEU. Britz et al.
2017 at width 128: Mul 22.03 ± 0.08 vs Add 22.23 ± 0.11 BLEU. Scaled dot is Vaswani et al. 2017's
q·k/√d; at the width here (H = 64) the brief expects no difference.

Protocol as run: `Seq2SeqRNN` luong (2-layer LSTM, H = 64, E = 32, input feeding; the
`experiments/configs/rnn_seq2seq.py` recipe: Adam 3e-3, 100 warmup steps, cosine decay, clipping
1.0, batch 64) with score ∈ {dot, general, concat, scaled_dot} (`LuongAttention`), trained through
`seq2seq_training` on copy of 1-12 letters of a 10-letter alphabet (`attn.data.SymbolRange(1, 12,
10)`, the task of S01/S02) for 1200 steps, 3 paired seeds (a seed fixes the init and the data
order, so the four scores of a seed see the same batches). Every 300 steps: greedy exact match on
200 held-out strings (the learning curve); at the end: exact match and token accuracy on 1,000
held-out strings, and the mean attention entropy (nats, over real target positions of the first
200 held-out strings, teacher forced) at init and at the end.

Not `dates`, the brief's task: 4 scores × 3 seeds × 2,000 steps of this RNN on ~30-character date
strings does not fit 10 minutes here (on copy 1-12, whose sources are shorter, the model runs
28-40 steps/s, i.e. 50-70 s per 2,000 steps before decoding, ×12 runs; not measured on dates).
The brief's 5 seeds are cut to 3 for the same reason. Full run: 9.2 min at load 3-4.

Measured sizing (one seed, copy 1-12 × 10, 1000 steps, load about 4): exact match on 300 held-out
strings dot 0.99, concat 1.00, scaled_dot 0.54, general 0.26: at this budget the scores differ
in speed, so the learning curve and the steps to 95% are reported beside the end point.

Pass (the brief: "every score within ±2 pp exact match; do not rank them"; descriptive, and
INCONCLUSIVE expected): REPLICATED when every pair of scores differs by at most 2 pp in mean final
exact match; NOT REPLICATED when some pair differs by more than 2 pp in every seed with a paired
95% t interval that excludes 0; otherwise INCONCLUSIVE. Smoke: every score trains and is scored
end to end at tiny size.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys

import jax.numpy as jnp
import numpy as np
from flax import nnx

import attn.data as attn_data
from attn.data import SymbolRange
from attn.data.batches import shift_right
from attn.layers import collect_intermediates
from experiments.studies import report
from experiments.studies import seq2seq_training as training
from experiments.studies.seq2seq_training import Condition

STUDY = "s04_rnn_scores"
SCORES = ("dot", "general", "concat", "scaled_dot")
HIDDEN = 64
TOLERANCE = 0.02  # the brief's ±2 pp exact match
THRESHOLD_95 = 0.95
LUONG_T4 = {  # Luong et al. 2015 Table 4, global attention: (ppl, BLEU); concat: ppl only
    "dot": (6.1, 18.6),
    "general": (6.1, 17.3),
    "concat": (6.7, None),
}


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Training strings, steps, the steps between learning-curve evaluations, and how many
    held-out strings each evaluation (and the final one) decodes."""

    symbols: SymbolRange
    steps: int
    every: int
    curve_examples: int
    final_examples: int

    @property
    def length(self) -> int:
        return self.symbols.max_length + 1  # the copy plus EOS

    def settings(self) -> dict:
        return dataclasses.asdict(self) | {"task": training.TASK, "H": HIDDEN}


PROTOCOLS = {
    # smoke: one evaluation at init and the final one, of the same shapes (one decoder compile)
    "smoke": Protocol(SymbolRange(1, 4, 4), steps=2, every=2, curve_examples=24, final_examples=24),
    "full": Protocol(
        SymbolRange(1, 12, 10), steps=1200, every=300, curve_examples=200, final_examples=1000
    ),
}


@nnx.jit
def _alignment(model, src, tgt_in, src_mask):
    """The teacher-forced alignment [B, T, S] of a Seq2SeqRNN."""
    _, found = collect_intermediates(model, src, tgt_in, src_mask)
    return found[("alignment",)]


def alignment_entropy(weights: np.ndarray, target_mask: np.ndarray) -> float:
    """Mean over real target positions of H(α_t) = −Σ_j α_tj log α_tj (nats; 0 log 0 = 0), for
    weights [B, T, S] and target_mask [B, T]."""
    p = np.asarray(weights, np.float64)
    entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)
    return float(entropy[np.asarray(target_mask, bool)].mean())


def entropy_batch(trained: training.TrainedModel, protocol: Protocol) -> dict:
    """The first `curve_examples` held-out strings, padded to the protocol's length."""
    data = attn_data.load(
        training.TASK,
        split="validation",
        batch_size=protocol.curve_examples,
        shuffle=False,
        num_epochs=1,
        drop_remainder=False,
        max_length=(protocol.length, protocol.length),
        symbols=protocol.symbols,
        tokenizer=trained.tokenizer,
    )
    return next(iter(data.iterator()))


def mean_entropy(trained: training.TrainedModel, batch: dict) -> float:
    src, targets = jnp.asarray(batch["inputs"]), jnp.asarray(batch["targets"])
    weights = _alignment(trained.model, src, shift_right(targets), src != attn_data.PAD_ID)
    valid = np.asarray(batch["valid"], bool)[:, None]
    return alignment_entropy(np.asarray(weights), (np.asarray(targets) != attn_data.PAD_ID) & valid)


def measure_run(score: str, seed: int, protocol: Protocol) -> list[dict]:
    """Train the luong model with `score` for one seed: its learning-curve rows and final row."""
    condition = Condition("luong", HIDDEN, score=score)
    head = {"part": "a", "score": score, "H": HIDDEN, "seed": seed}
    curve, entropy = [], {}
    held: dict[str, dict] = {}

    def evaluate(trained: training.TrainedModel) -> None:
        if "batch" not in held:
            held["batch"] = entropy_batch(trained, protocol)
        if trained.steps == 0:
            entropy["init"] = mean_entropy(trained, held["batch"])
        decoded = training.decode(
            trained, protocol.symbols, examples=protocol.curve_examples, length=protocol.length
        )
        curve.append(
            head
            | {
                "kind": "curve",
                "step": trained.steps,
                "n": len(decoded.exact),
                "exact_match": float(decoded.exact.mean()),
                "token_acc": float(decoded.token_accuracy.mean()),
            }
        )

    trained = training.train(
        condition,
        protocol.symbols,
        steps=protocol.steps,
        seed=seed,
        every=protocol.every,
        evaluate=evaluate,
    )
    final = training.decode(
        trained, protocol.symbols, examples=protocol.final_examples, length=protocol.length
    )
    exact_match = float(final.exact.mean())
    curve.append(head | {"kind": "curve", "step": protocol.steps, "n": len(final.exact)})
    curve[-1] |= {"exact_match": exact_match, "token_acc": float(final.token_accuracy.mean())}
    reached = [r["step"] for r in curve if r["exact_match"] >= THRESHOLD_95]
    row = head | {
        "kind": "final",
        "step": protocol.steps,
        "n": len(final.exact),
        "exact_match": exact_match,
        "token_acc": float(final.token_accuracy.mean()),
        "reached_95": bool(reached),
        # not reached: one evaluation interval past the end (a lower bound)
        "steps_to_95": reached[0] if reached else protocol.steps + protocol.every,
        "attn_entropy_init": entropy["init"],
        "attn_entropy_final": mean_entropy(trained, held["batch"]),
        "final_loss": trained.final_loss,
        "steps_per_second": trained.steps_per_second,
    }
    print(
        f"s04a {score:10s} seed={seed}: {row['steps_per_second']:.1f} steps/s, loss "
        f"{row['final_loss']:.3f}, exact match "
        + ", ".join(f"{r['step']}: {r['exact_match']:.3f}" for r in curve)
        + f"; entropy {row['attn_entropy_init']:.2f} -> {row['attn_entropy_final']:.2f}",
        flush=True,
    )
    return [*curve, row]


def measure(mode: str, seeds: int) -> list[dict]:
    rows = []
    for seed in range(seeds):
        for score in SCORES:
            rows += measure_run(score, seed, PROTOCOLS[mode])
    return rows


def _final(rows: list[dict], score: str, key: str = "exact_match") -> list[float]:
    group = sorted(
        (r for r in rows if r["kind"] == "final" and r["score"] == score), key=lambda r: r["seed"]
    )
    return [float(r[key]) for r in group]


def differences(rows: list[dict]) -> dict[tuple[str, str], report.PairedDifference]:
    """Paired final exact-match differences a − b for every pair of scores."""
    return {
        (a, b): report.paired_difference(_final(rows, a), _final(rows, b))
        for a, b in itertools.combinations(SCORES, 2)
    }


def verdict(rows: list[dict]) -> str:
    found = differences(rows).values()
    if all(abs(d.mean) <= TOLERANCE for d in found):
        return report.REPLICATED
    apart = [
        d
        for d in found
        if abs(d.mean) > TOLERANCE and d.agreeing == d.n and (d.low > 0 or d.high < 0)
    ]
    return report.NOT_REPLICATED if apart else report.INCONCLUSIVE


def table(rows: list[dict]) -> list[dict]:
    out = []
    for score in SCORES:
        reached = _final(rows, score, "reached_95")
        out.append(
            {
                "score": score,
                "exact_match": report.mean_std(_final(rows, score)),
                "token_acc": report.mean_std(_final(rows, score, "token_acc")),
                "steps_to_95": report.mean_std(_final(rows, score, "steps_to_95")),
                "reached_95": f"{int(sum(reached))}/{len(reached)}",
                "attn_entropy_init": report.mean_std(_final(rows, score, "attn_entropy_init")),
                "attn_entropy_final": report.mean_std(_final(rows, score, "attn_entropy_final")),
                "steps_per_s": report.mean_std(_final(rows, score, "steps_per_second")),
            }
        )
    return out


def plot(rows: list[dict]):
    figure, (left, right) = report.new_figure(10.0, 3.8, columns=2)
    x = np.arange(len(SCORES))
    for i, score in enumerate(SCORES):
        values = np.asarray(_final(rows, score))
        left.bar(i, values.mean(), color=f"C{i}", alpha=0.6)
        left.plot(np.full(values.size, i), values, "k.", markersize=6)
        steps = sorted({r["step"] for r in rows if r["kind"] == "curve" and r["score"] == score})
        curves = np.asarray(
            [
                [
                    r["exact_match"]
                    for r in sorted(
                        (
                            r
                            for r in rows
                            if r["kind"] == "curve" and r["score"] == score and r["step"] == step
                        ),
                        key=lambda r: r["seed"],
                    )
                ]
                for step in steps
            ]
        )
        mean, sd = curves.mean(axis=1), curves.std(axis=1, ddof=1) if curves.shape[1] > 1 else 0
        right.plot(steps, mean, "o-", color=f"C{i}", label=score)
        right.fill_between(steps, mean - sd, mean + sd, color=f"C{i}", alpha=0.15)
    left.set_xticks(x, SCORES)
    left.set(ylabel="exact match (held out)", ylim=(0, 1.05))
    left.set_title("end of training: mean (bars) and each seed (dots)", fontsize=9)
    right.axhline(THRESHOLD_95, color="grey", lw=0.8, ls=":")
    right.set(xlabel="training step", ylabel="exact match (held out)", ylim=(-0.03, 1.03))
    right.set_title("learning curve, mean ± std over seeds", fontsize=9)
    right.legend(fontsize=7)
    figure.suptitle(
        "S04a: Seq2SeqRNN luong on copy, four scores. Luong et al. 2015 T4 (BLEU): dot 18.6, "
        'general 17.3; concat ppl 6.7 ("does not yield good performances")',
        fontsize=9,
    )
    return figure


def summary(rows: list[dict], seeds: int, mode: str) -> str:
    protocol = PROTOCOLS[mode]
    s = protocol.symbols
    lines = [
        "# S04a · Score functions in an RNN encoder-decoder (Seq2SeqRNN luong)",
        "",
        f"Copy of {s.min_length}-{s.max_length} letters from an alphabet of {s.alphabet_size} "
        f"(not the brief's dates: it does not fit the budget), 2-layer LSTM H = {HIDDEN}, "
        f"{protocol.steps} steps of batch 64, greedy exact match on {protocol.final_examples} "
        f"held-out strings at the end and on {protocol.curve_examples} every {protocol.every} "
        f"steps; mean ± std over {seeds} paired seed(s) (the brief asks 5). steps_to_95: the "
        f"first evaluated step at ≥ 95% exact match ({protocol.steps + protocol.every} = not "
        "reached, a lower bound).",
        "",
        report.markdown_table(
            table(rows),
            [
                "score",
                "exact_match",
                "token_acc",
                "steps_to_95",
                "reached_95",
                "attn_entropy_init",
                "attn_entropy_final",
                "steps_per_s",
            ],
        ),
        "",
        "| anchor | Luong et al. 2015 T4, global (ppl / BLEU): location 6.4 / 18.1, "
        "dot 6.1 / 18.6, "
        'general 6.1 / 17.3; concat ppl 6.7, "does not yield good performances". Britz et al. '
        "2017, width 128: Mul 22.03 ± 0.08, Add 22.23 ± 0.11 BLEU |",
        "|---|---|",
        "",
        "Paired differences in final exact match, mean [95% CI] (seeds agreeing in sign):",
        "",
    ]
    for (a, b), d in differences(rows).items():
        lines.append(
            f"- {a} - {b}: {d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}] ({d.agreeing}/{d.n})"
        )
    lines += [
        "",
        f"Rule (descriptive; the brief expects INCONCLUSIVE): REPLICATED when every pair of "
        f"scores is within {TOLERANCE:.0%} in mean exact match; NOT REPLICATED when some pair "
        f"differs by more than {TOLERANCE:.0%} in every seed with a 95% interval excluding 0; "
        "otherwise INCONCLUSIVE.",
        "",
        f"**Verdict: {verdict(rows)}**",
    ]
    return "\n".join(lines)


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
            "study": STUDY,
            "mode": args.mode,
            "seeds": list(range(args.seeds)),
            "scores": list(SCORES),
            "protocol": PROTOCOLS[args.mode].settings(),
            "steps_per_second": {s: _final(rows, s, "steps_per_second") for s in SCORES},
            "wall_s": timer.seconds,
        },
    )
    return verdict(rows)


if __name__ == "__main__":
    print(run(sys.argv[1:]))
