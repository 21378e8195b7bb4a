"""S07 · Positional encodings: permutation equivariance, the sinusoidal rotation (part c).

Claim (the lecture notes, seed 000; Vaswani et al. 2017 §3.5): self-attention by itself is blind
to order — permuting its inputs permutes its outputs, f(Px) = P f(x) — so order must be supplied,
by added positions or by a causal mask (Haviv et al. 2022: causal models without positions still
learn position through the mask). The sinusoidal code is a rotation: for every shift k there is one
orthogonal R(k) with PE(p + k) = R(k) PE(p) at every position p, so "attend k positions back" is a
linear function of the code, the property Vaswani et al. chose it for.

Anchor: Vaswani et al. 2017 §3.5 ("for any fixed offset k, PE_{pos+k} can be represented as a
linear function of PE_pos"); the equivariance is exact algebra, not a published number.

Protocol: x ~ N(0, I) [1, T = 32, D = 64], a random permutation P of the 32 positions, and one
`attn.layers.MultiHeadAttention` (4 heads, fresh weights per seed). The error is
‖f(Px) − P f(x)‖∞ for three layers f: no positions, f(x) = MHA(x); sinusoidal positions,
f(x) = MHA(x + PE) with `attn.layers.SinusoidalPositions` (the positions stay in place while the
tokens move); and no positions with a causal mask, f(x) = MHA(x, is_causal=True). The rotation:
‖PE(p + k) − R(k) PE(p)‖∞ over p = 0 … 63, D = 64, for k ∈ {1, 8, 64}, with
`attn.kernels.positions.sinusoidal_encoding` and `sinusoidal_rotation`. Everything in float32.

Expected and pass (the studies brief): no positions, error ≤ 1e-5; sinusoidal and causal, error
> 1e-2; rotation, error ≤ 1e-5 — in every seed. Smoke and full compute the same numbers (full
with more seeds).

Not in this module: parts (a) (sinusoidal vs learned vs no positions in range) and (b)
(extrapolation past the training length), which need trained models: `s07_positions_training`.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
from flax import nnx

from attn.kernels.positions import sinusoidal_encoding, sinusoidal_rotation
from attn.layers import MultiHeadAttention, SinusoidalPositions
from experiments.studies import report

LENGTH = 32
WIDTH = 64
HEADS = 4
ROTATION_LENGTH = 64
SHIFTS = (1, 8, 64)
EXACT = 1e-5  # float32 round-off: an exact identity stays below this
BROKEN = 1e-2  # a broken symmetry is far above this
CASES = {  # case -> the claimed outcome
    "no positions": "equivariant",
    "sinusoidal positions": "broken",
    "causal mask, no positions": "broken",
}


def layer(case: str, seed: int):
    """The layer f: [1, T, D] -> [1, T, D] of `case`, with fresh weights from `seed`."""
    mha = MultiHeadAttention(HEADS, WIDTH, rngs=nnx.Rngs(seed))
    if case == "no positions":
        return lambda x: mha(x)
    if case == "sinusoidal positions":
        positions = SinusoidalPositions(None, WIDTH)
        return lambda x: mha(x + positions(x.shape[1]))
    if case == "causal mask, no positions":
        return lambda x: mha(x, is_causal=True)
    raise ValueError(f"layer: unknown case {case!r}; expected one of {list(CASES)}")


def equivariance_error(case: str, seed: int) -> float:
    """‖f(Px) − P f(x)‖∞ for x ~ N(0, I) [1, T, D] and a random permutation P of the T positions."""
    kx, kp = jax.random.split(jax.random.key(1000 + seed))
    x = jax.random.normal(kx, (1, LENGTH, WIDTH))
    perm = jax.random.permutation(kp, LENGTH)
    f = layer(case, seed)
    return float(jnp.max(jnp.abs(f(x[:, perm]) - f(x)[:, perm])))


def rotation_error(k: int) -> float:
    """‖PE(p + k) − R(k) PE(p)‖∞ over p = 0 … ROTATION_LENGTH − 1."""
    pe = sinusoidal_encoding(ROTATION_LENGTH + k, WIDTH)  # [T + k, D]
    shifted = pe[:ROTATION_LENGTH] @ sinusoidal_rotation(k, WIDTH).T  # rows R(k) PE(p)
    return float(jnp.max(jnp.abs(pe[k:] - shifted)))


def measure(mode: str, seeds: int) -> list[dict]:
    del mode  # analytic: smoke and full compute the same numbers
    rows = []
    for seed in range(seeds):
        for case, claim in CASES.items():
            rows.append(
                {
                    "part": "equivariance",
                    "case": case,
                    "k": "",
                    "seed": seed,
                    "max_err": equivariance_error(case, seed),
                    "claim": claim,
                }
            )
    for k in SHIFTS:  # deterministic: one row per shift, not per seed
        rows.append(
            {
                "part": "rotation",
                "case": f"PE(p+{k}) = R({k}) PE(p)",
                "k": k,
                "seed": "",
                "max_err": rotation_error(k),
                "claim": "equivariant",
            }
        )
    return rows


def checks(rows: list[dict]) -> dict[str, bool]:
    def group(part: str, claim: str, case: str | None = None) -> list[float]:
        return [
            r["max_err"]
            for r in rows
            if r["part"] == part and r["claim"] == claim and case in (None, r["case"])
        ]

    exact = group("equivariance", "equivariant")
    sinusoidal = group("equivariance", "broken", "sinusoidal positions")
    causal = group("equivariance", "broken", "causal mask, no positions")
    rotation = group("rotation", "equivariant")
    return {
        f"no positions: ‖f(Px) - P f(x)‖∞ ≤ {EXACT:g}": bool(exact)
        and all(e <= EXACT for e in exact),
        f"sinusoidal positions: error > {BROKEN:g}": bool(sinusoidal)
        and all(e > BROKEN for e in sinusoidal),
        f"causal mask: error > {BROKEN:g}": bool(causal) and all(e > BROKEN for e in causal),
        f"rotation: ‖PE(p+k) - R(k) PE(p)‖∞ ≤ {EXACT:g}": bool(rotation)
        and all(e <= EXACT for e in rotation),
    }


def verdict(rows: list[dict]) -> str:
    return report.verdict_from_checks(checks(rows))


def table(rows: list[dict]) -> list[dict]:
    """Worst and typical error per case over seeds."""
    cases = list(dict.fromkeys(r["case"] for r in rows))
    out = []
    for case in cases:
        group = [r for r in rows if r["case"] == case]
        errors = [r["max_err"] for r in group]
        out.append(
            {
                "case": case,
                "claim": group[0]["claim"],
                "max_err (mean ± std)": report.mean_std(errors),
                "worst": float(max(errors)),
                "best": float(min(errors)),
            }
        )
    return out


def plot(rows: list[dict]):
    figure, (ax,) = report.new_figure(8, 3.6)
    cases = list(dict.fromkeys(r["case"] for r in rows))
    floor = 1e-12  # an exact 0 is drawn at the bottom of the log axis
    for i, case in enumerate(cases):
        group = [r for r in rows if r["case"] == case]
        errors = [max(r["max_err"], floor) for r in group]
        colour = "tab:green" if group[0]["claim"] == "equivariant" else "tab:red"
        ax.scatter([i] * len(errors), errors, color=colour, zorder=3)
    ax.axhline(EXACT, color="tab:green", ls="--", lw=0.8, label=f"exact below {EXACT:g}")
    ax.axhline(BROKEN, color="tab:red", ls="--", lw=0.8, label=f"broken above {BROKEN:g}")
    ax.set_xticks(range(len(cases)), [c.replace(", ", ",\n") for c in cases], fontsize=7)
    ax.set(yscale="log", ylabel="max |error| (float32)")
    ax.set_title("S07c: ‖f(Px) - P f(x)‖∞ of self-attention, and the sinusoidal rotation")
    ax.legend(fontsize=8)
    return figure


def summary(rows: list[dict], seeds: int) -> str:
    return "\n".join(
        [
            "# S07 · Positional encodings (part c, analytic)",
            "",
            f"One `MultiHeadAttention` ({HEADS} heads, D = {WIDTH}) on x ~ N(0, I), T = {LENGTH}, "
            f"a random permutation per seed; {seeds} seed(s). Rotation over p = 0 … "
            f"{ROTATION_LENGTH - 1}, D = {WIDTH}.",
            "",
            report.markdown_table(
                table(rows), ["case", "claim", "max_err (mean ± std)", "worst", "best"]
            ),
            "",
            "| anchor | Vaswani et al. 2017 §3.5: PE_(pos+k) is a linear function of PE_pos; "
            "without positions self-attention is permutation equivariant (exact algebra) |",
            "|---|---|",
            "",
            "Checks: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in checks(rows).items()),
            "",
            f"**Verdict: {verdict(rows)}**",
            "",
            "Not measured here: part (a), sinusoidal vs learned vs no positions on `dates`, and "
            "part (b), extrapolation past the training length; both need trained models.",
        ]
    )


def run(argv: list[str] | None = None) -> str:
    args = report.parse_args(__doc__.splitlines()[0], argv)
    timer = report.Timer()
    rows = measure(args.mode, args.seeds)
    report.write_outputs(
        args.out,
        rows=rows,
        summary=summary(rows, args.seeds),
        figure=plot(rows),
        meta={
            "study": "s07_positions",
            "mode": args.mode,
            "seeds": list(range(args.seeds)),
            "length": LENGTH,
            "width": WIDTH,
            "heads": HEADS,
            "shifts": SHIFTS,
            "wall_s": timer.seconds,
        },
    )
    return verdict(rows)


if __name__ == "__main__":
    print(run(sys.argv[1:]))
