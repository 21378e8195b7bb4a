"""S02 · Reversing the source helps the bottleneck model (copy).

Claim: reversing the input shortens the minimal time lag between a source symbol and its output
and helps the bottleneck encoder-decoder; with attention it makes no difference.

Anchor: Sutskever et al. 2014, §3.3: "test perplexity dropped from 5.8 to 4.7, and the test BLEU
... increased from 25.9 to 30.6"; Table 1: single forward LSTM 26.17 vs single reversed LSTM
30.59 BLEU (beam 12). Luong et al. 2015, Table 1: non-attention base 11.3 → +reverse 12.6 BLEU.
Sutskever's explanation: the *average* distance between a source word and its translation is
unchanged while the *minimal* one falls. In copy, output i sits 2i − 1 steps after its source
symbol when the source is reversed, against n for every symbol in normal order.

Protocol as run: S01's protocol (`experiments.studies.seq2seq_training`, the same `Protocol`:
see `s01_bottleneck` for the lengths, alphabet and steps, and why they are smaller than the
brief's) with `reverse_source` ∈ {False, True} for bottleneck (2-layer LSTM, H = 64) and, as a
control, bahdanau (BiGRU + additive attention, H = 64); 3 paired seeds (a seed fixes init and
data order, so a reversed run and its normal run differ only in the order the encoder reads).
Exact match and token accuracy per length bin and over the whole training range, and accuracy
per output position. The normal-order runs are the same as S01's: when `--out`'s sibling folder
`s01_bottleneck` holds an S01 run of the same mode and protocol with these seeds, its rows are
reused (meta.json says so); otherwise they are trained here.

Expected (the studies brief): bottleneck reversed − normal ≥ +15 pp exact match over the training
lengths, concentrated on long strings and early output positions; bahdanau |Δ| ≤ 2 pp.

Pass: bottleneck Δ EM (reversed − normal, whole training range) with a mean ≥ +0.10 and every
seed positive (`report.verdict_from_difference`) and bahdanau |mean Δ| ≤ 0.03: REPLICATED; NOT
REPLICATED when the bottleneck's mean Δ is negative with a 95% t interval that excludes 0;
otherwise INCONCLUSIVE.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from experiments.studies import report, s01_bottleneck
from experiments.studies import seq2seq_training as training
from experiments.studies.seq2seq_training import Condition

STUDY = "s02_reversed_source"
PROTOCOLS = s01_bottleneck.PROTOCOLS
MODELS = ("bottleneck", "bahdanau")
CONDITIONS = tuple(Condition(m, 64, reverse) for m in MODELS for reverse in (False, True))
SHARED = {c for c in CONDITIONS if not c.reverse_source}  # S01 trains these too
THRESHOLD = 0.10
CONTROL_TOLERANCE = 0.03


def shared_rows(folder: Path, mode: str, seeds: int) -> list[dict]:
    """S01's rows of the conditions both studies train, when `folder` holds an S01 run of the
    same mode and protocol covering `seeds` seeds; else []."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        rows = report.read_rows(folder / "results.csv")
    except (OSError, ValueError):
        return []
    same = (
        meta.get("study") == s01_bottleneck.STUDY
        and meta.get("mode") == mode
        and meta.get("protocol") == json.loads(json.dumps(PROTOCOLS[mode].settings()))
        and set(range(seeds)) <= set(meta.get("seeds", []))
    )
    if not same:
        return []
    wanted = {(c.model, c.hidden_dim, c.reverse_source) for c in SHARED}
    return [r for r in rows if (r["model"], r["H"], r["reversed"]) in wanted and r["seed"] < seeds]


def measure(mode: str, seeds: int, out: Path) -> tuple[list[dict], dict[str, list[float]], bool]:
    """Rows of every condition × seed, the steps/s of each trained condition, and whether the
    normal-order rows came from S01's run."""
    protocol = PROTOCOLS[mode]
    reused = shared_rows(out.parent / s01_bottleneck.STUDY, mode, seeds)
    rows, rates = list(reused), {}
    for seed in range(seeds):
        for condition in CONDITIONS:
            if reused and condition in SHARED:
                continue
            found, rate = training.measure_run(condition, seed, protocol)
            rows += found
            rates.setdefault(condition.name, []).append(rate)
    return rows, rates, bool(reused)


def _values(rows, model: str, reversed_: bool, kind: str, len_bin: str, key="exact_match"):
    return training.select(rows, kind, model, 64, reversed_, len_bin, key)


