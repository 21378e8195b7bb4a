"""S12 · Squeeze-and-excitation as channel attention.

Claim (the lecture notes, seed 001): squeeze-and-excitation re-weights the channels by the input,
gives a gain at negligible cost, and focuses on the relevant channels dynamically.

Anchor: Hu et al. 2018 (SENet, TPAMI version), Table 2: ResNet-50 top-1 error 24.80% at 3.86
GFLOPs vs SE-ResNet-50 23.29% at 3.87 GFLOPs (−1.51 pp); ResNet-101 23.17 → 22.38; ResNet-152
22.42 → 21.57. §7: the excitations are class-agnostic in early layers and class-specific deeper.

Protocol: `digits_cnn.DigitsCNN` (three conv blocks) without and with `attn.layers.
SqueezeExcitation` (r = 4, after each block), trained as in S11 (`digits_training`: AdamW,
label smoothing, at most 2,000 steps, early stopping on validation) on n = 200 stratified
training digits (not saturated) and on all 1,439; test accuracy on 179 images. 5 seeds; a seed
fixes the subset, the batch order and the initialisation: both variants start from the same
convolution kernels (created first from the seed's stream; the head, created after the SE layers,
differs). Parameters and FLOPs per image (XLA's cost analysis). Class specificity: the
channel weights s [B, C] of each SE
block on the test images (`collect_intermediates(names=("channel_weights",))`); the ratio
Σ_c var_k(mean s_c | class k) / Σ_c var(s_c), the share of the weights' variance that lies
between the class means (η², weighted by class size).

Expected (the studies brief): Δacc within ±1 pp, probably INCONCLUSIVE; parameters +1–5% (here
+9%: the channels are few); the class-specificity ratio rises with depth.

Pass: class specificity: the ratio of the last block above the first's in ≥ 4 of 5 seeds (all
data); NOT REPLICATED when last − first is negative with a 95% interval that excludes 0. The
accuracy gain, SE − plain per seed, is REPLICATED when every seed gains and the mean gain is at
least 0.5 pp, NOT REPLICATED when the mean is negative with an interval excluding 0, INCONCLUSIVE
otherwise (the expected outcome: digits saturate near 99%). The study's verdict combines the two
as S09's: REPLICATED when both are, NOT REPLICATED when one is, INCONCLUSIVE otherwise.
"""

from __future__ import annotations

import sys

import jax.numpy as jnp
import numpy as np
from flax import nnx

from attn import viz
from attn.layers import collect_intermediates
from experiments.studies import digits_training, report
from experiments.studies.digits_cnn import DigitsCNN, flops_per_image, parameter_count

N_TRAIN = {"smoke": (50, None), "full": (200, None)}  # None: every training image
DATA_CONFIG = {"smoke": "tiny", "full": "default"}
MAX_STEPS = {"smoke": 2, "full": 2000}
EVAL_EVERY = {"smoke": 1, "full": 250}
PATIENCE = {"smoke": 2, "full": 500}
GAIN_THRESHOLD = 0.005  # 0.5 pp
SEEDS_AGREEING = 0.8  # the class ratio must rise in >= 4 of 5 seeds


def class_variance_ratio(weights: np.ndarray, labels: np.ndarray) -> float:
    """Σ_c Σ_k (n_k/N)(mean_k s_c − mean s_c)² / Σ_c var(s_c): the share of the variance of the
    channel weights s [N, C] that lies between the class means (η²), in [0, 1]."""
    weights = np.asarray(weights, np.float64)
    if weights.ndim != 2 or weights.shape[0] != len(labels):
        raise ValueError(
            f"class_variance_ratio: weights must have shape [N, C] with N = len(labels) = "
            f"{len(labels)}, got shape {weights.shape}"
        )
    overall = weights.mean(axis=0)
    between = sum(
        np.mean(labels == k) * np.sum((weights[labels == k].mean(axis=0) - overall) ** 2)
        for k in np.unique(labels)
    )
    total = np.sum(weights.var(axis=0))
    return float(between / total) if total > 0 else 0.0


