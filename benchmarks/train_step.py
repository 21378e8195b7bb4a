"""Language-model training step on the CPU: attn's `TransformerLM` against the same model built
from `flax.nnx.MultiHeadAttention`.

Run:

    python benchmarks/train_step.py           # T = 512 and 2048, 4096 tokens per step
    python benchmarks/train_step.py --quick   # smoke run: T = 128, 512; 512 tokens per step

What it measures, in the same run, on the same token batches: one training step (forward,
backward and an optax AdamW update, float32) of a decoder-only, character-level LM: L=6 layers,
D=512, N=8 heads, F=2048, vocabulary V=256, learned positions, pre-LN, tanh-GELU MLP, tied
output embedding. Two models with the same architecture and the same parameter count (both
counts are printed and checked):

  - "attn": `attn.models.TransformerLM(TransformerLMConfig(vocab_size=256, num_layers=6,
    num_heads=8, model_dim=512, mlp_dim=2048, max_length=T, position="learned"))`; on the CPU its
    attention is attn's blockwise kernel.
  - "flax", the baseline: the same pre-LN GPT block stack written with `flax.nnx`:
    `nnx.MultiHeadAttention` (decode=False, mask `nnx.make_causal_mask`, which materialises the
    [B, N, T, T] weights), `nnx.LayerNorm(epsilon=1e-5)`, an `nnx.Linear` MLP with tanh-GELU,
    learned positions `nnx.Embed`, output logits through `embed.attend`.

The step is `jax.jit` of a pure function of (params, optimizer state, batch) built with nnx's
split/merge API, with the parameters and the optimizer state donated; the loss is the mean
next-token cross-entropy in float32. The batch size B is chosen so every length sees the same
number of tokens per step: B = --tokens / T (4096 tokens: B=8 at T=512, B=2 at T=2048).

Columns:

  - params: parameter count (all of them, embeddings included); non-embedding in brackets.
  - ms/step: best of --repeats steps after one untimed warm-up step; compile s: trace + XLA
    compile time, measured separately.
  - tokens/s: B·T / (ms/step).
  - GFLOP/step: model FLOPs, the PaLM convention (Chowdhery et al. 2022, appendix B) with
    causal attention counted as half: 6·(N + V·D)·B·T for the weight matmuls (N = non-embedding
    parameters, V·D the tied output projection) + 6·L·D·T·B·T for attention (PaLM's 12·L·D·T per
    token, halved for the causal triangle). The same figure for both models, whatever they
    compute internally.
  - MFU: (GFLOP/step / s/step) / the float32 matmul peak, measured in the same run as the best
    GFLOP/s of a jitted [n, n] @ [n, n], n = 2048, sampled before every row and at the
    end (`measure.PeakMeter`). An MFU above 100 % means the peak was under-measured: it is
    printed as a failed measurement, never as a result.
  - XLA GFLOP/step: XLA's own FLOP count of the compiled step (`cost_analysis()`), a check of
    the model FLOPs (it counts what is computed: the full attention matrix for flax, the
    visited blocks for attn, and the optimizer).
  - peak MiB (XLA plan): temp + argument + output bytes of the compiled step's
    `memory_analysis()`; deterministic. Donated buffers appear both as arguments and outputs.
  - loss: the loss of the warm-up step (at initialisation) and of the last timed step, on the
    same batch every step (a check that the step trains).
  - flax ms / ms: the speedup of "attn" over "flax" at the same T.

Targets (PASS/FAIL): attn at least as fast as flax at T=512; at least 1.3x faster at T=2048.

The report (machine, conventions, Markdown table, targets) goes to stdout and, with --output, to
a file, ready to paste into benchmarks/README.md. Progress goes to stderr.

Flags:
  --lengths T [T ...]   sequence lengths (default 512 2048)
  --tokens N            tokens per step, B = N / T (default 4096)
  --repeats R           timed steps per configuration, best reported (default 3)
  --output PATH         also write the report to PATH
  --quick               lengths 128 512, 512 tokens per step, one repeat
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from measure import (
    MIB,
    PeakMeter,
    compile_timed,
    machine_line,
    planned_peak_bytes,
    progress,
    share_of_peak,
    table_line,
    verdict,
    write_report,
)

from attn.models import TransformerLM, TransformerLMConfig

L, D, N_HEADS, F, V = 6, 512, 8, 2048, 256
LAYER_NORM_EPS = 1e-5
DEFAULT_LENGTHS = (512, 2048)
DEFAULT_TOKENS = 4096
QUICK_LENGTHS = (128, 512)
QUICK_TOKENS = 512
MODELS = ("flax", "attn")
BASELINE = "flax"
LEARNING_RATE = 3e-4
WEIGHT_DECAY = 0.1
TARGETS = ((512, 1.0), (2048, 1.3))  # (T, minimum speedup of attn over flax)


# ---------------------------------------------------------------------------------------------
# The baseline: the same GPT stack from flax.nnx's own layers.


class FlaxBlock(nnx.Module):
    """Pre-LN GPT block: x + MHA(LN(x), causal), then x + MLP(LN(x)) with tanh-GELU."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.attention_norm = nnx.LayerNorm(D, epsilon=LAYER_NORM_EPS, rngs=rngs)
        self.attention = nnx.MultiHeadAttention(
            num_heads=N_HEADS,
            in_features=D,
            qkv_features=D,
            out_features=D,
            decode=False,
            rngs=rngs,
        )
        self.mlp_norm = nnx.LayerNorm(D, epsilon=LAYER_NORM_EPS, rngs=rngs)
        self.mlp_in = nnx.Linear(D, F, rngs=rngs)
        self.mlp_out = nnx.Linear(F, D, rngs=rngs)

    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        x = x + self.attention(self.attention_norm(x), mask=mask, deterministic=True)
        h = jax.nn.gelu(self.mlp_in(self.mlp_norm(x)), approximate=True)  # [B, T, D] -> [B, T, F]
        return x + self.mlp_out(h)


