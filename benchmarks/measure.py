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


class PeakMeter:
    """The float32 matmul peak, sampled again and again between the timed rows; the best sample.

    One measurement taken while the machine is busy (another process, a thermal dip) under-states
    the peak and over-states every "% of peak" computed from it (an MFU of 101 % was printed that
    way). So the scripts call `sample()` before every row and once more at the end, and report
    the best GFLOP/s of any jitted [n, n] @ [n, n] over the whole run. n = 2048 by default: it
    reached the highest figure of this machine (211 GFLOP/s) and costs well under a second per
    sample, so sampling often is cheap.
    """

    def __init__(self, sizes: Sequence[int] = (2048,), repeats: int = 3):
        self.repeats = repeats
        self.by_size: dict[int, float] = {}
        self.samples = 0
        self._products = []
        for n in sizes:
            a, b = jax.random.normal(jax.random.key(n), (2, n, n), jnp.float32)
            compiled, _ = compile_timed(jnp.matmul, (a, b))
            self._products.append((n, functools.partial(compiled, a, b)))

    def sample(self) -> float:
        """Measure once more (best of `repeats` calls per size); the best GFLOP/s so far."""
        for n, product in self._products:
            ms, _ = best_ms(product, self.repeats)
            self.by_size[n] = max(self.by_size.get(n, 0.0), 2 * n**3 / (1e6 * ms))
        self.samples += 1
        return self.best

    @property
    def best(self) -> float:
        return max(self.by_size.values())

    def line(self) -> str:
        """The report's "- Matmul peak: ..." line."""
        matmuls = ", ".join(f"n={n}: {g:.1f}" for n, g in self.by_size.items())
        return (
            f"- Matmul peak: {self.best:.1f} GFLOP/s (best float32 [n, n] @ [n, n] of "
            f"{self.samples} samples of {self.repeats} calls, taken between the timed rows; "
            f"{matmuls} GFLOP/s)"
        )


def share_of_peak(gflops: float, peak_gflops: float) -> str:
    """The share of the peak as NN%; above 100 % a failed measurement (a figure cannot exceed
    the peak), and without a measured peak, no share."""
    if not peak_gflops > 0:  # nan (no sample) or 0
        return "no peak measured"
    share = 100 * gflops / peak_gflops
    if share > 100:
        return f"failed measurement ({share:.0f}% > 100%)"
    return f"{share:.0f}%"


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
