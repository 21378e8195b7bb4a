"""S11 · ViT vs CNN with little data; attention rollout vs raw attention.

Claims (the lecture notes, seed 001): (a) without pre-training a vision transformer trails a CNN
on small data; (b) attention rollout explains the decision better than the last layer's raw
attention.

Anchors: Dosovitskiy et al. 2021, §4.3 and Fig. 3/4: trained on mid-sized data "without strong
regularization, these models yield modest accuracies of a few percentage points below ResNets of
comparable size"; "ResNets perform better with smaller pre-training datasets but plateau sooner"
(ViT overtakes only with 10⁷–10⁸ images, which digits cannot test). Abnar & Zuidema 2020, Table 1
(Spearman with blank-out importance, 6-layer model): layer 6 raw 0.29 ± 0.39 vs rollout
0.71 ± 0.24; layer 2 raw 0.10 ± 0.43 vs rollout 0.38 ± 0.27. Table 2 (input gradients, layer 6):
raw 0.46, rollout 0.54.

Protocol (a): scikit-learn digits through `attn.data` (`digits_training`): nested stratified
training subsets n ∈ {50, 100, 200, 1,439 = all} (the brief also has 500: left out to fit the
time), the same per seed for every model; the
`digits` ViT (`ViTConfig.named("digits")`, 69,194 parameters) vs `digits_cnn.DigitsCNN` (three
conv blocks, 69,308) vs scikit-learn's logistic regression on the 64 standardised pixels (L2,
C = 1, lbfgs); the networks train with the recipe of `experiments/configs/digits_vit.py` (AdamW
1e-3, warm-up and cosine, weight decay 0.05, label smoothing 0.1, batch min(64, n)) for at most
2,000 steps with early stopping on the validation split (patience 500 steps, checked every 250),
no augmentation; accuracy on the 179 test images. A seed fixes the subset, the init and the batch
order; 3 seeds, paired.

Protocol (b): on each seed's all-data ViT, for the 179 test images, four importances of the 16
patches: the class token's last-layer raw attention (mean over heads), its attention rollout
(`attn.viz.attention_rollout`, mean over heads, residual ½), occlusion (the drop in p(correct)
when one 2×2 patch is set to the blank background) and gradient × input (Σ over the patch of
∂p(correct)/∂x · (x − blank), the first-order occlusion). Spearman ρ of raw and of rollout with
each reference, per image; the per-seed mean, paired over seeds.

Expected (the studies brief): CNN − ViT ≥ +5 pp at n ≤ 200, ≤ 3 pp at all data (ViT ≈ 95–97%,
CNN ≈ 98–99%); rollout ≥ raw with a small margin (2 layers).

Pass: (a) CNN > ViT at n = 50 and n = 100 in every seed, and the mean gap at n = 100 above the gap
at all data; NOT REPLICATED when CNN − ViT at n = 50 or 100 is negative with a 95% interval that
excludes 0. (b) mean ρ(rollout, occlusion) − ρ(raw, occlusion) > 0 in every seed (the paired rule
of `report.verdict_from_difference`, threshold 0); the gradient reference is reported, not gated.
The study is REPLICATED when both parts are, NOT REPLICATED when one is, INCONCLUSIVE otherwise.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from scipy import stats

from attn import viz
from attn.layers import collect_intermediates
from attn.models import ViT, ViTConfig
from experiments.studies import digits_training, report
from experiments.studies.digits_cnn import DigitsCNN, parameter_count

MODELS = ("ViT", "CNN", "logistic regression")
N_TRAIN = {"smoke": (50, None), "full": (50, 100, 200, None)}  # None: every training image
DATA_CONFIG = {"smoke": "tiny", "full": "default"}
MAX_STEPS = {"smoke": 2, "full": 2000}
EVAL_EVERY = {"smoke": 1, "full": 250}
PATIENCE = {"smoke": 2, "full": 500}
SMALL = (50, 100)  # the subsets where the CNN must win in every seed
METHODS = ("raw", "rollout")
REFERENCES = ("occlusion", "grad")
SHOWN = 4  # test images whose rollout goes into the plot


def build(model: str, seed: int) -> nnx.Module:
    if model == "ViT":
        return ViT(ViTConfig.named("digits"), rngs=nnx.Rngs(seed))
    return DigitsCNN(se=False, rngs=nnx.Rngs(seed))


def logistic_regression(train_set, test_set) -> float:
    """Test accuracy of scikit-learn's multinomial logistic regression on the flattened pixels."""
    from sklearn.linear_model import LogisticRegression

    (x, y), (x_test, y_test) = train_set, test_set
    classifier = LogisticRegression(max_iter=5000).fit(x.reshape(len(x), -1), y)
    return float(classifier.score(x_test.reshape(len(x_test), -1), y_test))


