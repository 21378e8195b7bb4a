"""Measurement helpers shared by the benchmark scripts: the machine line, the matmul peak, timing,
XLA's memory plan, Markdown tables.

The scripts run as `python benchmarks/<name>.py`, which puts this folder on `sys.path`, so they
import it as `from measure import ...`.
"""

from __future__ import annotations

import datetime
import functools
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import jaxlib

MATMUL_SIZES = (2048, 4096)
MATMUL_REPEATS = 5
MIB = 2**20


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    today = datetime.date.today().isoformat()
    return (
        f"{cpu_model()}, {os.cpu_count()} cores; jax {jax.__version__}, "
        f"jaxlib {jaxlib.__version__}, backend {jax.default_backend()}; {today}"
    )


def compile_timed(fn: Callable, args: tuple, **jit_kwargs) -> tuple[jax.stages.Compiled, float]:
    """`jax.jit(fn, **jit_kwargs)` lowered and compiled for `args`, and the seconds it took."""
    start = time.perf_counter()
    compiled = jax.jit(fn, **jit_kwargs).lower(*args).compile()
    return compiled, time.perf_counter() - start


def planned_peak_bytes(compiled: jax.stages.Compiled) -> int:
    """Temp + argument + output bytes of XLA's memory plan for the compiled executable."""
    stats = compiled.memory_analysis()
    return stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes


def best_ms(run: Callable[[], Any], repeats: int, *, warm_up: bool = True) -> tuple[float, Any]:
    """Best wall time in ms of `repeats` calls of `run`, and the last call's result. With
    `warm_up`, one untimed call first; without, the caller has warmed `run` up."""
    if warm_up:
        jax.block_until_ready(run())
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = jax.block_until_ready(run())
        times.append(time.perf_counter() - start)
    return 1e3 * min(times), result


def matmul_peak_gflops() -> tuple[float, dict[int, float]]:
    """Best float32 [n, n] @ [n, n] GFLOP/s over MATMUL_SIZES, and the figure for each n."""
    by_size = {}
    for n in MATMUL_SIZES:
        a, b = jax.random.normal(jax.random.key(n), (2, n, n), jnp.float32)
        compiled, _ = compile_timed(jnp.matmul, (a, b))
        ms, _ = best_ms(functools.partial(compiled, a, b), MATMUL_REPEATS)
        by_size[n] = 2 * n**3 / (1e6 * ms)
        progress(f"matmul n={n}: {by_size[n]:.1f} GFLOP/s")
    return max(by_size.values()), by_size


def matmul_peak_line(peak_gflops: float, by_size: dict[int, float]) -> str:
    """The report's "- Matmul peak: ..." line."""
    matmuls = ", ".join(f"n={n}: {g:.1f}" for n, g in by_size.items())
    return (
        f"- Matmul peak: {peak_gflops:.1f} GFLOP/s (best float32 [n, n] @ [n, n] of "
        f"{MATMUL_REPEATS} calls; {matmuls} GFLOP/s)"
    )


def table_line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def verdict(ok: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "N/A "}[ok]


def write_report(lines: Sequence[str], output: str | None) -> None:
    """The report to stdout and, when `output` is given, to that file."""
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if output:
        with open(output, "w") as f:
            f.write(text)
