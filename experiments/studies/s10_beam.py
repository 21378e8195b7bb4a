"""S10 · Greedy vs beam search on the dates Transformer, undertrained and trained.

Claim: beam search finds more probable outputs than greedy search; narrow beams help, most of it at
k = 2, and a trained model on a deterministic task gains nothing (Koehn & Knowles 2017 §3.6: beam
search "only improves translation quality for narrow beams").

Anchors: Sutskever et al. 2014, Table 1: 5-LSTM ensemble, beam 1 33.00 → beam 2 34.50 → beam 12
34.81 BLEU ("beam of size 2 provides most of the benefits"). Britz et al. 2017, beam table: B1
20.66 → B3 21.55 → B10 21.57 → B100 21.10; B10 with length penalty 1.0 21.80.

Protocol: the dates Transformer trained exactly as `make train` does (`experiments/configs/dates.py`
through `attn.training.loop.train_and_evaluate`; 1200 steps, batch 64) with `config.seed` = the
study's seed, keeping the checkpoints of steps 200, 400 and 1200 (the config's docstring measured
83% at 400 and 99.9% at 1200). Each checkpoint decodes the first 500 of the 1,000 validation dates
(days never seen in training; 500 keeps the run within its budget on this machine) with
`attn.decoding.greedy` and with `attn.decoding.beam_search`, k ∈ {1, 2, 4, 8, 16},
length penalty α ∈ {0, 0.6, 1.0}. Per (step, seed, k, α): exact match, the mean log p(y | x) of the
output (teacher forced through the model, EOS included), the output/target length ratio, the share
of dates where beam's output is more probable than greedy's (`search_gain`) or less probable
(`search_loss`), and the share where beam is wrong but greedy right (`model_error`).

A caveat on the brief's invariant "beam's log p ≥ greedy's always": it holds for k = 1 (with an
EOS, beam search also follows the best continuation past EOS and keeps the better one) and by
construction at α = 0 only when greedy's prefix survives every pruning. A k > 1 beam may prune
greedy's path for K prefixes that end up less probable, so `search_loss` is measured, not assumed
to be 0 (the smoke test checks the k = 1 invariants on random weights).

Expected (the studies brief): at step 400, k = 2–4 gives +1–5 pp exact match over greedy, most of it
at k = 2; trained, |beam − greedy| ≤ 0.2 pp. Dates have a fixed output length, so α has no effect
to speak of here.

Pass: EM(k = 2, α = 0) − EM(greedy) ≥ 0 at the step-400 checkpoint in every seed with a positive
mean (REPLICATED); NOT REPLICATED when the mean is negative and its 95% t interval excludes 0;
otherwise INCONCLUSIVE.
"""

from __future__ import annotations

import functools
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from matplotlib.ticker import NullLocator

import attn.data as attn_data
from attn import decoding
from attn.data.batches import shift_right
from attn.training.checkpoint import Checkpointer
from attn.training.config import dataset_options, model_config
from attn.training.loop import train_and_evaluate
from attn.training.metrics import truncate_at_eos
from attn.training.optimizers import make_optimizer
from attn.training.steps import create_train_state
from attn.training.tasks import LossOptions, task_class
from experiments.configs import dates
from experiments.studies import report

CHECKPOINTS = {"smoke": (1, 2), "full": (200, 400, 1200)}
BEAMS = {"smoke": (1, 2, 4, 8, 16), "full": (1, 2, 4, 8, 16)}
ALPHAS = (0.0, 0.6, 1.0)
VERDICT_STEP = {"smoke": 1, "full": 400}
EVAL_BATCH = {"smoke": 4, "full": 100}
EVAL_BATCHES = {"smoke": 1, "full": 5}  # 5 × 100: the first 500 of the 1,000 validation dates
TOLERANCE = 1e-3  # log p differences below this are ties (float32 sums of ~11 terms)


