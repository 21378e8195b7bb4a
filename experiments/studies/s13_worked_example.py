"""S13 · The worked example of the lecture notes (seed 003, Problem 1), computed by `attn`.

Claim: one-head scaled-dot self-attention with W_Q = W_K = W_V (no feed-forward layer, no
residual) reads "<START> Awful plot and actors. The movie is" as negative:

    X = embeddings + p_t,  p_t = [0, 0, t − 1],   Q = K = V = X W,
    p_8 = softmax(q_8 Kᵀ / √2),   z_8 = p_8 V,   logits = W_yh z_8

Anchor: the notes' solution, p_8 = [0.101, 0.136, 0.112, 0.118, 0.124, 0.130, 0.136, 0.143],
z_8 = [-0.028, 0.436], logits good -0.464 / bad +0.464. The notes leave W_yh "as above" without
giving it; the solution implies the rows good = [1, −1] and bad = [−1, 1], which we assume.

Variants: unscaled dot product; no positional embeddings (then q_8 = 0 and p_8 is uniform); mean
pooling (uniform weights); and the full causal matrix, whose last row must equal the last-row-only
computation that the notes' hint suggests. Analytic: smoke and full compute the same numbers.
"""

from __future__ import annotations

import sys

import jax.numpy as jnp
import numpy as np

from attn.kernels import attention, causal_mask
from experiments.studies import report

WORDS = {  # the notes' word embeddings x_w
    "<START>": [0, 0, 0],
    "Awful": [0, -5, 0],
    "plot": [1, 0, 0],
    "and": [0, 0, 0],
    "actors.": [-1, 0, 0],
    "The": [0, 0, 0],
    "movie": [-2, 0, 0],
    "is": [0, 0, 0],
}
W = np.array([[0.1, 0.0], [0.0, -0.1], [0.0, 0.1]])  # W_Q = W_K = W_V [3, H=2]
W_YH = np.array([[1.0, -1.0], [-1.0, 1.0]])  # rows "good", "bad" (assumed, see the docstring)
LABELS = ("good", "bad")

ANCHOR_P8 = [0.101, 0.136, 0.112, 0.118, 0.124, 0.130, 0.136, 0.143]
ANCHOR_Z8 = [-0.028, 0.436]
ANCHOR_LOGITS = [-0.464, 0.464]
TOLERANCE = {"p_8": 5e-4, "z_8": 5e-4, "logits": 1e-3}  # the notes round to 3 decimals


def hidden(with_positions: bool = True) -> np.ndarray:
    """Q = K = V = (x_t + p_t) W: [T=8, H=2], float64."""
    x = np.array(list(WORDS.values()), np.float64)
    if with_positions:
        x = x + np.stack([np.zeros(8), np.zeros(8), np.arange(8)], axis=1)  # p_t = [0, 0, t-1]
    return x @ W


def last_row(h: np.ndarray, score: str) -> tuple[np.ndarray, np.ndarray]:
    """(p_8 [8], z_8 [2]) of the last token attending to all eight, through the reference kernel."""
    h = jnp.asarray(h)
    z, p = attention(h[-1:], h, h, score=score)
    return np.asarray(p[0]), np.asarray(z[0])


def variants() -> list[dict]:
    """The prediction of each variant, from its z_8."""
    h = hidden()
    rows = []
    for name, z in [
        ("scaled_dot (the notes)", last_row(h, "scaled_dot")[1]),
        ("unscaled dot", last_row(h, "dot")[1]),
        ("no positional embeddings", last_row(hidden(False), "scaled_dot")[1]),
        ("mean pooling (uniform weights)", h.mean(axis=0)),
        ("causal matrix, row 8", causal_row_8(h)),
    ]:
        logits = W_YH @ z
        rows.append(
            {
                "part": "variant",
                "variant": name,
                "logit_good": float(logits[0]),
                "logit_bad": float(logits[1]),
                "prediction": LABELS[int(np.argmax(logits))],
            }
        )
    return rows


def causal_row_8(h: np.ndarray) -> np.ndarray:
    """z_8 from the whole causal self-attention matrix of all eight tokens."""
    h = jnp.asarray(h)
    z, _ = attention(h, h, h, mask=causal_mask(8, 8), score="scaled_dot")
    return np.asarray(z[-1])


