"""S09 · Hard attention: the gradient variance of its estimators (part b).

Claim (the lecture notes, seed 000): soft attention is differentiable; hard attention selects one
position and must be trained through an estimator — straight-through, Gumbel-softmax or the
score function (REINFORCE). Williams 1992 and Jang et al. 2017: REINFORCE is unbiased with high
variance, a baseline reduces it, and the Gumbel-softmax relaxation trades bias for low variance.

Anchor: no published number for this task. Internal anchor, the attn README (marker task, S = 7,
96 draws): straight-through 0.0024, Gumbel (τ = 0.5) 0.0026, REINFORCE 0.017, REINFORCE + baseline
0.0025.

Task (the marker selection of `tests/layers/hard_attention_test.py`): a batch of 32 queries (all
ones, width 8) and S context slots of random payload, one of them marked by 3.0 in its last
feature; the query must select the marked slot, whose payload is the target; loss = squared error
of the attended slot. One `attn.layers.HardMultiHeadAttention` (2 heads) at initialisation, fixed
per seed with its batch. `attn.kernels.hard_training.gradient_variance` gives, per estimator, the
variance over 256 draws (smoke: 32) of the single-draw gradient of the query and key projections,
averaged over their entries, for S ∈ {4, 16, 64, 256} (smoke: 4, one seed). Estimators: the
sampling ones of `attn.kernels.hard.ESTIMATORS` — straight_through_sample, gumbel_relaxed and
gumbel_straight_through (τ = 0.5), reinforce — and reinforce with a baseline b, the mean reward at
these parameters over 64 separate draws (what the moving average of `reinforce_loss` converges to
on a fixed batch). straight_through_argmax draws nothing: its gradient is the same at every draw
(variance 0), so it is left out. 3 seeds (init and batch), paired.

Expected (the studies brief): REINFORCE without a baseline has ≥ 3× the variance of
straight-through (sample) at every S, growing with S; the baseline cuts it ≥ 2×.

Pass: for each S, over paired seeds, log10 Var(reinforce) − log10 Var(straight_through_sample) ≥
log10 3 and log10 Var(reinforce) − log10 Var(reinforce + baseline) ≥ log10 2 by the paired rule of
`report.verdict_from_difference` (every seed agrees and the mean clears the threshold). REPLICATED
when both hold at every S; NOT REPLICATED when one is reversed with an interval excluding 0;
INCONCLUSIVE otherwise. Growth with S is reported, not gated.

Not in this module: part (a), soft vs hard `Seq2SeqRNN` trained end to end, which is
`s09_hard_training`.
"""

from __future__ import annotations

import itertools
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from attn.kernels.hard_training import gradient_variance, reinforce_loss
from attn.layers import HardMultiHeadAttention, collect_intermediates
from experiments.studies import report

BATCH = 32
WIDTH = 8
HEADS = 2
MARKER = 3.0
TEMPERATURE = 0.5
SLOTS = {"smoke": (4,), "full": (4, 16, 64, 256)}
DRAWS = {"smoke": 32, "full": 256}
BASELINE_DRAWS = 64
ESTIMATORS = ("straight_through_sample", "gumbel_relaxed", "gumbel_straight_through", "reinforce")
WITH_BASELINE = "reinforce + baseline"
CONDITIONS = (*ESTIMATORS, WITH_BASELINE)
CLAIMS = {  # (treatment, control, threshold on log10 Var(treatment) - log10 Var(control))
    "REINFORCE >= 3x straight-through": ("reinforce", "straight_through_sample", np.log10(3)),
    "baseline cuts REINFORCE >= 2x": ("reinforce", WITH_BASELINE, np.log10(2)),
}


def marker_batch(key: jax.Array, slots: int):
    """query [B, 1, D] (ones), context [B, S, D] (payload; 3.0 in the last feature of one slot),
    target [B, 1, D] (the marked slot)."""
    payload_key, marker_key = jax.random.split(key)
    context = jax.random.normal(payload_key, (BATCH, slots, WIDTH)).at[:, :, -1].set(0.0)
    marker = jax.random.randint(marker_key, (BATCH,), 0, slots)
    context = context.at[jnp.arange(BATCH), marker, -1].set(MARKER)
    target = context[jnp.arange(BATCH), marker][:, None, :]
    return jnp.ones((BATCH, 1, WIDTH)), context, target