def training_config(mode: str, seed: int):
    """`make train`'s config with the study's seed and a checkpoint at every kept step."""
    config = dates.get_config("smoke" if mode == "smoke" else "")
    config.seed = seed
    if mode == "smoke":  # one layer each way, and the loop's own evaluation without decoding:
        config.model.overrides.num_encoder_layers = 1  # every decoder of the study still runs,
        config.model.overrides.num_decoder_layers = 1  # each compiled in less time
        config.eval.decode = False
    steps = CHECKPOINTS[mode]
    config.num_train_steps = steps[-1]
    config.checkpoint_every_steps = int(np.gcd.reduce(steps))
    # keep every checkpoint written (200, 400, 600, ... 1200), so the early ones survive
    config.keep_checkpoints = steps[-1] // config.checkpoint_every_steps
    config.eval_every_steps = steps[-1]  # one evaluation, at the end (the cross-check)
    config.eval.num_attention_maps = 0
    return config


class Checkpoints:
    """The models of one training run, restored step by step from its workdir."""

    def __init__(self, config, workdir: Path, mode: str):
        self.config, self.workdir = config, workdir
        tokenizer = attn_data.load_tokenizer(workdir / "tokenizer.json")
        self.valid = attn_data.load(
            config.dataset.name,
            split=config.dataset.eval_split,
            batch_size=EVAL_BATCH[mode],
            shuffle=False,
            num_epochs=1,
            drop_remainder=True,
            tokenizer=tokenizer,
            **dataset_options(config),
        )
        info = self.valid.info
        self.family_config = model_config(config, info)
        self.task = task_class(config.task)(
            config.model.family,
            LossOptions(config.loss.label_smoothing, config.loss.z_loss),
            vocab_size=info.vocab_size or 0,
        )
        self.vocab_size = info.vocab_size
        tx = make_optimizer(
            config.optimizer,
            total_steps=config.num_train_steps,
            model_dim=self.family_config.model_dim,
        )
        init_key, self.train_key, _ = jax.random.split(jax.random.key(config.seed), 3)
        self.state = create_train_state(self.task, self.family_config, tx, init_key=init_key)

    def model(self, step: int) -> nnx.Module:
        """The model at `step` (0: the initialisation, no checkpoint)."""
        if step:
            with Checkpointer(self.workdir / "checkpoints", max_to_keep=None) as checkpointer:
                saved = checkpointer.restore(
                    step, {"state": self.state.arrays, "rng": self.train_key, "data": None}
                )
            self.state.arrays = saved["state"]
        return self.state.merge()[0]

    def batches(self, mode: str) -> list[dict]:
        out = []
        for index, batch in enumerate(self.valid.iterator()):
            if index >= EVAL_BATCHES[mode]:
                break
            out.append({"inputs": batch["inputs"], "targets": batch["targets"]})
        return out


@functools.partial(jax.jit, static_argnames=("graphdef",))
def _log_prob(graphdef, state, src: jax.Array, tokens: jax.Array) -> jax.Array:
    """log p(tokens | src) [B], up to and including the first EOS (the rest is padding)."""
    model = nnx.merge(graphdef, state)
    tgt_in = shift_right(tokens, attn_data.BOS_ID)
    tgt_mask = (tgt_in != attn_data.PAD_ID).at[:, 0].set(True)
    logits = model(src, tgt_in, src_mask=src != attn_data.PAD_ID, tgt_mask=tgt_mask)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    picked = jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]  # [B, M]
    is_eos = tokens == attn_data.EOS_ID
    after_eos = (jnp.cumsum(is_eos, axis=1) - is_eos) > 0  # strictly after the first EOS
    return jnp.sum(jnp.where(after_eos, 0.0, picked), axis=1)


def log_prob(model: nnx.Module, src, tokens) -> np.ndarray:
    graphdef, state = nnx.split(model)
    return np.asarray(_log_prob(graphdef, state, jnp.asarray(src), jnp.asarray(tokens)))


def _options(src, max_new_tokens: int) -> dict:
    return dict(
        max_new_tokens=max_new_tokens,
        eos_id=attn_data.EOS_ID,
        source=jnp.asarray(src),
        source_mask=jnp.asarray(src) != attn_data.PAD_ID,
        pad_id=attn_data.PAD_ID,
    )