def intermediates() -> list[dict]:
    """Each quantity of the notes' solution: the notes' value, ours and the difference."""
    p8, z8 = last_row(hidden(), "scaled_dot")
    logits = W_YH @ z8
    rows = []
    for quantity, ours, anchor in [
        ("p_8", p8, ANCHOR_P8),
        ("z_8", z8, ANCHOR_Z8),
        ("logits", logits, ANCHOR_LOGITS),
    ]:
        for index, (value, seed_value) in enumerate(zip(ours, anchor, strict=True)):
            rows.append(
                {
                    "part": "intermediate",
                    "quantity": quantity,
                    "index": index,
                    "seed_value": seed_value,
                    "ours": float(value),
                    "abs_err": abs(float(value) - seed_value),
                }
            )
    return rows


def checks(rows: list[dict]) -> dict[str, bool]:
    """The pass rule: every intermediate within the notes' rounding, the causal row equal to the
    last-row computation, every variant negative."""
    result = {}
    for quantity, tolerance in TOLERANCE.items():
        errors = [r["abs_err"] for r in rows if r.get("quantity") == quantity]
        result[f"{quantity} within {tolerance:g}"] = bool(errors) and max(errors) <= tolerance
    logits = {r["variant"]: r["logit_bad"] for r in rows if r["part"] == "variant"}
    result["causal row 8 equals the last row alone"] = (
        abs(logits.get("causal matrix, row 8", np.inf) - logits.get("scaled_dot (the notes)", 0))
        <= 1e-6
    )
    predictions = [r["prediction"] for r in rows if r["part"] == "variant"]
    result["every variant predicts bad"] = bool(predictions) and all(
        p == "bad" for p in predictions
    )
    return result


def verdict(rows: list[dict]) -> str:
    return report.verdict_from_checks(checks(rows))


def plot(rows: list[dict]):
    figure, (ax,) = report.new_figure(8, 3.2)
    h = hidden()
    bars = {
        "scaled (notes)": last_row(h, "scaled_dot")[0],
        "unscaled": last_row(h, "dot")[0],
        "no positions": last_row(hidden(False), "scaled_dot")[0],
    }
    width = 0.27
    for i, (name, p) in enumerate(bars.items()):
        ax.bar(np.arange(8) + (i - 1) * width, p, width, label=name)
    ax.plot(np.arange(8), ANCHOR_P8, "k_", markersize=14, label="notes' p_8")
    ax.set_xticks(np.arange(8), list(WORDS), rotation=30)
    ax.set_ylabel("attention of 'is' (p_8)")
    ax.set_title("S13: the worked example, p_8 per variant")
    ax.legend(fontsize=8)
    return figure


def summary(rows: list[dict]) -> str:
    lines = [
        "# S13 · The worked example of seed 003 (Problem 1)",
        "",
        "Claim: one-head scaled-dot self-attention with W_Q = W_K = W_V reads the sentence as "
        "negative. W_yh rows good = [1, -1], bad = [-1, 1] are assumed (the notes omit them).",
        "",
        report.markdown_table(
            [r for r in rows if r["part"] == "intermediate"],
            ["quantity", "index", "seed_value", "ours", "abs_err"],
        ),
        "",
        report.markdown_table(
            [r for r in rows if r["part"] == "variant"],
            ["variant", "logit_good", "logit_bad", "prediction"],
        ),
        "",
        "| anchor (the notes' solution) | p_8 = [0.101 … 0.143], z_8 = [-0.028, 0.436], "
        "logits ∓0.464 |",
        "|---|---|",
        "",
        "Checks: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in checks(rows).items()),
        "",
        f"**Verdict: {verdict(rows)}**",
    ]
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> str:
    args = report.parse_args(__doc__.splitlines()[0], argv, seeds=1)
    timer = report.Timer()
    rows = intermediates() + variants()
    report.write_outputs(
        args.out,
        rows=rows,
        summary=summary(rows),
        figure=plot(rows),
        meta={"study": "s13_worked_example", "mode": args.mode, "wall_s": timer.seconds},
    )
    return verdict(rows)


if __name__ == "__main__":
    print(run(sys.argv[1:]))