class FlaxLM(nnx.Module):
    """GPT-style LM from `flax.nnx` layers: `FlaxLM(ids[B, T]) -> logits[B, T, V]`."""

    def __init__(self, max_length: int, *, rngs: nnx.Rngs):
        init = nnx.initializers.normal(0.02)
        self.token_embedding = nnx.Embed(V, D, embedding_init=init, rngs=rngs)
        self.position_embedding = nnx.Embed(max_length, D, embedding_init=init, rngs=rngs)
        self.blocks = nnx.List([FlaxBlock(rngs=rngs) for _ in range(L)])
        self.final_norm = nnx.LayerNorm(D, epsilon=LAYER_NORM_EPS, rngs=rngs)

    def __call__(self, ids: jax.Array) -> jax.Array:
        T = ids.shape[1]
        h = self.token_embedding(ids) + self.position_embedding(jnp.arange(T))
        mask = nnx.make_causal_mask(ids)  # [B, 1, T, T]
        for block in self.blocks:
            h = block(h, mask)
        return self.token_embedding.attend(self.final_norm(h))


def build_model(name: str, T: int, seed: int) -> nnx.Module:
    rngs = nnx.Rngs(seed)
    if name == "flax":
        return FlaxLM(T, rngs=rngs)
    config = TransformerLMConfig(
        vocab_size=V,
        num_layers=L,
        num_heads=N_HEADS,
        model_dim=D,
        mlp_dim=F,
        max_length=T,
        position="learned",
    )
    return TransformerLM(config, rngs=rngs)


# ---------------------------------------------------------------------------------------------
# Measurement.