def decode(model, batch, *, beam_size: int | None, alpha: float = 0.0) -> tuple[np.ndarray, ...]:
    """(new tokens [B, M], their teacher-forced log p [B], beam's own log p [B] or None) of
    greedy search (beam_size None) or beam search."""
    src = batch["inputs"]
    prompt = jnp.full((src.shape[0], 1), attn_data.BOS_ID, jnp.int32)
    options = _options(src, batch["targets"].shape[1])
    if beam_size is None:
        tokens, reported = decoding.greedy(model, prompt, **options), None
    else:
        result = decoding.beam_search(
            model, prompt, beam_size=beam_size, length_penalty=alpha, **options
        )
        tokens, reported = result.tokens, np.asarray(result.log_probs[:, 0])
    tokens = np.asarray(tokens)[:, 1:]
    return tokens, log_prob(model, src, tokens), reported


def _sequence(row: np.ndarray) -> list[int]:
    """The tokens before EOS, padding dropped."""
    out = truncate_at_eos(row, attn_data.EOS_ID)
    while out and out[-1] == attn_data.PAD_ID:
        out.pop()
    return out


def correct(tokens: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return np.array([_sequence(p) == _sequence(t) for p, t in zip(tokens, targets, strict=True)])


def lengths(tokens: np.ndarray) -> np.ndarray:
    return np.array([len(_sequence(row)) for row in tokens], np.float64)


def compare(model, batches: list[dict], beams, alphas) -> list[dict]:
    """One row per (k, alpha) and one for greedy: exact match, log p, length ratio, search gain and
    loss, model error; `logp_gap` is max |beam's reported log p - the teacher-forced one|."""
    greedy = [decode(model, b, beam_size=None) for b in batches]
    targets = np.concatenate([b["targets"] for b in batches])
    g_tokens = np.concatenate([g[0] for g in greedy])
    g_logp = np.concatenate([g[1] for g in greedy])
    g_correct = correct(g_tokens, targets)
    target_len = lengths(targets)
    rows = [
        {
            "decoder": "greedy",
            "k": 1,
            "alpha": 0.0,
            "exact_match": float(g_correct.mean()),
            "logp": float(g_logp.mean()),
            "len_ratio": float(lengths(g_tokens).sum() / target_len.sum()),
            "search_gain": 0.0,
            "search_loss": 0.0,
            "model_error": 0.0,
            "logp_gap": 0.0,
        }
    ]
    for k in beams:
        for alpha in alphas:
            found = [decode(model, b, beam_size=k, alpha=alpha) for b in batches]
            tokens = np.concatenate([f[0] for f in found])
            logp = np.concatenate([f[1] for f in found])
            reported = np.concatenate([f[2] for f in found])
            right = correct(tokens, targets)
            rows.append(
                {
                    "decoder": "beam",
                    "k": k,
                    "alpha": alpha,
                    "exact_match": float(right.mean()),
                    "logp": float(logp.mean()),
                    "len_ratio": float(lengths(tokens).sum() / target_len.sum()),
                    "search_gain": float(np.mean(logp > g_logp + TOLERANCE)),
                    "search_loss": float(np.mean(logp < g_logp - TOLERANCE)),
                    "model_error": float(np.mean(~right & g_correct)),
                    "logp_gap": float(np.max(np.abs(reported - logp))),
                }
            )
    return rows


def random_weight_invariants(model, batch) -> dict[str, bool]:
    """On any model: beam search with k = 1 and no EOS is greedy search; with an EOS, k = 1's
    log p is at least greedy's; beam's reported log p is the teacher-forced one."""
    src = batch["inputs"]
    prompt = jnp.full((src.shape[0], 1), attn_data.BOS_ID, jnp.int32)
    options = _options(src, batch["targets"].shape[1]) | {"eos_id": None}
    plain_greedy = np.asarray(decoding.greedy(model, prompt, **options))
    plain_beam = decoding.beam_search(model, prompt, beam_size=1, length_penalty=0.0, **options)
    _, g_logp, _ = decode(model, batch, beam_size=None)
    _, b_logp, reported = decode(model, batch, beam_size=1)
    return {
        "k = 1 without EOS equals greedy": bool(
            np.array_equal(np.asarray(plain_beam.tokens), plain_greedy)
        ),
        "k = 1 log p ≥ greedy's": bool(np.all(b_logp >= g_logp - TOLERANCE)),
        "beam's log p = teacher-forced log p": bool(np.max(np.abs(reported - b_logp)) < 1e-3),
    }


def measure(mode: str, seeds: int, workroot: Path) -> tuple[list[dict], dict]:
    rows, invariants = [], {}
    for seed in range(seeds):
        config = training_config(mode, seed)
        workdir = workroot / f"dates_seed{seed}"
        timer = report.Timer()
        result = train_and_evaluate(config, str(workdir))
        train_s = timer.seconds
        checkpoints = Checkpoints(config, workdir, mode)
        batches = checkpoints.batches(mode)
        if seed == 0:
            invariants = random_weight_invariants(checkpoints.model(0), batches[0])
        for step in CHECKPOINTS[mode]:
            model = checkpoints.model(step)
            timer = report.Timer()
            for row in compare(model, batches, BEAMS[mode], ALPHAS):
                rows.append(
                    {"task": "dates", "step": step, "seed": seed}
                    | row
                    | {"examples": sum(len(b["targets"]) for b in batches)}
                )
            greedy_em, beam_em = _em(rows, step, "greedy", 1, 0.0), _em(rows, step, "beam", 2, 0.0)
            print(
                f"s10 dates seed={seed} step={step}: greedy EM {greedy_em[-1]:.3f}, k=2 alpha=0 "
                f"EM {beam_em[-1]:.3f} (decoding {timer.seconds:.0f} s; training {train_s:.0f} s, "
                f"the loop's EM at the end {result.eval.get('exact_match', float('nan')):.3f})",
                flush=True,
            )
    return rows, invariants


def _em(rows: list[dict], step: int, decoder: str, k: int, alpha: float) -> list[float]:
    group = sorted(
        (
            r
            for r in rows
            if r["step"] == step
            and r["decoder"] == decoder
            and r["k"] == k
            and (decoder == "greedy" or r["alpha"] == alpha)
        ),
        key=lambda r: r["seed"],
    )
    return [r["exact_match"] for r in group]


def gain(rows: list[dict], step: int, k: int = 2, alpha: float = 0.0) -> report.PairedDifference:
    """Paired EM(beam k, alpha) - EM(greedy) at `step`."""
    return report.paired_difference(
        _em(rows, step, "beam", k, alpha), _em(rows, step, "greedy", 1, 0.0)
    )


def verdict(rows: list[dict], step: int = 400) -> str:
    difference = gain(rows, step)
    beam, greedy = _em(rows, step, "beam", 2, 0.0), _em(rows, step, "greedy", 1, 0.0)
    if difference.mean > 0 and all(b >= g for b, g in zip(beam, greedy, strict=True)):
        return report.REPLICATED
    if difference.mean < 0 and difference.high < 0:
        return report.NOT_REPLICATED
    return report.INCONCLUSIVE


def table(rows: list[dict]) -> list[dict]:
    """mean ± std over seeds per (step, decoder, k, alpha)."""
    out = []
    conditions = dict.fromkeys((r["step"], r["decoder"], r["k"], r["alpha"]) for r in rows)
    for step, decoder, k, alpha in conditions:
        group = [
            r
            for r in rows
            if (r["step"], r["decoder"], r["k"], r["alpha"]) == (step, decoder, k, alpha)
        ]
        out.append(
            {"step": step, "decoder": decoder, "k": k, "alpha": alpha if decoder == "beam" else ""}
            | {
                name: report.mean_std(r[name] for r in group)
                for name in (
                    "exact_match",
                    "logp",
                    "len_ratio",
                    "search_gain",
                    "search_loss",
                    "model_error",
                )
            }
        )
    return out


def plot(rows: list[dict]):
    figure, (left, right) = report.new_figure(10, 3.6, columns=2)
    steps = sorted({r["step"] for r in rows})
    beams = sorted({r["k"] for r in rows if r["decoder"] == "beam"})
    for step in steps:
        means = [np.mean(_em(rows, step, "beam", k, 0.0)) for k in beams]
        (line,) = left.plot(beams, means, "o-", label=f"step {step}, beam alpha = 0")
        left.axhline(
            np.mean(_em(rows, step, "greedy", 1, 0.0)),
            color=line.get_color(),
            ls=":",
            lw=0.9,
            label=f"step {step}, greedy",
        )
    left.set(xscale="log", xlabel="beam size k", ylabel="exact match (500 validation dates)")
    left.set_xticks(beams, [str(k) for k in beams])
    left.xaxis.set_minor_locator(NullLocator())
    left.set_title("exact match vs beam size")
    left.legend(fontsize=7)
    step = steps[min(1, len(steps) - 1)]
    for alpha in ALPHAS:
        means = [np.mean(_em(rows, step, "beam", k, alpha)) for k in beams]
        right.plot(beams, means, "o-", label=f"alpha = {alpha}")
    right.axhline(np.mean(_em(rows, step, "greedy", 1, 0.0)), color="grey", ls=":", label="greedy")
    right.set(xscale="log", xlabel="beam size k", ylabel="exact match")
    right.set_xticks(beams, [str(k) for k in beams])
    right.xaxis.set_minor_locator(NullLocator())
    right.set_title(f"length penalty ((5 + |y|)/6)^alpha at step {step}")
    right.legend(fontsize=7)
    figure.suptitle("S10: greedy vs beam search, dates Transformer")
    return figure


def summary(rows: list[dict], seeds: int, mode: str, invariants: dict[str, bool]) -> str:
    step = VERDICT_STEP[mode]
    lines = [
        "# S10 · Greedy vs beam search (dates Transformer)",
        "",
        f"`make train`'s recipe (experiments/configs/dates.py), checkpoints at steps "
        f"{list(CHECKPOINTS[mode])}; each decodes {rows[0]['examples']} validation dates; mean ± "
        f"std over {seeds} paired seed(s) (a seed is the run's `config.seed`).",
        "",
        report.markdown_table(
            table(rows),
            [
                "step",
                "decoder",
                "k",
                "alpha",
                "exact_match",
                "logp",
                "len_ratio",
                "search_gain",
                "search_loss",
                "model_error",
            ],
        ),
        "",
        "Paired EM(beam k, alpha = 0) - EM(greedy), mean [95% CI] (seeds agreeing in sign):",
        "",
    ]
    for s in sorted({r["step"] for r in rows}):
        parts = []
        for k in sorted({r["k"] for r in rows if r["decoder"] == "beam"} - {1}):
            d = gain(rows, s, k)
            parts.append(
                f"k = {k}: {d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}] ({d.agreeing}/{d.n})"
            )
        lines.append(f"- step {s}: " + "; ".join(parts))
    violations = max(r["search_loss"] for r in rows)
    gap = max(r["logp_gap"] for r in rows)
    lines += [
        "",
        "| anchor | Sutskever et al. 2014 T1: beam 1 33.00 → 2 34.50 → 12 34.81 BLEU; Britz et al. "
        "2017: B1 20.66, B3 21.55, B10 21.57, B100 21.10 (B10, alpha = 1.0: 21.80) |",
        "|---|---|",
        "",
        "Invariants on random weights (seed 0, step 0): "
        + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in invariants.items())
        + ".",
        f"Largest share of dates where beam's output was *less* probable than greedy's: "
        f"{violations:.4f}; largest |beam's log p - teacher-forced log p|: {gap:.2g}.",
        "",
        f"Rule: EM(k = 2, alpha = 0) ≥ EM(greedy) at step {step} in every seed, mean > 0.",
        "",
        f"**Verdict: {verdict(rows, step)}**",
    ]
    return "\n".join(lines)


def run(argv: list[str] | None = None) -> str:
    args = report.parse_args(__doc__.splitlines()[0], argv)
    timer = report.Timer()
    with tempfile.TemporaryDirectory(prefix="s10_beam_") as workroot:
        rows, invariants = measure(args.mode, args.seeds, Path(workroot))
    if not all(invariants.values()):
        raise AssertionError(
            f"s10_beam: a decoding invariant failed on random weights: {invariants}"
        )
    report.write_outputs(
        args.out,
        rows=rows,
        summary=summary(rows, args.seeds, args.mode, invariants),
        figure=plot(rows),
        meta={
            "study": "s10_beam",
            "mode": args.mode,
            "seeds": list(range(args.seeds)),
            "checkpoints": CHECKPOINTS[args.mode],
            "beams": BEAMS[args.mode],
            "alphas": ALPHAS,
            "invariants": invariants,
            "wall_s": timer.seconds,
        },
    )
    return verdict(rows, VERDICT_STEP[args.mode])


if __name__ == "__main__":
    print(run(sys.argv[1:]))