def patch_importances(vit: ViT, images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """{raw, rollout, occlusion, grad: [B, P]}: four importances of the P patches per image."""
    config = vit.config
    p, (rows, cols) = config.patch_size, config.grid
    blank = float(images.min())  # a zero pixel, standardised: the background of every digit
    x = jnp.asarray(images)
    _, found = collect_intermediates(vit, x, names=("attention_weights",))
    weights = {path[:-1]: w for path, w in found.items()}
    last = weights[max(weights, key=lambda path: path[1])]  # ("blocks", L - 1, ...) [B, N, T, T]
    raw = np.asarray(last).mean(axis=1)[:, 0, 1:]  # the class token's row over the patches
    rollout = viz.attention_rollout(weights)[:, 0, 1:]

    def p_correct(x):  # [B, H, W, C] -> [B]
        probabilities = jax.nn.softmax(vit(x), axis=-1)
        return jnp.take_along_axis(probabilities, jnp.asarray(labels)[:, None], axis=1)[:, 0]

    base = p_correct(x)
    occlusion = np.empty((len(images), rows * cols))
    for r in range(rows):
        for c in range(cols):
            blanked = x.at[:, r * p : (r + 1) * p, c * p : (c + 1) * p, :].set(blank)
            occlusion[:, r * cols + c] = np.asarray(base - p_correct(blanked))
    gradient = jax.grad(lambda x: p_correct(x).sum())(x)
    per_pixel = np.asarray(gradient * (x - blank)).sum(axis=-1)  # [B, H, W]
    grad = per_pixel.reshape(len(images), rows, p, cols, p).sum(axis=(2, 4))
    return {
        "raw": raw,
        "rollout": rollout,
        "occlusion": occlusion,
        "grad": grad.reshape(len(images), -1),
    }


def attribution_rows(vit: ViT, images, labels, seed: int) -> tuple[list[dict], dict]:
    """One row per test image and method (Spearman with each reference), and the importances."""
    importances = patch_importances(vit, images, labels)
    rows = []
    for image_id in range(len(images)):
        for method in METHODS:
            row = {"part": "attribution", "seed": seed, "image_id": image_id, "method": method}
            for reference in REFERENCES:
                rho = stats.spearmanr(
                    importances[method][image_id], importances[reference][image_id]
                ).statistic
                row[f"spearman_{reference}"] = float(rho)
            if all(np.isfinite(row[f"spearman_{r}"]) for r in REFERENCES):
                rows.append(row)  # a constant importance has no rank correlation: left out
    return rows, importances


def train_row(model_name: str, n_all: bool, train_set, validation, test, seed: int, mode: str,
              pad_to: int):  # fmt: skip
    """(the results row of one model on one subset, the trained network or None)."""
    timer = report.Timer()
    model, info = None, {}
    if model_name == "logistic regression":
        acc, params = logistic_regression(train_set, test), 64 * 10 + 10
    else:
        model, info = digits_training.train(
            build(model_name, seed),
            train_set,
            validation,
            seed=seed,
            max_steps=MAX_STEPS[mode],
            eval_every=EVAL_EVERY[mode],
            patience=PATIENCE[mode],
            pad_to=pad_to,
        )
        acc, params = digits_training.accuracy(model, *test), parameter_count(model)
    row = {
        "part": "accuracy",
        "model": model_name,
        "n_train": len(train_set[1]),
        "all_data": n_all,
        "seed": seed,
        "test_acc": acc,
        "params": params,
        **info,
        "train_s": timer.seconds,
    }
    print(
        f"s11 {model_name:20s} n={row['n_train']:4d} seed={seed}: test {acc:.3f} "
        f"({info.get('steps', 0)} steps, best at {info.get('best_step', 0)}, "
        f"{timer.seconds:.0f} s)",
        flush=True,
    )
    return row, model


def measure(mode: str, seeds: int) -> tuple[list[dict], dict]:
    """(results rows, seed 0's importances for the first SHOWN test images)."""
    data = digits_training.load_splits(DATA_CONFIG[mode])
    (x, y), validation, test = data["train"], data["validation"], data["test"]
    rows, shown = [], {}
    for seed in range(seeds):
        order = digits_training.stratified_order(y, seed)
        for n in N_TRAIN[mode]:
            subset = order[: n or len(order)]
            for model_name in MODELS:
                row, model = train_row(
                    model_name, n is None, (x[subset], y[subset]), validation, test, seed, mode,
                    len(order),
                )  # fmt: skip
                rows.append(row)
                if model_name == "ViT" and n is None:
                    all_data_vit = model
        attributions, importances = attribution_rows(all_data_vit, *test, seed)
        rows += attributions
        if seed == 0:
            shown = {k: v[:SHOWN] for k, v in importances.items()}
            shown |= {"images": test[0][:SHOWN], "labels": test[1][:SHOWN]}
            shown["grid"] = all_data_vit.config.grid
    return rows, shown


def _accuracies(rows: list[dict], model: str, n_train: int) -> list[float]:
    """Test accuracy per seed, in seed order."""
    group = sorted(
        (
            r
            for r in rows
            if r["part"] == "accuracy" and r["model"] == model and r["n_train"] == n_train
        ),
        key=lambda r: r["seed"],
    )
    return [r["test_acc"] for r in group]


def _sizes(rows: list[dict]) -> list[int]:
    return sorted({r["n_train"] for r in rows if r["part"] == "accuracy"})


def _mean_spearman(rows: list[dict], method: str, reference: str) -> list[float]:
    """Per seed (in order), the mean over test images of Spearman(method, reference)."""
    seeds = sorted({r["seed"] for r in rows if r["part"] == "attribution"})
    return [
        float(
            np.mean(
                [
                    r[f"spearman_{reference}"]
                    for r in rows
                    if r["part"] == "attribution" and r["seed"] == s and r["method"] == method
                ]
            )
        )
        for s in seeds
    ]


def _seeds_ahead(rows: list[dict], n_train: int) -> int:
    """The number of seeds in which the CNN beats the ViT at `n_train`."""
    cnn, vit = _accuracies(rows, "CNN", n_train), _accuracies(rows, "ViT", n_train)
    return int(np.sum(np.subtract(cnn, vit) > 0))


def gaps(rows: list[dict]) -> list[dict]:
    """CNN − ViT per training-set size: the paired difference over seeds."""
    out = []
    for n in _sizes(rows):
        d = report.paired_difference(_accuracies(rows, "CNN", n), _accuracies(rows, "ViT", n))
        out.append(
            {
                "n_train": n,
                "CNN - ViT (pp)": 100 * d.mean,
                "95% CI (pp)": f"[{100 * d.low:.1f}, {100 * d.high:.1f}]" if d.n > 1 else "n = 1",
                "CNN ahead in": f"{_seeds_ahead(rows, n)}/{d.n}",
                "difference": d,
            }
        )
    return out


def claims(rows: list[dict]) -> list[dict]:
    """The verdict of each part: (a) the small-data deficit, (b) rollout over raw attention."""
    by_n = {g["n_train"]: g for g in gaps(rows)}
    small = [n for n in SMALL if n in by_n]
    everything = max(by_n)
    checks = {
        f"CNN > ViT at n = {n} in every seed": min(
            np.subtract(_accuracies(rows, "CNN", n), _accuracies(rows, "ViT", n))
        )
        > 0
        for n in small
    }
    checks[f"gap at n = {small[-1]} > gap at all data (n = {everything})"] = (
        by_n[small[-1]]["difference"].mean > by_n[everything]["difference"].mean
    )
    reversed_ = [
        n for n in small if by_n[n]["difference"].mean < 0 and by_n[n]["difference"].high < 0
    ]
    if small and all(checks.values()):
        verdict_a = report.REPLICATED
    elif reversed_:
        verdict_a = report.NOT_REPLICATED
    else:
        verdict_a = report.INCONCLUSIVE
    rollout_gain = report.paired_difference(
        _mean_spearman(rows, "rollout", "occlusion"), _mean_spearman(rows, "raw", "occlusion")
    )
    return [
        {
            "claim": "(a) CNN beats ViT with little data",
            "checks": ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in checks.items()),
            "verdict": verdict_a,
        },
        {
            "claim": "(b) rollout agrees with occlusion better than raw attention",
            "checks": f"mean rho(rollout) - rho(raw) = {rollout_gain.mean:+.3f}, "
            f"{rollout_gain.agreeing}/{rollout_gain.n} seeds agree in sign",
            "verdict": report.verdict_from_difference(rollout_gain, 0.0),
        },
    ]