def overall_bin(rows: list[dict]) -> str:
    return next(r["len_bin"] for r in rows if r["kind"] == "overall")


def delta(rows: list[dict], model: str, key: str = "exact_match") -> report.PairedDifference:
    """Paired reversed − normal of `key` over the whole training range."""
    whole = overall_bin(rows)
    return report.paired_difference(
        _values(rows, model, True, "overall", whole, key),
        _values(rows, model, False, "overall", whole, key),
    )


def _per_seed_overall(rows: list[dict]) -> tuple[list[float], list[float]]:
    """The bottleneck's exact match over the training range per seed: (reversed, normal)."""
    whole = overall_bin(rows)
    return (
        _values(rows, "bottleneck", True, "overall", whole),
        _values(rows, "bottleneck", False, "overall", whole),
    )


def verdict(rows: list[dict]) -> str:
    bottleneck = report.verdict_from_difference(delta(rows, "bottleneck"), THRESHOLD)
    if bottleneck == report.NOT_REPLICATED:
        return report.NOT_REPLICATED
    control_flat = abs(delta(rows, "bahdanau").mean) <= CONTROL_TOLERANCE
    if bottleneck == report.REPLICATED and control_flat:
        return report.REPLICATED
    return report.INCONCLUSIVE


def bins_of(rows: list[dict]) -> list[str]:
    return s01_bottleneck.bins_of(rows)


def table(rows: list[dict]) -> list[dict]:
    """mean ± std per (model, reversed, bin) of exact match and token accuracy."""
    out = []
    for model in MODELS:
        for reversed_ in (False, True):
            for kind, labels in (
                ("bin", bins_of(rows)),
                ("overall", [overall_bin(rows)]),
                (
                    "extrapolation",
                    sorted({r["len_bin"] for r in rows if r["kind"] == "extrapolation"}),
                ),
            ):
                for label in labels:
                    em = _values(rows, model, reversed_, kind, label)
                    acc = _values(rows, model, reversed_, kind, label, "token_acc")
                    out.append(
                        {
                            "model": model,
                            "reversed": reversed_,
                            "len_bin": label
                            + {
                                "bin": "",
                                "overall": " (all)",
                                "extrapolation": " (beyond training)",
                            }[kind],
                            "exact_match": report.mean_std(em),
                            "token_acc": report.mean_std(acc),
                        }
                    )
    return out


def delta_table(rows: list[dict]) -> list[dict]:
    """Paired reversed − normal per (model, bin): exact match and token accuracy."""
    out = []
    for model in MODELS:
        for kind, label in [("bin", b) for b in bins_of(rows)] + [("overall", overall_bin(rows))]:
            entry = {"model": model, "len_bin": label + (" (all)" if kind == "overall" else "")}
            for key in ("exact_match", "token_acc"):
                d = report.paired_difference(
                    _values(rows, model, True, kind, label, key),
                    _values(rows, model, False, kind, label, key),
                )
                entry[f"Δ {key}"] = (
                    f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}] ({d.agreeing}/{d.n})"
                )
            out.append(entry)
    return out


def position_table(rows: list[dict]) -> list[dict]:
    """Token accuracy per output position (mean over seeds) of each model, normal and reversed,
    and the bottleneck's paired Δ: where in the output reversal helps."""
    out = []
    positions = sorted({r["position"] for r in rows if r["kind"] == "position"})
    for position in positions:
        entry: dict = {"position": position}
        per_order = {}
        for model in MODELS:
            for reversed_ in (False, True):
                chosen = sorted(
                    (
                        r
                        for r in rows
                        if r["kind"] == "position"
                        and r["model"] == model
                        and r["reversed"] == reversed_
                        and r["position"] == position
                    ),
                    key=lambda r: r["seed"],
                )
                values = [r["accuracy"] for r in chosen]
                per_order[model, reversed_] = values
                entry[f"{model} {'reversed' if reversed_ else 'normal'}"] = float(np.mean(values))
        d = report.paired_difference(per_order["bottleneck", True], per_order["bottleneck", False])
        entry["bottleneck Δ"] = f"{d.mean:+.3f} ({d.agreeing}/{d.n})"
        out.append(entry)
    return out