def channel_weights(model: DigitsCNN, images: np.ndarray) -> list[np.ndarray]:
    """s [B, C_l] of each SE block, in block order."""
    _, found = collect_intermediates(model, jnp.asarray(images), names=("channel_weights",))
    return [np.asarray(found[path]) for path in sorted(found, key=lambda path: path[1])]


def measure(mode: str, seeds: int) -> tuple[list[dict], dict]:
    """(results rows, seed 0's per-class mean channel weights of each block, all data)."""
    data = digits_training.load_splits(DATA_CONFIG[mode])
    (x, y), validation, (x_test, y_test) = data["train"], data["validation"], data["test"]
    rows, shown = [], {}
    for seed in range(seeds):
        order = digits_training.stratified_order(y, seed)
        for n in N_TRAIN[mode]:
            subset = order[: n or len(order)]
            for se in (False, True):
                timer = report.Timer()
                model, info = digits_training.train(
                    DigitsCNN(se=se, rngs=nnx.Rngs(seed)),
                    (x[subset], y[subset]),
                    validation,
                    seed=seed,
                    max_steps=MAX_STEPS[mode],
                    eval_every=EVAL_EVERY[mode],
                    patience=PATIENCE[mode],
                    pad_to=len(order),
                )
                acc = digits_training.accuracy(model, x_test, y_test)
                rows.append(
                    {
                        "part": "accuracy",
                        "se": se,
                        "n_train": len(subset),
                        "all_data": n is None,
                        "seed": seed,
                        "test_acc": acc,
                        "params": parameter_count(model),
                        "flops": flops_per_image(model),
                        **info,
                        "train_s": timer.seconds,
                    }
                )
                print(
                    f"s12 se={se!s:5s} n={len(subset):4d} seed={seed}: test {acc:.3f} "
                    f"({info['steps']} steps, best at {info['best_step']}, {timer.seconds:.0f} s)",
                    flush=True,
                )
                if not se:
                    continue
                weights = channel_weights(model, x_test)
                for block, s in enumerate(weights):
                    rows.append(
                        {
                            "part": "class_ratio",
                            "se": True,
                            "n_train": len(subset),
                            "all_data": n is None,
                            "seed": seed,
                            "block": block,
                            "channels": s.shape[1],
                            "class_var_ratio": class_variance_ratio(s, y_test),
                            "weight_min": float(s.min()),
                            "weight_max": float(s.max()),
                        }
                    )
                if seed == 0 and n is None:
                    classes = np.unique(y_test)
                    shown = {
                        ("blocks", block, "channel_weights"): np.stack(
                            [s[y_test == k].mean(axis=0) for k in classes]
                        )
                        for block, s in enumerate(weights)
                        if block in (0, len(weights) - 1)
                    }
    return rows, shown


def _values(rows: list[dict], part: str, key: str, **match) -> list[float]:
    """`key` per seed, in seed order, of the rows of `part` that match."""
    group = sorted(
        (r for r in rows if r["part"] == part and all(r[k] == v for k, v in match.items())),
        key=lambda r: r["seed"],
    )
    return [r[key] for r in group]


def _sizes(rows: list[dict]) -> list[int]:
    return sorted({r["n_train"] for r in rows if r["part"] == "accuracy"})