def per_example_loss(layer, batch, key):
    """(squared error of the attended slot [B], the `HardSelection` of the draw)."""
    query, context, target = batch
    out, found = collect_intermediates(
        layer,
        query,
        context,
        deterministic=False,
        key=key,
        temperature=TEMPERATURE,
        names=("selection",),
    )
    return jnp.mean((out - target) ** 2, axis=(1, 2)), found[("selection",)]


def build(estimator: str, seed: int):
    """(graphdef, params, rest) of the layer at init: the same parameters for every estimator."""
    layer = HardMultiHeadAttention(HEADS, WIDTH, estimator=estimator, rngs=nnx.Rngs(seed))
    return nnx.split(layer, nnx.Param, ...)


def mean_reward(batch, seed: int) -> float:
    """E[−loss] over BASELINE_DRAWS selections at the init of `seed` (keys of their own)."""
    graphdef, params, rest = build("reinforce", seed)
    keys = jax.random.split(jax.random.key(20_000 + seed), BASELINE_DRAWS)
    losses = jax.vmap(lambda k: per_example_loss(nnx.merge(graphdef, params, rest), batch, k)[0])(
        keys
    )
    return float(-jnp.mean(losses))


def gradient_of_scores(estimator: str, batch, seed: int, baseline: float):
    """gradient(name, key) -> the gradients of the query and key projections for one draw."""
    graphdef, params, rest = build(estimator, seed)

    def loss(params, key):
        per_example, selection = per_example_loss(nnx.merge(graphdef, params, rest), batch, key)
        total = jnp.mean(per_example)
        if estimator == "reinforce":
            total = total + reinforce_loss(selection.log_prob, -per_example, baseline)[0]
        return total

    def gradient(name, key):
        grads = jax.grad(loss)(params, key)
        return {"query": grads["query"], "key": grads["key"]}

    return gradient


def measure(mode: str, seeds: int) -> list[dict]:
    rows = []
    for seed in range(seeds):
        for slots in SLOTS[mode]:
            batch = marker_batch(jax.random.key(seed), slots)
            reward = mean_reward(batch, seed)
            draw_key = jax.random.key(10_000 + seed)  # the same draws for every estimator
            for condition in CONDITIONS:
                estimator = "reinforce" if condition == WITH_BASELINE else condition
                baseline = reward if condition == WITH_BASELINE else 0.0
                gradient = gradient_of_scores(estimator, batch, seed, baseline)
                variance = gradient_variance(
                    gradient, draw_key, estimators=[estimator], num_samples=DRAWS[mode]
                )[estimator]
                rows.append(
                    {
                        "S": slots,
                        "estimator": condition,
                        "baseline": baseline if condition == WITH_BASELINE else "",
                        "seed": seed,
                        "grad_var": variance,
                        "draws": DRAWS[mode],
                    }
                )
                print(f"s09 S={slots:3d} seed={seed} {condition:24s} {variance:.3g}", flush=True)
    return rows


def _log_var(rows: list[dict], condition: str, slots: int) -> list[float]:
    """log10 of the variance per seed, in seed order."""
    group = sorted(
        (r for r in rows if r["estimator"] == condition and r["S"] == slots),
        key=lambda r: r["seed"],
    )
    return [float(np.log10(r["grad_var"])) for r in group]


def differences(rows: list[dict]) -> list[dict]:
    """Per claim and S: the paired log10 ratio, its interval and its verdict."""
    out = []
    for claim, (treatment, control, threshold) in CLAIMS.items():
        for slots in sorted({r["S"] for r in rows}):
            d = report.paired_difference(
                _log_var(rows, treatment, slots), _log_var(rows, control, slots)
            )
            out.append(
                {
                    "claim": claim,
                    "S": slots,
                    "ratio (geometric mean)": float(10**d.mean),
                    "log10 ratio": d.mean,
                    "95% CI": f"[{d.low:.2f}, {d.high:.2f}]" if d.n > 1 else "n = 1",
                    "seeds agreeing": f"{d.agreeing}/{d.n}",
                    "verdict": report.verdict_from_difference(d, threshold),
                }
            )
    return out