def verdict(rows: list[dict]) -> str:
    verdicts = [c["verdict"] for c in claims(rows)]
    if all(v == report.REPLICATED for v in verdicts):
        return report.REPLICATED
    if report.NOT_REPLICATED in verdicts:
        return report.NOT_REPLICATED
    return report.INCONCLUSIVE


def accuracy_table(rows: list[dict]) -> list[dict]:
    return [
        {"n_train": n}
        | {model: report.mean_std(_accuracies(rows, model, n)) for model in MODELS}
        | {
            "ViT steps (best)": report.mean_std(
                r["best_step"]
                for r in rows
                if r["part"] == "accuracy" and r["model"] == "ViT" and r["n_train"] == n
            )
        }
        for n in _sizes(rows)
    ]


def attribution_table(rows: list[dict]) -> list[dict]:
    out = []
    for method in METHODS:
        row = {"method": method}
        for reference in REFERENCES:
            per_image = [
                r[f"spearman_{reference}"]
                for r in rows
                if r["part"] == "attribution" and r["method"] == method
            ]
            row[f"rho with {reference} (images)"] = report.mean_std(per_image)
            row[f"rho with {reference} (seed means)"] = report.mean_std(
                _mean_spearman(rows, method, reference)
            )
        out.append(row)
    return out