@dataclasses.dataclass
class Row:
    """One (model, T) configuration and what was measured for it."""

    model: str
    T: int
    B: int
    params: int
    non_embedding: int
    compile_s: float
    peak_bytes: int
    ms: float
    first_loss: float
    last_loss: float
    xla_flops: float | None  # XLA's own count for the compiled step, a check of the model FLOPs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS))
    parser.add_argument("--tokens", type=int, default=DEFAULT_TOKENS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.lengths, args.tokens, args.repeats = list(QUICK_LENGTHS), QUICK_TOKENS, 1
    for T in args.lengths:
        if T < 1 or args.tokens % T:
            parser.error(f"--tokens ({args.tokens}) must be a multiple of every T, got T={T}")
    return args


def is_embedding(path: tuple) -> bool:
    return any(str(part) in ("token_embedding", "position_embedding") for part in path)


def parameter_counts(params: nnx.State) -> tuple[int, int]:
    """(all parameters, parameters outside the token and position tables)."""
    total = non_embedding = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        keys = tuple(getattr(key, "key", getattr(key, "name", key)) for key in path)
        total += leaf.size
        if not is_embedding(keys):
            non_embedding += leaf.size
    return total, non_embedding


def model_flops(non_embedding: int, B: int, T: int) -> float:
    """PaLM model FLOPs per step, causal attention counted as half (see the docstring)."""
    tokens = B * T
    return 6 * (non_embedding + V * D) * tokens + 6 * L * D * T * tokens


def make_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation) -> Callable:
    """step(params, opt_state, rest, inputs, targets) -> (params, opt_state, loss)."""

    def loss_fn(params, rest, inputs, targets):
        model = nnx.merge(graphdef, params, rest)
        logits = model(inputs).astype(jnp.float32)  # [B, T, V]
        return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

    def step(params, opt_state, rest, inputs, targets):
        loss, grads = jax.value_and_grad(loss_fn)(params, rest, inputs, targets)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def make_batch(B: int, T: int, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    """Random character ids [B, T + 1] -> (inputs [B, T], next-token targets [B, T])."""
    tokens = jax.random.randint(jax.random.key(seed), (B, T + 1), 0, V, jnp.int32)
    return tokens[:, :-1], tokens[:, 1:]


def run_configuration(name: str, T: int, B: int, repeats: int) -> Row:
    model = build_model(name, T, seed=0)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    del model
    total, non_embedding = parameter_counts(params)
    tx = optax.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    opt_state = tx.init(params)
    inputs, targets = make_batch(B, T)
    step_args = (params, opt_state, rest, inputs, targets)
    compiled, compile_s = compile_timed(make_step(graphdef, tx), step_args, donate_argnums=(0, 1))
    peak = planned_peak_bytes(compiled)
    progress(f"{name:5s} T={T:5d} B={B}: compiled in {compile_s:.1f} s, plan {peak / MIB:,.0f} MiB")
    params, opt_state, loss = compiled(params, opt_state, rest, inputs, targets)  # warm-up
    times, losses = [], [float(loss)]
    for _ in range(repeats):
        start = time.perf_counter()
        params, opt_state, loss = compiled(params, opt_state, rest, inputs, targets)
        jax.block_until_ready((params, opt_state, loss))
        times.append(time.perf_counter() - start)
        losses.append(float(loss))
    ms = 1e3 * min(times)
    progress(f"{name:5s} T={T:5d} B={B}: {ms:,.0f} ms/step, loss {losses[0]:.3f}→{losses[-1]:.3f}")
    return Row(
        name,
        T,
        B,
        total,
        non_embedding,
        compile_s,
        peak,
        ms,
        losses[0],
        losses[-1],
        xla_flops(compiled),
    )


def xla_flops(compiled: jax.stages.Compiled) -> float | None:
    """XLA's FLOP count of the compiled step (its cost analysis), where the backend gives one."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # older jax: one dict per computation
        analysis = analysis[0] if analysis else None
    return None if not analysis or "flops" not in analysis else float(analysis["flops"])


def run_all(args: argparse.Namespace, meter: PeakMeter) -> list[Row]:
    rows = []
    for T in sorted(args.lengths):
        B = args.tokens // T
        for name in MODELS:
            meter.sample()  # the peak, interleaved with the timed steps
            rows.append(run_configuration(name, T, B, args.repeats))
    return rows


# ---------------------------------------------------------------------------------------------
# Report.


def find(rows: list[Row], model: str, T: int) -> Row | None:
    for row in rows:
        if (row.model, row.T) == (model, T):
            return row
    return None


def speedup(rows: list[Row], row: Row) -> float | None:
    baseline = find(rows, BASELINE, row.T)
    return None if baseline is None else baseline.ms / row.ms


def row_cells(rows: list[Row], row: Row, peak_gflops: float) -> list[str]:
    flops = model_flops(row.non_embedding, row.B, row.T)
    achieved_gflops = flops / (1e6 * row.ms)
    ratio = speedup(rows, row)
    return [
        row.model,
        str(row.T),
        str(row.B),
        f"{row.params:,} ({row.non_embedding:,})",
        f"{row.ms:,.0f}",
        f"{row.compile_s:.1f}",
        f"{row.B * row.T / (row.ms / 1e3):,.0f}",
        f"{flops / 1e9:,.1f}",
        f"{achieved_gflops:.1f}",
        share_of_peak(achieved_gflops, peak_gflops),
        "" if row.xla_flops is None else f"{row.xla_flops / 1e9:,.1f}",
        f"{row.peak_bytes / MIB:,.0f}",
        f"{row.first_loss:.3f} → {row.last_loss:.3f}",
        "" if ratio is None else f"{ratio:.2f}x",
    ]


def table(rows: list[Row], peak_gflops: float) -> list[str]:
    header = [
        "model",
        "T",
        "B",
        "params (non-embedding)",
        "ms/step",
        "compile s",
        "tokens/s",
        "GFLOP/step",
        "GFLOP/s",
        "MFU",
        "XLA GFLOP/step",
        "peak MiB (XLA plan)",
        "loss",
        "flax ms / ms",
    ]
    align = ["---", "---:", "---:", "---:", "---:", "---:", "---:"]
    align += ["---:", "---:", "---:", "---:", "---:", "---", "---:"]
    ordered = sorted(rows, key=lambda r: (r.T, MODELS.index(r.model)))
    body = [table_line(row_cells(rows, row, peak_gflops)) for row in ordered]
    return [table_line(header), table_line(align), *body]


def parameter_check(rows: list[Row]) -> list[str]:
    lines = []
    for T in sorted({row.T for row in rows}):
        ours, baseline = find(rows, "attn", T), find(rows, BASELINE, T)
        if ours is None or baseline is None:
            continue
        same = (ours.params, ours.non_embedding) == (baseline.params, baseline.non_embedding)
        lines.append(
            f"- {verdict(same)} same parameter count at T={T}: attn {ours.params:,}, "
            f"flax {baseline.params:,}"
        )
    return lines


def speed_target(rows: list[Row], T: int, factor: float) -> str:
    ours = find(rows, "attn", T)
    ratio = None if ours is None else speedup(rows, ours)
    measured = "not measured" if ratio is None else f"{ratio:.2f}x"
    ok = None if ratio is None else ratio >= factor
    wording = "at least as fast as flax" if factor == 1.0 else f"at least {factor:g}x faster"
    return f"- {verdict(ok)} attn training step at T={T} {wording}: {measured}"


def targets(rows: list[Row]) -> list[str]:
    speed = [speed_target(rows, T, factor) for T, factor in TARGETS]
    return ["## Targets", "", *parameter_check(rows), *speed]


def header(args: argparse.Namespace, meter: PeakMeter) -> list[str]:
    return [
        "# Language-model training step benchmark",
        "",
        f"- Machine: {machine_line()}",
        f"- Model: decoder-only, L={L}, D={D}, N={N_HEADS}, F={F}, V={V} (characters), learned "
        "positions, pre-LN, tanh-GELU, tied output embedding; float32",
        f"- Step: forward + backward + optax.adamw(lr={LEARNING_RATE:g}, "
        f"weight_decay={WEIGHT_DECAY:g}), jax.jit of nnx split/merge, params and optimizer "
        f"state donated; {args.tokens} tokens per step (B = {args.tokens} / T), random ids",
        "- attn: attn.models.TransformerLM (blockwise attention on the CPU); flax (baseline): the "
        "same stack from nnx.MultiHeadAttention with nnx.make_causal_mask",
        meter.line(),
        "- Model FLOPs (PaLM convention, causal attention counted as half): "
        "6·(N + V·D)·B·T + 6·L·D·T·B·T, N = non-embedding parameters; MFU = model FLOP/s / "
        "matmul peak",
        f"- ms/step: best of {args.repeats} timed step(s) after one untimed warm-up step; "
        "compile s: trace + compile; peak: temp + argument + output of the compiled step's "
        "memory analysis",
        "",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    meter = PeakMeter()
    rows = run_all(args, meter)
    peak_gflops = meter.sample()
    report = [*header(args, meter), *table(rows, peak_gflops), "", *targets(rows)]
    write_report(report, args.output)


if __name__ == "__main__":
    main()