def verdict(rows: list[dict]) -> str:
    verdicts = [d["verdict"] for d in differences(rows)]
    if verdicts and all(v == report.REPLICATED for v in verdicts):
        return report.REPLICATED
    if report.NOT_REPLICATED in verdicts:
        return report.NOT_REPLICATED
    return report.INCONCLUSIVE


def table(rows: list[dict]) -> list[dict]:
    slots = sorted({r["S"] for r in rows})
    return [
        {"estimator": condition}
        | {
            f"S={s}": report.mean_std(
                r["grad_var"] for r in rows if r["estimator"] == condition and r["S"] == s
            )
            for s in slots
        }
        for condition in CONDITIONS
    ]


def plot(rows: list[dict]):
    figure, (ax,) = report.new_figure(7, 3.8)
    slots = sorted({r["S"] for r in rows})
    for condition, style in zip(CONDITIONS, ("o-", "s-", "^-", "d-", "d--"), strict=True):
        means = [10 ** np.mean(_log_var(rows, condition, s)) for s in slots]
        ax.plot(slots, means, style, label=condition)
    ax.set(xscale="log", yscale="log", xlabel="candidate positions S")
    ax.set_ylabel("gradient variance (geometric mean)")
    ax.set_xticks(slots, [str(s) for s in slots])
    ax.set_title("S09b: variance of single-draw gradients of the scores, marker task")
    ax.legend(fontsize=8)
    return figure


def summary(rows: list[dict], seeds: int) -> str:
    slots = sorted({r["S"] for r in rows})
    growth = [np.mean(_log_var(rows, "reinforce", s)) for s in slots]
    if len(slots) > 1:
        grows = all(b > a for a, b in itertools.pairwise(growth))
        growth_line = (
            f"REINFORCE's variance {'grows' if grows else 'does not grow'} with S at every step "
            f"(geometric means {', '.join(f'{10**g:.3g}' for g in growth)} at S = {slots}); "
            "reported, not part of the verdict."
        )
    else:
        growth_line = f"One S only ({slots[0]}): growth with S is not measured."
    return "\n".join(
        [
            "# S09 · Gradient variance of the hard-attention estimators (part b)",
            "",
            f"Marker task, batch {BATCH}, width {WIDTH}, {HEADS} heads at initialisation; "
            f"{rows[0]['draws']} draws per estimator; Gumbel τ = {TEMPERATURE}; mean ± std over "
            f"{seeds} seed(s).",
            "",
            report.markdown_table(table(rows), ["estimator", *[f"S={s}" for s in slots]]),
            "",
            report.markdown_table(
                differences(rows),
                [
                    "claim",
                    "S",
                    "ratio (geometric mean)",
                    "log10 ratio",
                    "95% CI",
                    "seeds agreeing",
                    "verdict",
                ],
            ),
            "",
            growth_line,
            "",
            "| anchor | Williams 1992; Jang et al. 2017: REINFORCE unbiased, high variance; a "
            "baseline reduces it. attn README (S = 7, 96 draws): straight_through_sample 0.0024, "
            "gumbel_relaxed 0.0026, reinforce 0.017, reinforce + baseline 0.0025 |",
            "|---|---|",
            "",
            f"**Verdict: {verdict(rows)}**",
            "",
            "Not measured here: part (a), soft vs hard attention trained end to end "
            "(`s09_hard_training`).",
        ]
    )


def run(argv: list[str] | None = None) -> str:
    args = report.parse_args(__doc__.splitlines()[0], argv)
    seeds = args.seeds if args.mode == "full" else 1  # smoke: compiling dominates; one seed
    timer = report.Timer()
    rows = measure(args.mode, seeds)
    report.write_outputs(
        args.out,
        rows=rows,
        summary=summary(rows, seeds),
        figure=plot(rows),
        meta={
            "study": "s09_estimators",
            "mode": args.mode,
            "seeds": list(range(seeds)),
            "slots": SLOTS[args.mode],
            "draws": DRAWS[args.mode],
            "temperature": TEMPERATURE,
            "wall_s": timer.seconds,
        },
    )
    return verdict(rows)


if __name__ == "__main__":
    print(run(sys.argv[1:]))