def plot(rows: list[dict], shown: dict):
    figure, axes = report.new_mosaic(
        [["accuracy", "accuracy", "spearman", "spearman"], [f"r{i}" for i in range(SHOWN)]],
        width=12,
        height=7,
    )
    ax = axes["accuracy"]
    sizes = _sizes(rows)
    for model, style in zip(MODELS, ("o-", "s-", "^--"), strict=True):
        ax.plot(sizes, [np.mean(_accuracies(rows, model, n)) for n in sizes], style, label=model)
        for n in sizes:
            ax.scatter([n] * len(_accuracies(rows, model, n)), _accuracies(rows, model, n), s=6,
                       color="grey")  # fmt: skip
    ax.set(xscale="log", xlabel="training images n (log)", ylabel="test accuracy")
    ax.set_xticks(sizes, [str(n) for n in sizes])
    ax.minorticks_off()
    ax.set_title("digits: accuracy vs training-set size (dots: seeds)")
    ax.legend(fontsize=8)
    ax = axes["spearman"]
    for k, reference in enumerate(REFERENCES):
        for j, method in enumerate(METHODS):
            means = _mean_spearman(rows, method, reference)
            x = 3 * k + j
            ax.bar(x, np.mean(means), color=("tab:grey", "tab:blue")[j],
                   label=method if k == 0 else None)  # fmt: skip
            ax.scatter([x] * len(means), means, color="black", s=8, zorder=3)
    ax.set_xticks([0.5, 3.5], ["vs occlusion", "vs gradient x input"])
    ax.set(ylabel="Spearman rho (mean over test images)")
    ax.set_title("all-data ViT: which attention map ranks the patches (dots: seeds)")
    ax.axhline(0, color="black", lw=0.6)
    ax.legend(fontsize=8)
    for i in range(SHOWN):
        picture = viz.plot_rollout_on_image(
            shown["images"][i], shown["rollout"][i], shown["grid"],
            title=f"rollout, test digit {shown['labels'][i]}",
        )  # fmt: skip
        report.show_figure(axes[f"r{i}"], picture)
    figure.suptitle("S11: ViT vs CNN with little data; attention rollout vs raw attention")
    return figure


