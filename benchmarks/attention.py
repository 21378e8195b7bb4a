"""Causal self-attention on the CPU: attn's kernels against `jax.nn.dot_product_attention`.

Run:

    python benchmarks/attention.py           # or: make bench
    python benchmarks/attention.py --quick   # smoke run: T = 512, 1024, one repeat

What it measures, on the same inputs in the same run (B=1, N=8 heads, H=64, float32, T = S,
inputs [B, T, N, H], is_causal=True):

  - "reference": `attn.kernels.dot_product_attention(..., implementation="reference")`
  - "blockwise": `attn.kernels.dot_product_attention(..., implementation="blockwise")`, or
    `attn.kernels.blockwise_attention(..., block_q=, block_k=)` when a block size is given
  - "xla": `jax.nn.dot_product_attention(..., implementation="xla")`, the baseline
  - "torch", only where PyTorch is installed (never a dependency): the peer a CPU user would
    pick, `torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)` (its fused
    CPU flash kernel; no attn_mask), torch.set_num_threads(2), inputs [B, N, T, H] copied from
    the same arrays; forward under `torch.no_grad()`, forward+backward as `(out * cotangent)
    .sum().backward()`. No compile step and no XLA plan: those cells stay empty.

each as "forward" (jit of the call) and "forward+backward" (jit of jax.grad of
sum(out · fixed random cotangent) with respect to q, k and v). Columns:

  - ms: best of --repeats calls after one untimed warm-up call. At each T and pass the timed
    calls of all rows alternate (one call of each row per round), so that a change in the
    machine's load touches every row alike and the ratios within a run are the ones to quote.
  - compile s: trace + XLA compile time, measured separately.
  - peak MiB (XLA plan): temp + argument + output bytes of the compiled executable's
    `memory_analysis()`; deterministic. A configuration whose plan exceeds --memory-limit-gb is
    not run ("skipped: needs N GiB").
  - GFLOP/s and % of the matmul peak. FLOPs count the causal work only, for every implementation:
    forward = 4·B·N·T·S·H / 2 = 2·B·N·T²·H; forward+backward = 3.5 × forward (the FlashAttention-2
    paper's convention: backward = 2.5 × forward). The matmul peak is measured in the same run:
    the best GFLOP/s of a jitted float32 [n, n] @ [n, n], n = 2048, sampled before
    every row and at the end (`measure.PeakMeter`); a figure above 100 % of it is printed as a
    failed measurement.
  - xla ms / ms, torch ms / ms: the speedup over "xla" (over "torch", when it ran) at the same
    T and pass.

A configuration whose estimated time exceeds --max-seconds-per-call is not run
("skipped: ~N s estimated"); the estimate is the time of the same implementation and pass at the
last measured length, scaled quadratically (× 4 per doubling of T).

The report (machine, conventions, Markdown table, and PASS/FAIL targets) goes to stdout and, with
--output, to a file, ready to paste into benchmarks/README.md. Progress goes to stderr.

Flags:
  --lengths T [T ...]          sequence lengths (default 1024 2048 4096 8192 16384 32768)
  --repeats R                  timed calls per configuration, best reported (default 3)
  --block-q, --block-k         blockwise block sizes (default: the kernel's shape rule,
                               `blockwise.default_block_shape`)
  --blocks QxK [QxK ...]       extra blockwise rows with these explicit block shapes, labelled
                               "blockwise QxK" (e.g. --blocks 256x256 for the earlier default)
  --implementations I [I ...]  which of reference, blockwise, xla, torch to run (default: all;
                               torch only where it is installed)
  --head-dim H                 head dimension (default 64)
  --memory-limit-gb G          skip configurations whose planned peak exceeds G GiB (default 20)
  --max-seconds-per-call S     skip configurations estimated to take more than S s (default 120)
  --output PATH                also write the report to PATH
  --quick                      lengths 512 1024 and one repeat
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from measure import (
    MATMUL_REPEATS,
    MIB,
    PeakMeter,
    best_ms,
    compile_timed,
    machine_line,
    planned_peak_bytes,
    progress,
    share_of_peak,
    table_line,
    verdict,
    write_report,
)

import attn.kernels
from attn.kernels import blockwise

B, N = 1, 8
DEFAULT_HEAD_DIM = 64
DEFAULT_LENGTHS = (1024, 2048, 4096, 8192, 16384, 32768)
QUICK_LENGTHS = (512, 1024)
IMPLEMENTATIONS = ("reference", "blockwise", "xla", "torch")  # "torch" where it is installed
TORCH_THREADS = 2
PASSES = ("forward", "forward+backward")
BACKWARD_FACTOR = 3.5  # forward+backward FLOPs / forward FLOPs (FlashAttention-2)
TARGET_T = 4096
LARGEST_T = 32768
GIB = 2**30

Attend = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass
class Row:
    """One (implementation, pass, T) configuration and what was measured for it."""

    implementation: str  # "reference", "blockwise", "blockwise QxK", "xla" or "torch"
    pass_name: str
    T: int
    head_dim: int
    compile_s: float
    peak_bytes: int
    ms: float | None = None
    skipped: str | None = None


def block_shape(text: str) -> tuple[int, int]:
    """ "512x256" -> (512, 256), for --blocks."""
    try:
        block_q, block_k = (int(part) for part in text.lower().split("x"))
    except ValueError:
        message = f"a block shape is QxK, e.g. 512x256; got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    return block_q, block_k


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-q", type=int, default=None)
    parser.add_argument("--block-k", type=int, default=None)
    parser.add_argument("--blocks", type=block_shape, nargs="+", default=[])
    parser.add_argument(
        "--implementations", nargs="+", choices=IMPLEMENTATIONS, default=list(IMPLEMENTATIONS)
    )
    parser.add_argument("--head-dim", type=int, default=DEFAULT_HEAD_DIM)
    parser.add_argument("--memory-limit-gb", type=float, default=20.0)
    parser.add_argument("--max-seconds-per-call", type=float, default=120.0)
    parser.add_argument("--output", default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.lengths, args.repeats = list(QUICK_LENGTHS), 1
    return args


def block_sizes(args: argparse.Namespace) -> dict[str, int]:
    """The block sizes given on the command line (empty: the kernel's defaults)."""
    sizes = {"block_q": args.block_q, "block_k": args.block_k}
    return {name: size for name, size in sizes.items() if size is not None}


def row_names(args: argparse.Namespace) -> list[str]:
    """The rows of each (T, pass), in order: the implementations asked for (torch only where it
    is installed), then one "blockwise QxK" per --blocks shape."""
    wanted = [i for i in IMPLEMENTATIONS if i in args.implementations]
    names = [i for i in wanted if i != "torch" or torch_available()]
    return names + [f"blockwise {q}x{k}" for q, k in args.blocks]


def attention_function(implementation: str, sizes: dict[str, int]) -> Attend:
    if implementation == "xla":
        return lambda q, k, v: jax.nn.dot_product_attention(
            q, k, v, is_causal=True, implementation="xla"
        )
    if implementation.startswith("blockwise "):  # "blockwise QxK": explicit blocks
        block_q, block_k = block_shape(implementation.split()[1])
        sizes = {"block_q": block_q, "block_k": block_k}
    if implementation.startswith("blockwise") and sizes:
        return lambda q, k, v: attn.kernels.blockwise_attention(q, k, v, is_causal=True, **sizes)
    return lambda q, k, v: attn.kernels.dot_product_attention(
        q, k, v, is_causal=True, implementation=implementation
    )


def pass_function(attend: Attend, pass_name: str) -> Callable:
    if pass_name == "forward":
        return attend

    def loss(q: jax.Array, k: jax.Array, v: jax.Array, cotangent: jax.Array) -> jax.Array:
        return jnp.sum(attend(q, k, v) * cotangent)

    return jax.grad(loss, argnums=(0, 1, 2))


def make_inputs(T: int, H: int, seed: int = 0) -> dict[str, tuple[jax.Array, ...]]:
    """q, k, v [B, T, N, H] and a cotangent for the backward pass, the same for every kernel."""
    keys = jax.random.split(jax.random.key(seed), 4)
    q, k, v, cotangent = (jax.random.normal(key, (B, T, N, H), jnp.float32) for key in keys)
    return {"forward": (q, k, v), "forward+backward": (q, k, v, cotangent)}


def block_product_gflops(block_q: int, block_k: int, H: int) -> float:
    """GFLOP/s of the blockwise kernel's per-block score product, alone: the batched float32
    [N, block_q, H] x [N, H, block_k] einsum that each visible block starts with."""
    q = jax.random.normal(jax.random.key(1), (N, block_q, H), jnp.float32)
    k = jax.random.normal(jax.random.key(2), (N, block_k, H), jnp.float32)
    product = functools.partial(jnp.einsum, "NqH,NkH->Nqk")
    compiled, _ = compile_timed(product, (q, k))
    ms, _ = best_ms(functools.partial(compiled, q, k), MATMUL_REPEATS * 4)
    gflops = 2 * N * block_q * block_k * H / (1e6 * ms)
    progress(f"block product {block_q}x{block_k}: {gflops:.1f} GFLOP/s")
    return gflops


def attention_flops(T: int, pass_name: str, H: int) -> float:
    forward = 2 * B * N * T * T * H  # causal: half of 4·B·N·T·S·H
    return forward * (BACKWARD_FACTOR if pass_name == "forward+backward" else 1.0)


def estimated_seconds(last: tuple[int, float] | None, T: int) -> float | None:
    """Quadratic extrapolation from the last measured (T, seconds) of the same configuration."""
    if last is None:
        return None
    last_T, last_s = last
    return last_s * (T / last_T) ** 2


def prepare_jax(
    implementation: str,
    pass_name: str,
    T: int,
    inputs: tuple[jax.Array, ...],
    args: argparse.Namespace,
    last: tuple[int, float] | None,
) -> tuple[Row, Callable[[], object] | None]:
    """Compile one JAX row; returns it and its call (None when it is skipped)."""
    fn = pass_function(attention_function(implementation, block_sizes(args)), pass_name)
    compiled, compile_s = compile_timed(fn, inputs)
    row = Row(implementation, pass_name, T, args.head_dim, compile_s, planned_peak_bytes(compiled))
    estimate = estimated_seconds(last, T)
    if row.peak_bytes > args.memory_limit_gb * GIB:
        row.skipped = f"skipped: needs {row.peak_bytes / GIB:.1f} GiB"
        return row, None
    if estimate is not None and estimate > args.max_seconds_per_call:
        row.skipped = f"skipped: ~{estimate:,.1f} s estimated"
        return row, None
    return row, functools.partial(compiled, *inputs)


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def prepare_torch(
    pass_name: str, T: int, inputs: tuple[jax.Array, ...], args, last
) -> tuple[Row, Callable[[], object] | None]:
    """PyTorch's fused SDPA on the same inputs (the optional "torch" column)."""
    import torch

    torch.set_num_threads(TORCH_THREADS)
    # [B, T, N, H] -> [B, N, T, H], torch's layout
    q, k, v, *cotangent = (
        torch.from_numpy(np.asarray(x).transpose(0, 2, 1, 3).copy()) for x in inputs
    )
    row = Row("torch", pass_name, T, args.head_dim, 0.0, 0)
    estimate = estimated_seconds(last, T)
    if estimate is not None and estimate > args.max_seconds_per_call:
        row.skipped = f"skipped: ~{estimate:,.1f} s estimated"
        return row, None

    def call():
        if pass_name == "forward":
            with torch.no_grad():
                return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        leaves = [x.detach().requires_grad_() for x in (q, k, v)]
        out = torch.nn.functional.scaled_dot_product_attention(*leaves, is_causal=True)
        (out * cotangent[0]).sum().backward()
        return out

    return row, call


def time_alternating(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best ms of each call: one untimed warm-up call each, then `repeats` rounds of one timed
    call of each, in turn."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        jax.block_until_ready(call())
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(call())
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * min(samples) for name, samples in times.items()}


def run_all(args: argparse.Namespace, meter: PeakMeter) -> list[Row]:
    rows = []
    last_measured: dict[tuple[str, str], tuple[int, float]] = {}
    for T in sorted(args.lengths):
        inputs = make_inputs(T, args.head_dim)
        for pass_name in PASSES:
            meter.sample()  # the peak, interleaved with the timed rows
            prepared, calls = [], {}
            for name in row_names(args):
                last = last_measured.get((name, pass_name))
                if name == "torch":
                    row, call = prepare_torch(pass_name, T, inputs[pass_name], args, last)
                else:
                    row, call = prepare_jax(name, pass_name, T, inputs[pass_name], args, last)
                prepared.append(row)
                if call is not None:
                    calls[name] = call
            best = time_alternating(calls, args.repeats)
            for row in prepared:
                if row.implementation in best:
                    row.ms = best[row.implementation]
                    last_measured[(row.implementation, pass_name)] = (T, row.ms / 1e3)
                result = row.skipped or f"{row.ms:.1f} ms"
                progress(f"{row.implementation:17s} {pass_name:16s} T={T:6d}: {result}")
            rows.extend(prepared)
    return rows


def find(rows: list[Row], implementation: str, pass_name: str, T: int) -> Row | None:
    for row in rows:
        if (row.implementation, row.pass_name, row.T) == (implementation, pass_name, T):
            return row
    return None


def speedup_over(rows: list[Row], row: Row, baseline: str) -> float | None:
    other = find(rows, baseline, row.pass_name, row.T)
    if row.ms is None or other is None or other.ms is None:
        return None
    return other.ms / row.ms


def speedup_over_xla(rows: list[Row], row: Row) -> float | None:
    return speedup_over(rows, row, "xla")


def row_cells(rows: list[Row], row: Row, peak_gflops: float) -> list[str]:
    head = [row.implementation, row.pass_name, str(row.T)]
    compile_and_memory = [f"{row.compile_s:.2f}", f"{row.peak_bytes / MIB:,.1f}"]
    if row.implementation == "torch":
        compile_and_memory = ["", ""]
    with_torch = any(r.implementation == "torch" for r in rows)
    torch_speedup = speedup_over(rows, row, "torch") if with_torch else None
    torch_cell = [f"{torch_speedup:.2f}x" if torch_speedup else ""] if with_torch else []
    if row.ms is None:
        return [*head, str(row.skipped), *compile_and_memory, "", "", "", *torch_cell]
    gflops = attention_flops(row.T, row.pass_name, row.head_dim) / (1e6 * row.ms)
    speedup = speedup_over_xla(rows, row)
    return [
        *head,
        f"{row.ms:,.1f}",
        *compile_and_memory,
        f"{gflops:.1f}",
        share_of_peak(gflops, peak_gflops),
        "" if speedup is None else f"{speedup:.2f}x",
        *torch_cell,
    ]


def table(rows: list[Row], peak_gflops: float) -> list[str]:
    header = [
        "implementation",
        "pass",
        "T",
        "ms",
        "compile s",
        "peak MiB (XLA plan)",
        "GFLOP/s",
        "% matmul peak",
        "xla ms / ms",
    ]
    align = ["---", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:"]
    if any(r.implementation == "torch" for r in rows):
        header.append("torch ms / ms")
        align.append("---:")
    position = {id(row): index for index, row in enumerate(rows)}
    ordered = sorted(rows, key=lambda r: (PASSES.index(r.pass_name), r.T, position[id(r)]))
    body = [table_line(row_cells(rows, row, peak_gflops)) for row in ordered]
    return [table_line(header), table_line(align), *body]


def speed_target(rows: list[Row], pass_name: str, factor: float) -> str:
    row = find(rows, "blockwise", pass_name, TARGET_T)
    speedup = None if row is None else speedup_over_xla(rows, row)
    measured = "not measured" if speedup is None else f"{speedup:.2f}x"
    ok = None if speedup is None else speedup >= factor
    return (
        f"- {verdict(ok)} blockwise {pass_name} at T={TARGET_T} at least {factor:g}x faster "
        f"than xla: {measured}"
    )


def peak_fraction_target(rows: list[Row], peak_gflops: float, fraction: float) -> str:
    row = find(rows, "blockwise", "forward", TARGET_T)
    if row is None or row.ms is None:
        ok, measured = None, "not measured"
    else:
        gflops = attention_flops(TARGET_T, "forward", row.head_dim) / (1e6 * row.ms)
        measured = share_of_peak(gflops, peak_gflops)
        ok = None if gflops > peak_gflops else gflops >= fraction * peak_gflops
    return (
        f"- {verdict(ok)} blockwise forward at T={TARGET_T} at least {100 * fraction:.0f}% of "
        f"the matmul peak: {measured}"
    )


def long_sequence_target(rows: list[Row], memory_limit_gb: float) -> str:
    ours = find(rows, "blockwise", "forward+backward", LARGEST_T)
    xla = find(rows, "xla", "forward+backward", LARGEST_T)
    if ours is None or xla is None:
        ok, measured = None, f"T={LARGEST_T} not in --lengths"
    else:
        xla_fits = xla.peak_bytes <= memory_limit_gb * GIB
        ok = ours.ms is not None and not xla_fits
        measured = (
            f"blockwise {'completes' if ours.ms is not None else ours.skipped}, "
            f"xla plans {xla.peak_bytes / GIB:.1f} GiB (limit {memory_limit_gb:g} GiB)"
        )
    return (
        f"- {verdict(ok)} T={LARGEST_T} forward+backward: blockwise completes while xla cannot "
        f"fit: {measured}"
    )


def linear_memory_target(rows: list[Row], pass_name: str) -> str:
    measured = sorted(
        (r for r in rows if r.implementation == "blockwise" and r.pass_name == pass_name),
        key=lambda r: r.T,
    )
    measured = [r for r in measured if r.ms is not None]
    if len(measured) < 2:
        ok, detail = None, "fewer than two measured lengths"
    else:
        small, large = measured[-2], measured[-1]
        memory_ratio, length_ratio = large.peak_bytes / small.peak_bytes, large.T / small.T
        ok = memory_ratio <= 1.3 * length_ratio
        detail = (
            f"T {small.T} → {large.T} (x{length_ratio:g}): planned peak x{memory_ratio:.2f} "
            f"(linear if <= x{1.3 * length_ratio:.2f})"
        )
    return f"- {verdict(ok)} blockwise {pass_name} peak memory grows linearly in T: {detail}"


def targets(rows: list[Row], peak_gflops: float, memory_limit_gb: float) -> list[str]:
    return [
        "## Targets",
        "",
        speed_target(rows, "forward", 3.0),
        peak_fraction_target(rows, peak_gflops, 0.6),
        speed_target(rows, "forward+backward", 2.0),
        long_sequence_target(rows, memory_limit_gb),
        linear_memory_target(rows, "forward"),
        linear_memory_target(rows, "forward+backward"),
    ]


def blockwise_shapes(args: argparse.Namespace) -> dict[str, list[tuple[int, int]]]:
    """The (block_q, block_k) of each blockwise row: per length for the kernel's shape rule,
    or the explicit shape (--block-q/--block-k, --blocks)."""
    shapes = {}
    for name in row_names(args):
        if name.startswith("blockwise "):
            shapes[name] = [block_shape(name.split()[1])]
        elif name == "blockwise":
            by_length = []
            for T in sorted(args.lengths):
                sizes = block_sizes(args)
                shape = blockwise.block_shape(
                    T, T, args.head_dim, sizes.get("block_q"), sizes.get("block_k")
                )
                if shape not in by_length:
                    by_length.append(shape)
            shapes[name] = by_length
    return shapes


def header(
    args: argparse.Namespace, meter: PeakMeter, block_gflops: dict[tuple[int, int], float]
) -> list[str]:
    H = args.head_dim
    shape_lines = []
    for name, shapes in blockwise_shapes(args).items():
        described = "; ".join(
            f"{q}x{k} (score product [{N}, {q}, {H}] x [{N}, {H}, {k}] alone: "
            f"{block_gflops[q, k]:.1f} GFLOP/s, {share_of_peak(block_gflops[q, k], meter.best)} "
            "of the matmul peak)"
            for q, k in shapes
        )
        rule = " (the kernel's rule, by T)" if name == "blockwise" and not block_sizes(args) else ""
        shape_lines.append(f"- {name}: blocks{rule} {described}")
    return [
        "# Causal self-attention benchmark",
        "",
        f"- Machine: {machine_line()}",
        f"- Shapes: B={B}, N={N}, H={H}, float32, is_causal=True, T = S, inputs [B, T, N, H]",
        meter.line(),
        "- FLOPs: forward = 2·B·N·T²·H (causal: half of 4·B·N·T·S·H); forward+backward = "
        f"{BACKWARD_FACTOR} x forward (FlashAttention-2 convention: backward = 2.5 x forward)",
        *shape_lines,
        f"- ms: best of {args.repeats} after one untimed warm-up call, the rows' timed calls "
        "alternating; compile s: trace + compile; peak: temp + argument + output of the compiled "
        "executable's memory analysis",
        f"- Skipped: planned peak > {args.memory_limit_gb:g} GiB, or estimated time > "
        f"{args.max_seconds_per_call:g} s per call (last measured length, scaled by T²)",
        "",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    meter = PeakMeter()
    block_gflops = {
        shape: block_product_gflops(*shape, args.head_dim)
        for shapes in blockwise_shapes(args).values()
        for shape in shapes
    }
    rows = run_all(args, meter)
    peak_gflops = meter.sample()
    progress(f"matmul peak: {peak_gflops:.1f} GFLOP/s, best of {meter.samples} samples")
    report = [
        *header(args, meter, block_gflops),
        *table(rows, peak_gflops),
        "",
        *targets(rows, peak_gflops, args.memory_limit_gb),
    ]
    write_report(report, args.output)


if __name__ == "__main__":
    main()