def differences(rows: list[dict]) -> list[dict]:
    """Per claim: the paired difference over seeds, its interval and its verdict."""
    out = []
    for n in _sizes(rows):
        d = report.paired_difference(
            _values(rows, "accuracy", "test_acc", se=True, n_train=n),
            _values(rows, "accuracy", "test_acc", se=False, n_train=n),
        )
        out.append(
            {
                "claim": "SE gains accuracy",
                "n_train": n,
                "mean difference": f"{100 * d.mean:+.2f} pp",
                "95% CI": f"[{100 * d.low:+.2f}, {100 * d.high:+.2f}] pp" if d.n > 1 else "n = 1",
                "seeds agreeing": f"{d.agreeing}/{d.n}",
                "verdict": report.verdict_from_difference(d, GAIN_THRESHOLD),
            }
        )
    everything = max(_sizes(rows))
    blocks = sorted({r["block"] for r in rows if r["part"] == "class_ratio"})
    last = _values(rows, "class_ratio", "class_var_ratio", n_train=everything, block=blocks[-1])
    first = _values(rows, "class_ratio", "class_var_ratio", n_train=everything, block=blocks[0])
    d = report.paired_difference(last, first)
    rising = int(np.sum(np.subtract(last, first) > 0))
    if rising >= SEEDS_AGREEING * d.n:
        ratio_verdict = report.REPLICATED
    elif d.mean < 0 and d.high < 0:
        ratio_verdict = report.NOT_REPLICATED
    else:
        ratio_verdict = report.INCONCLUSIVE
    out.append(
        {
            "claim": "class specificity rises with depth (last block - first)",
            "n_train": everything,
            "mean difference": f"{d.mean:+.3f}",
            "95% CI": f"[{d.low:+.3f}, {d.high:+.3f}]" if d.n > 1 else "n = 1",
            "seeds agreeing": f"{rising}/{d.n} rise",
            "verdict": ratio_verdict,
        }
    )
    return out


def verdict(rows: list[dict]) -> str:
    """Both claims, as S09: the accuracy gain at all data and the class-specificity trend."""
    everything = max(_sizes(rows))
    verdicts = [
        d["verdict"]
        for d in differences(rows)
        if d["n_train"] == everything or not d["claim"].startswith("SE gains")
    ]
    if all(v == report.REPLICATED for v in verdicts):
        return report.REPLICATED
    if report.NOT_REPLICATED in verdicts:
        return report.NOT_REPLICATED
    return report.INCONCLUSIVE


def table(rows: list[dict]) -> list[dict]:
    out = []
    for n in _sizes(rows):
        for se in (False, True):
            group = [
                r for r in rows if r["part"] == "accuracy" and r["se"] == se and r["n_train"] == n
            ]
            out.append(
                {
                    "n_train": n,
                    "SE": "yes" if se else "no",
                    "test accuracy": report.mean_std(r["test_acc"] for r in group),
                    "params": group[0]["params"],
                    "FLOPs / image": group[0]["flops"],
                    "best step": report.mean_std(r["best_step"] for r in group),
                }
            )
    return out


def ratio_table(rows: list[dict]) -> list[dict]:
    blocks = sorted({r["block"] for r in rows if r["part"] == "class_ratio"})
    return [
        {"n_train": n}
        | {
            f"block {b}": report.mean_std(
                _values(rows, "class_ratio", "class_var_ratio", n_train=n, block=b)
            )
            for b in blocks
        }
        for n in _sizes(rows)
    ]