def summary(rows: list[dict], seeds: int, mode: str) -> str:
    gap_rows = [{k: v for k, v in g.items() if k != "difference"} for g in gaps(rows)]
    return "\n".join(
        [
            "# S11 · ViT vs CNN with little data; attention rollout vs raw attention",
            "",
            f"scikit-learn digits (`attn.data`, config {DATA_CONFIG[mode]!r}); nested stratified "
            f"subsets; at most {MAX_STEPS[mode]} AdamW steps with early stopping on validation "
            f"(patience {PATIENCE[mode]}); test accuracy, mean ± std over {seeds} paired seed(s). "
            "Logistic regression: scikit-learn, L2, C = 1.",
            "",
            report.markdown_table(accuracy_table(rows), ["n_train", *MODELS, "ViT steps (best)"]),
            "",
            report.markdown_table(
                gap_rows, ["n_train", "CNN - ViT (pp)", "95% CI (pp)", "CNN ahead in"]
            ),
            "",
            "Patch importances of the all-data ViT on the test images (16 patches each): "
            "Spearman rho of the class token's last-layer raw attention and of its rollout with "
            "occlusion and with gradient x input.",
            "",
            report.markdown_table(
                attribution_table(rows),
                [
                    "method",
                    *[f"rho with {r} ({w})" for r in REFERENCES for w in ("images", "seed means")],
                ],
            ),
            "",
            "| anchor | Dosovitskiy et al. 2021 §4.3, Fig. 3/4: without pre-training on large "
            "data ViT is 'a few percentage points below ResNets of comparable size'. Abnar & "
            "Zuidema 2020 Table 1 (blank-out): L6 raw 0.29 ± 0.39, rollout 0.71 ± 0.24; L2 raw "
            "0.10 ± 0.43, rollout 0.38 ± 0.27; Table 2 (gradients, L6): raw 0.46, rollout 0.54 |",
            "|---|---|",
            "",
            report.markdown_table(claims(rows), ["claim", "checks", "verdict"]),
            "",
            f"**Verdict: {verdict(rows)}**",
        ]
    )


def run(argv: list[str] | None = None) -> str:
    args = report.parse_args(__doc__.splitlines()[0], argv)
    seeds = args.seeds if args.mode == "full" else 1  # smoke: compiling dominates; one seed
    timer = report.Timer()
    rows, shown = measure(args.mode, seeds)
    trained = [r for r in rows if r["part"] == "accuracy" and "steps" in r]
    report.write_outputs(
        args.out,
        rows=rows,
        summary=summary(rows, seeds, args.mode),
        figure=plot(rows, shown),
        meta={
            "study": "s11_vit_vs_cnn",
            "mode": args.mode,
            "seeds": list(range(seeds)),
            "n_train": _sizes(rows),
            "data_config": DATA_CONFIG[args.mode],
            "max_steps": MAX_STEPS[args.mode],
            "eval_every": EVAL_EVERY[args.mode],
            "patience": PATIENCE[args.mode],
            "steps_per_s": sum(r["steps"] for r in trained) / sum(r["train_s"] for r in trained),
            "wall_s": timer.seconds,
        },
    )
    return verdict(rows)


if __name__ == "__main__":
    print(run(sys.argv[1:]))