def plot(rows: list[dict]):
    figure, axes = report.new_figure(12, 3.6, columns=3)
    labels = bins_of(rows)
    x = np.arange(len(labels))
    for ax, model in zip(axes[:2], MODELS, strict=True):
        for reversed_, style in ((False, "o-"), (True, "s--")):
            per_bin = [_values(rows, model, reversed_, "bin", b) for b in labels]
            mean = np.array([np.mean(v) for v in per_bin])
            std = np.array([np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in per_bin])
            (line,) = ax.plot(x, mean, style, label="reversed" if reversed_ else "normal")
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_xticks(x, labels)
        ax.set(xlabel="source length", ylabel="exact match (greedy)", ylim=(-0.03, 1.03))
        ax.set_title(f"{model} H=64", fontsize=9)
        ax.legend(fontsize=7)
    right = axes[2]
    for model in MODELS:
        for reversed_, style in ((False, "o-"), (True, "s--")):
            positions = [
                r
                for r in rows
                if r["kind"] == "position" and r["model"] == model and r["reversed"] == reversed_
            ]
            steps = sorted({r["position"] for r in positions})
            right.plot(
                steps,
                [np.mean([r["accuracy"] for r in positions if r["position"] == s]) for s in steps],
                style,
                ms=3,
                label=f"{model} {'reversed' if reversed_ else 'normal'}",
            )
    right.set(xlabel="output position", ylabel="token accuracy", ylim=(-0.03, 1.03))
    right.set_title("accuracy per output position", fontsize=9)
    right.legend(fontsize=7)
    figure.suptitle(
        "S02: copy with the source reversed (Sutskever et al. 2014: BLEU 25.9 → 30.6)", fontsize=9
    )
    return figure


def summary(rows, seeds: int, mode: str, rates: dict[str, list[float]], reused: bool) -> str:
    protocol = PROTOCOLS[mode]
    s = protocol.symbols
    source = (
        "reused from the S01 run beside this folder"
        if reused
        else "trained here (no matching S01 run beside this folder)"
    )
    lines = [
        "# S02 · Reversing the source helps the bottleneck model (copy)",
        "",
        f"Copy of {s.min_length}-{s.max_length} letters from an alphabet of {s.alphabet_size}, "
        f"{protocol.steps} training steps of batch 64, greedy decoding of {protocol.examples} "
        f"held-out strings per range; mean ± std over {seeds} paired seed(s). Normal-order "
        f"runs: {source}.",
        "",
        report.markdown_table(
            table(rows), ["model", "reversed", "len_bin", "exact_match", "token_acc"]
        ),
        "",
        "Paired reversed - normal, mean [95% CI] (seeds agreeing in sign):",
        "",
        report.markdown_table(
            delta_table(rows), ["model", "len_bin", "Δ exact_match", "Δ token_acc"]
        ),
        "",
        "Token accuracy per output position (strings of the whole training range that reach it; "
        "mean over seeds):",
        "",
        report.markdown_table(
            position_table(rows),
            [
                "position",
                "bottleneck normal",
                "bottleneck reversed",
                "bottleneck Δ",
                "bahdanau normal",
                "bahdanau reversed",
            ],
        ),
        "",
        "| anchor | Sutskever et al. 2014 §3.3: perplexity 5.8 → 4.7, BLEU 25.9 → 30.6 "
        "(T1: 26.17 → 30.59); Luong et al. 2015 T1: non-attention 11.3 → 12.6 BLEU with reversal |",
        "|---|---|",
        "",
        "Training steps/s on this machine (per seed, conditions trained here): "
        + "; ".join(f"{k} " + ", ".join(f"{v:.1f}" for v in vs) for k, vs in rates.items()),
        "",
        f"Rule: bottleneck mean Δ exact match (all training lengths) ≥ +{THRESHOLD}, positive "
        f"in every seed (per seed: "
        + ", ".join(f"{a - b:+.3f}" for a, b in zip(*_per_seed_overall(rows), strict=True))
        + f"); bahdanau |mean Δ| ≤ {CONTROL_TOLERANCE}.",
        "",
        f"**Verdict: {verdict(rows)}**",
    ]
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> str:
    args = report.parse_args(__doc__.splitlines()[0], argv)
    timer = report.Timer()
    rows, rates, reused = measure(args.mode, args.seeds, args.out)
    report.write_outputs(
        args.out,
        rows=rows,
        summary=summary(rows, args.seeds, args.mode, rates, reused),
        figure=plot(rows),
        meta={
            "study": STUDY,
            "mode": args.mode,
            "seeds": list(range(args.seeds)),
            "conditions": [c.name for c in CONDITIONS],
            "protocol": PROTOCOLS[args.mode].settings(),
            "normal_runs_from_s01": reused,
            "steps_per_second": rates,
            "wall_s": timer.seconds,
        },
    )
    return verdict(rows)


if __name__ == "__main__":
    print(run(sys.argv[1:]))