def plot(rows: list[dict], shown: dict):
    figure, axes = report.new_mosaic([["gain", "ratio"], ["weights", "weights"]], 11, 8)
    ax = axes["gain"]
    sizes = _sizes(rows)
    for i, n in enumerate(sizes):
        gains = 100 * np.subtract(
            _values(rows, "accuracy", "test_acc", se=True, n_train=n),
            _values(rows, "accuracy", "test_acc", se=False, n_train=n),
        )
        d = report.paired_difference(gains, np.zeros_like(gains))
        ax.scatter([i] * len(gains), gains, color="grey", s=12, zorder=3)
        if d.n > 1:
            ax.errorbar(i + 0.15, d.mean, yerr=[[d.mean - d.low], [d.high - d.mean]], fmt="o",
                        color="tab:blue", capsize=4)  # fmt: skip
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(range(len(sizes)), [f"n = {n}" for n in sizes])
    ax.set(ylabel="SE - plain test accuracy (pp)", xlim=(-0.5, len(sizes) - 0.5))
    ax.set_title("paired gain per seed (grey), mean with 95% CI (blue)")
    ax = axes["ratio"]
    blocks = sorted({r["block"] for r in rows if r["part"] == "class_ratio"})
    for n, style in zip(sizes, ("s--", "o-"), strict=False):
        for seed in sorted({r["seed"] for r in rows}):
            ratios = [
                _values(rows, "class_ratio", "class_var_ratio", n_train=n, block=b)[seed]
                for b in blocks
            ]
            ax.plot(blocks, ratios, style, color="tab:orange" if n == sizes[-1] else "tab:grey",
                    alpha=0.7, label=f"n = {n}" if seed == 0 else None)  # fmt: skip
    ax.set_xticks(blocks, [f"block {b}" for b in blocks])
    ax.set(ylabel="between-class share of variance", ylim=(0, None))
    ax.set_title("class specificity of the SE weights (lines: seeds)")
    ax.legend(fontsize=8)
    picture = viz.plot_channel_weights(
        shown, row_labels=list(range(10)),
        title="mean SE weights per class (rows: digit), first and last block, seed 0, all data",
    )  # fmt: skip
    report.show_figure(axes["weights"], picture)
    figure.suptitle("S12: squeeze-and-excitation in a small digits CNN")
    return figure


def summary(rows: list[dict], seeds: int, mode: str) -> str:
    return "\n".join(
        [
            "# S12 · Squeeze-and-excitation as channel attention",
            "",
            f"`DigitsCNN` ± `SqueezeExcitation` (r = 4) on scikit-learn digits (`attn.data`, "
            f"config {DATA_CONFIG[mode]!r}); at most {MAX_STEPS[mode]} AdamW steps with early "
            f"stopping on validation (patience {PATIENCE[mode]}); test accuracy, mean ± std over "
            f"{seeds} paired seed(s).",
            "",
            report.markdown_table(
                table(rows),
                ["n_train", "SE", "test accuracy", "params", "FLOPs / image", "best step"],
            ),
            "",
            "Class specificity of the SE weights on the test images (between-class share of "
            "their variance, η²):",
            "",
            report.markdown_table(ratio_table(rows), list(ratio_table(rows)[0])),
            "",
            report.markdown_table(
                differences(rows),
                ["claim", "n_train", "mean difference", "95% CI", "seeds agreeing", "verdict"],
            ),
            "",
            "| anchor | Hu et al. 2018 (TPAMI) Table 2: ResNet-50 top-1 error 24.80% (3.86 GFLOPs) "
            "vs SE-ResNet-50 23.29% (3.87 GFLOPs), -1.51 pp; §7: excitations class-agnostic early, "
            "class-specific deeper |",
            "|---|---|",
            "",
            f"**Verdict: {verdict(rows)}**",
        ]
    )


def run(argv: list[str] | None = None) -> str:
    args = report.parse_args(__doc__.splitlines()[0], argv, seeds=5)
    seeds = args.seeds if args.mode == "full" else 1  # smoke: compiling dominates; one seed
    timer = report.Timer()
    rows, shown = measure(args.mode, seeds)
    trained = [r for r in rows if r["part"] == "accuracy"]
    report.write_outputs(
        args.out,
        rows=rows,
        summary=summary(rows, seeds, args.mode),
        figure=plot(rows, shown),
        meta={
            "study": "s12_squeeze_excitation",
            "mode": args.mode,
            "seeds": list(range(seeds)),
            "n_train": _sizes(rows),
            "data_config": DATA_CONFIG[args.mode],
            "max_steps": MAX_STEPS[args.mode],
            "eval_every": EVAL_EVERY[args.mode],
            "patience": PATIENCE[args.mode],
            "reduction": 4,
            "steps_per_s": sum(r["steps"] for r in trained) / sum(r["train_s"] for r in trained),
            "wall_s": timer.seconds,
        },
    )
    return verdict(rows)


if __name__ == "__main__":
    print(run(sys.argv[1:]))
