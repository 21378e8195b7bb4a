"""Greedy generation on the CPU: `TransformerLM` with its key/value cache against re-running the
whole sequence every step.

Run:

    python benchmarks/decoding.py           # 1024 new tokens after a 16-token prompt
    python benchmarks/decoding.py --quick   # smoke run: 64 new tokens

What it measures: greedy decoding (argmax, batch 1, float32) of `--new-tokens` tokens after a
random prompt of `--prompt-length` tokens, by a randomly initialised `attn.models.TransformerLM`
(L=4 layers, D=256, N=4 heads, F=1024, V=256, learned positions, max_length = prompt + new
tokens), three ways, all of them returning the new tokens [1, new tokens]:

  - "cached, jitted loop": `init_cache(1, max_length)`, then one `jax.jit`-compiled call that
    prefills the prompt with a single `model(prompt, decode=True)` and runs a `jax.lax.fori_loop`
    of `model(token[:, None], decode=True)` steps; the model goes in and out of the jitted
    function and the loop body with nnx's split/merge API (parameters and cache as separate
    states; only the cache is carried through the loop).
  - "cached, Python loop": the same prefill and step, each a jitted call (cache donated), the
    loop over steps in Python: the per-token dispatch cost shows as the gap to the jitted loop.
  - "uncached", the baseline: one jitted `fori_loop` that re-runs the full forward pass on the
    whole sequence every step, at a fixed size (padded to prompt + new tokens, so shapes are
    static; causal masking keeps the padding out of every earlier position) and takes the
    logits at the current position.

The report checks that all three produce exactly the same tokens.

Columns:

  - ms: wall time of the whole generation (prefill included), best of the repeats after one
    untimed warm-up call; compile s: trace + XLA compile time of the jitted function(s),
    measured separately. The "uncached" warm-up runs one step only (the number of steps is a
    run-time argument), and its timed runs are --uncached-repeats (default 1: it is slow).
  - tokens/s: new tokens / (ms / 1000); ms/token: the inverse.
  - peak MiB (XLA plan): temp + argument + output bytes of the compiled function's
    `memory_analysis()` (for the Python loop: of the step).
  - speedup: uncached ms / ms.

The report (machine, conventions, Markdown table, checks) goes to stdout and, with --output, to
a file, ready to paste into benchmarks/README.md. Progress goes to stderr.

Flags:
  --new-tokens N         tokens to generate (default 1024)
  --prompt-length P      prompt tokens (default 16)
  --repeats R            timed calls of the cached methods, best reported (default 3)
  --uncached-repeats R   timed calls of the uncached method (default 1)
  --seed S               parameter and prompt seed (default 0)
  --output PATH          also write the report to PATH
  --quick                64 new tokens, one repeat
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from measure import (
    MIB,
    best_ms,
    compile_timed,
    machine_line,
    planned_peak_bytes,
    progress,
    table_line,
    verdict,
    write_report,
)

from attn.models import TransformerLM, TransformerLMConfig

L, D, N_HEADS, F, V = 4, 256, 4, 1024, 256
BATCH = 1
QUICK_NEW_TOKENS = 64
JITTED, PYTHON_LOOP, UNCACHED = "cached, jitted loop", "cached, Python loop", "uncached"
METHODS = (JITTED, PYTHON_LOOP, UNCACHED)


@dataclasses.dataclass
class Row:
    """One generation method and what was measured for it."""

    method: str
    compile_s: float
    peak_bytes: int
    ms: float
    tokens: np.ndarray  # [B, new tokens]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=1024)
    parser.add_argument("--prompt-length", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--uncached-repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.new_tokens, args.repeats, args.uncached_repeats = QUICK_NEW_TOKENS, 1, 1
    if args.new_tokens < 1 or args.prompt_length < 1:
        parser.error("--new-tokens and --prompt-length must be >= 1")
    return args


def greedy(logits: jax.Array) -> jax.Array:
    """logits [B, T, V] -> the argmax token at the last position, int32 [B]."""
    return jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)


def build_model(max_length: int, seed: int) -> TransformerLM:
    config = TransformerLMConfig(
        vocab_size=V,
        num_layers=L,
        num_heads=N_HEADS,
        model_dim=D,
        mlp_dim=F,
        max_length=max_length,
        position="learned",
    )
    return TransformerLM(config, rngs=nnx.Rngs(seed))


# ---------------------------------------------------------------------------------------------
# The three ways to generate.


def cached_jitted_loop(model: TransformerLM, prompt: jax.Array, args: argparse.Namespace) -> Row:
    """Prefill + a lax.fori_loop of one-token decoding steps, all in one jitted function."""
    model.init_cache(BATCH, args.prompt_length + args.new_tokens)
    graphdef, params, cache = nnx.split(model, nnx.Param, ...)
    new_tokens = args.new_tokens

    def generate(params, cache, prompt):
        model = nnx.merge(graphdef, params, cache)
        token = greedy(model(prompt, decode=True))  # prefill: [B, P] -> [B]
        tokens = jnp.zeros((BATCH, new_tokens), jnp.int32).at[:, 0].set(token)
        cache = nnx.split(model, nnx.Param, ...)[2]

        def step(i, carry):
            cache, tokens, token = carry
            model = nnx.merge(graphdef, params, cache)
            token = greedy(model(token[:, None], decode=True))  # [B, 1] -> [B]
            tokens = jax.lax.dynamic_update_slice(tokens, token[:, None], (0, i))
            return nnx.split(model, nnx.Param, ...)[2], tokens, token

        return jax.lax.fori_loop(1, new_tokens, step, (cache, tokens, token))[1]

    compiled, compile_s = compile_timed(generate, (params, cache, prompt))
    ms, tokens = best_ms(lambda: compiled(params, cache, prompt), args.repeats)
    return Row(JITTED, compile_s, planned_peak_bytes(compiled), ms, np.asarray(tokens))


def cached_python_loop(model: TransformerLM, prompt: jax.Array, args: argparse.Namespace) -> Row:
    """Prefill and each one-token step as separate jitted calls, the loop in Python."""
    model.init_cache(BATCH, args.prompt_length + args.new_tokens)
    graphdef, params, empty_cache = nnx.split(model, nnx.Param, ...)

    def decode(params, cache, ids):  # ids [B, T] -> (cache, next token [B])
        model = nnx.merge(graphdef, params, cache)
        token = greedy(model(ids, decode=True))
        return nnx.split(model, nnx.Param, ...)[2], token

    def fresh_cache():
        return jax.tree.map(jnp.copy, empty_cache)  # the calls below donate it

    token_shape = jax.ShapeDtypeStruct((BATCH, 1), jnp.int32)
    prefill, prefill_s = compile_timed(decode, (params, fresh_cache(), prompt), donate_argnums=1)
    step, step_s = compile_timed(decode, (params, fresh_cache(), token_shape), donate_argnums=1)

    def generate() -> jax.Array:
        cache, token = prefill(params, fresh_cache(), prompt)
        tokens = [token]
        for _ in range(args.new_tokens - 1):
            cache, token = step(params, cache, token[:, None])
            tokens.append(token)
        return jnp.stack(tokens, axis=1)

    ms, tokens = best_ms(generate, args.repeats)
    return Row(PYTHON_LOOP, prefill_s + step_s, planned_peak_bytes(step), ms, np.asarray(tokens))


def uncached(model: TransformerLM, prompt: jax.Array, args: argparse.Namespace) -> Row:
    """Every step re-runs the model on the whole padded sequence [B, prompt + new tokens]."""
    model.clear_cache()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    P, total = args.prompt_length, args.prompt_length + args.new_tokens

    def generate(params, rest, prompt, num_steps):
        sequence = jnp.zeros((BATCH, total), jnp.int32).at[:, :P].set(prompt)  # [B, P + new]

        def step(i, sequence):
            model = nnx.merge(graphdef, params, rest)
            logits = model(sequence)  # [B, P + new, V], causal
            current = P - 1 + i  # the last filled position
            token = greedy(jax.lax.dynamic_slice_in_dim(logits, current, 1, axis=1))
            return jax.lax.dynamic_update_slice(sequence, token[:, None], (0, current + 1))

        return jax.lax.fori_loop(0, num_steps, step, sequence)[:, P:]

    steps = jnp.asarray(args.new_tokens, jnp.int32)
    compiled, compile_s = compile_timed(generate, (params, rest, prompt, steps))
    jax.block_until_ready(compiled(params, rest, prompt, jnp.asarray(1, jnp.int32)))  # warm-up
    ms, tokens = best_ms(
        lambda: compiled(params, rest, prompt, steps), args.uncached_repeats, warm_up=False
    )
    return Row(UNCACHED, compile_s, planned_peak_bytes(compiled), ms, np.asarray(tokens))


def run_all(args: argparse.Namespace) -> list[Row]:
    model = build_model(args.prompt_length + args.new_tokens, args.seed)
    prompt = jax.random.randint(
        jax.random.key(args.seed + 1), (BATCH, args.prompt_length), 0, V, jnp.int32
    )
    rows = []
    for method, run in zip(
        METHODS, (cached_jitted_loop, cached_python_loop, uncached), strict=True
    ):
        progress(f"{method}: generating {args.new_tokens} tokens ...")
        row = run(model, prompt, args)
        progress(f"{method}: {row.ms:,.1f} ms (compile {row.compile_s:.1f} s)")
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# Report.


def table(rows: list[Row], new_tokens: int) -> list[str]:
    baseline = next(row for row in rows if row.method == UNCACHED)
    header = [
        "method",
        "new tokens",
        "ms",
        "compile s",
        "tokens/s",
        "ms/token",
        "peak MiB (XLA plan)",
        "uncached ms / ms",
    ]
    align = ["---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"]
    body = [
        table_line(
            [
                row.method,
                str(new_tokens),
                f"{row.ms:,.1f}",
                f"{row.compile_s:.2f}",
                f"{new_tokens / (row.ms / 1e3):,.1f}",
                f"{row.ms / new_tokens:.2f}",
                f"{row.peak_bytes / MIB:,.1f}",
                f"{baseline.ms / row.ms:.2f}x",
            ]
        )
        for row in rows
    ]
    return [table_line(header), table_line(align), *body]


def checks(rows: list[Row]) -> list[str]:
    by_method = {row.method: row for row in rows}
    reference = by_method[UNCACHED].tokens
    lines = ["## Checks", ""]
    for method in (JITTED, PYTHON_LOOP):
        tokens = by_method[method].tokens
        same = tokens.shape == reference.shape and bool(np.all(tokens == reference))
        detail = (
            "identical" if same else f"differ first at step {first_difference(tokens, reference)}"
        )
        lines.append(f"- {verdict(same)} {method} generates the same tokens as uncached: {detail}")
    distinct = len(np.unique(reference))
    shown = " ".join(str(t) for t in reference[0, :32])
    lines.append(
        f"- generated (uncached, first 32 of {reference.shape[1]}, {distinct} distinct): {shown}"
    )
    speedup = by_method[UNCACHED].ms / by_method[JITTED].ms
    lines.append(
        f"- {verdict(speedup > 1.0)} cached (jitted loop) faster than uncached: {speedup:.2f}x"
    )
    return lines


def first_difference(tokens: np.ndarray, reference: np.ndarray) -> int | str:
    if tokens.shape != reference.shape:
        return f"(shapes {tokens.shape} vs {reference.shape})"
    return int(np.argmax(np.any(tokens != reference, axis=0)))


def header(args: argparse.Namespace) -> list[str]:
    total = args.prompt_length + args.new_tokens
    return [
        "# Greedy decoding benchmark",
        "",
        f"- Machine: {machine_line()}",
        f"- Model: attn.models.TransformerLM, L={L}, D={D}, N={N_HEADS}, F={F}, V={V}, learned "
        f"positions, max_length={total}, random weights (seed {args.seed}); float32, batch "
        f"{BATCH}",
        f"- Task: greedy, {args.new_tokens} new tokens after a random {args.prompt_length}-token "
        "prompt; the prefill is part of every timing",
        "- cached: init_cache(1, max_length), prefill in one call, then model(token, "
        "decode=True) per step; uncached: full forward on the sequence padded to max_length "
        "every step, logits at the current position",
        f"- ms: best of {args.repeats} (cached) / {args.uncached_repeats} (uncached) timed "
        "call(s) after an untimed warm-up; compile s: trace + compile; peak: temp + argument + "
        "output of the compiled executable's memory analysis",
        "",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    rows = run_all(args)
    report = [*header(args), *table(rows, args.new_tokens), "", *checks(rows)]
    write_report(report, args.output)


if __name__ == "__main__":
    main()
