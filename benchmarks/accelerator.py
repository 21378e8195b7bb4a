"""One device run: attention kernels and a GPT-2-small training step on a GPU or TPU.

Run (from the repository root, on the device machine):

    PYTHONPATH=$PWD python benchmarks/accelerator.py --output accelerator.md
    PYTHONPATH=$PWD python benchmarks/accelerator.py --quick   # CPU smoke run, tiny shapes

Needs only jax, flax, optax, orbax-checkpoint and chex (the core of `attn`), no network.

What it measures, in one call of at most --budget seconds (default 270):

  - Attention: bfloat16 causal self-attention, H = 128, N = 16 heads, T = S = 1k, 2k, 4k, 8k,
    16k, B = 16384 / T (16k tokens per call), inputs [B, T, N, H], through
    `attn.kernels.dot_product_attention(q, k, v, is_causal=True, implementation=...)` for each
    implementation that applies on the platform (GPU: xla, cudnn, triton, blockwise; TPU: xla,
    splash, blockwise), forward and forward+backward (the gradient of sum(out · cotangent) with
    respect to q, k and v).
  - GPT-2 small (`TransformerLMConfig.named("gpt2", dtype="bfloat16")`: L=12, D=768, N=12,
    V=50257, float32 parameters, bfloat16 compute, T=1024, B=8, implementation=None): one jitted
    AdamW training step; tokens/s and MFU.

Each implementation (and the GPT-2 step) runs in its own process; a row that does not report
within --row-limit seconds (default 45) is killed and noted, and that implementation's longer
rows are skipped; a row that fails (out of memory, a kernel the platform rejects) is noted with
its error. So one slow or broken kernel cannot take the run down.

Columns and conventions:

  - ms: best of --repeats calls after one untimed warm-up; compile s: trace + compile.
  - TFLOP/s: forward = 2·B·N·T²·H (causal: half of 4·B·N·T·S·H); forward+backward = 3.5 ×
    forward (FlashAttention-2's convention: backward = 2.5 × forward). The same count for every
    implementation, whatever it computes internally.
  - % peak: TFLOP/s over the bf16 matmul peak, the best [n, n] @ [n, n] (n = 8192; float32
    n = 512 on the CPU) measured in every process before every row, interleaved with the timed
    work, the best sample of the whole run. A figure above 100 % means the peak was
    under-measured: it is printed as a failed measurement, never as a result.
  - GPT-2 MFU: model FLOPs per step (PaLM convention, Chowdhery et al. 2022, appendix B:
    6·(non-embedding params + V·D)·tokens + 6·L·D·T·tokens, causal attention counted as half)
    over the step time and the same peak.

The report (machine, conventions, tables) goes to stdout and, with --output, to a file, for
benchmarks/README.md. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import multiprocessing
import queue
import sys
import time
import traceback
from collections.abc import Sequence

from measure import share_of_peak

LENGTHS = (1024, 2048, 4096, 8192, 16384)
TOKENS = 16384
HEADS, HEAD_DIM = 16, 128
PEAK_N = 8192
QUICK = dict(lengths=(128, 256), tokens=512, heads=2, head_dim=32, peak_n=512)
IMPLEMENTATIONS = {
    "gpu": ("xla", "cudnn", "triton", "blockwise"),
    "tpu": ("xla", "splash", "blockwise"),
    "cpu": ("xla", "blockwise"),
}
PASSES = ("forward", "forward+backward")
GPT2 = dict(variant="gpt2", T=1024, B=8)
GPT2_QUICK = dict(variant="tiny", T=128, B=2)


# ---------------------------------------------------------------------------------------------
# Work done in a child process (imports jax there, reports through a queue).


def _best_seconds(run, repeats: int) -> float:
    import jax

    jax.block_until_ready(run())  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run())
        best = min(best, time.perf_counter() - start)
    return best


def _peak_sample(n: int) -> float:
    """Best matmul TFLOP/s of 3 calls: bfloat16 [n, n] @ [n, n] (float32 on the CPU)."""
    import jax
    import jax.numpy as jnp

    dtype = jnp.float32 if jax.default_backend() == "cpu" else jnp.bfloat16
    a, b = jax.random.normal(jax.random.key(n), (2, n, n), dtype)
    matmul = jax.jit(jnp.matmul)
    return 2 * n**3 / _best_seconds(lambda: matmul(a, b), 3) / 1e12


def _attention_rows(implementation: str, settings: dict, report) -> None:
    import jax
    import jax.numpy as jnp

    from attn.kernels import dot_product_attention

    N, H = settings["heads"], settings["head_dim"]
    for T in settings["lengths"]:
        B = max(1, settings["tokens"] // T)
        keys = jax.random.split(jax.random.key(T), 4)
        q, k, v, cotangent = (jax.random.normal(key, (B, T, N, H), jnp.bfloat16) for key in keys)

        def forward(q, k, v):
            return dot_product_attention(q, k, v, is_causal=True, implementation=implementation)

        def forward_backward(q, k, v, cotangent=cotangent):
            out, vjp = jax.vjp(forward, q, k, v)
            return out, vjp(cotangent)

        for pass_name, fn in zip(PASSES, (forward, forward_backward), strict=True):
            report("start", {"T": T, "pass": pass_name})
            report("peak", _peak_sample(settings["peak_n"]))
            start = time.perf_counter()
            compiled = jax.jit(fn).lower(q, k, v).compile()
            compile_s = time.perf_counter() - start
            seconds = _best_seconds(
                lambda c=compiled, args=(q, k, v): c(*args), settings["repeats"]
            )
            flops = 2 * B * N * T * T * H * (3.5 if pass_name != "forward" else 1.0)
            report(
                "row",
                {
                    "T": T,
                    "B": B,
                    "pass": pass_name,
                    "ms": 1e3 * seconds,
                    "compile_s": compile_s,
                    "tflops": flops / seconds / 1e12,
                },
            )


def _gpt2_row(settings: dict, report) -> None:
    import jax
    import optax
    from flax import nnx

    from attn.models import TransformerLM, TransformerLMConfig

    variant, T, B = settings["gpt2"]["variant"], settings["gpt2"]["T"], settings["gpt2"]["B"]
    report("start", {"T": T, "pass": "train step"})
    report("peak", _peak_sample(settings["peak_n"]))
    config = TransformerLMConfig.named(variant, dtype="bfloat16", max_length=T)
    model = TransformerLM(config, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    del model
    total = sum(x.size for x in jax.tree_util.tree_leaves(params))
    embeddings = config.vocab_size * config.model_dim + config.max_length * config.model_dim
    non_embedding = total - embeddings
    tx = optax.adamw(3e-4, weight_decay=0.1)
    opt_state = tx.init(params)
    tokens = jax.random.randint(jax.random.key(0), (B, T + 1), 0, config.vocab_size)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]

    def step(params, opt_state, rest, inputs, targets):
        def loss_fn(params):
            logits = nnx.merge(graphdef, params, rest)(inputs).astype("float32")
            return optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    start = time.perf_counter()
    compiled = jax.jit(step).lower(params, opt_state, rest, inputs, targets).compile()
    compile_s = time.perf_counter() - start
    seconds = _best_seconds(
        lambda: compiled(params, opt_state, rest, inputs, targets), settings["repeats"]
    )
    L, D = config.num_layers, config.model_dim
    flops = 6 * (non_embedding + config.vocab_size * D) * B * T + 6 * L * D * T * B * T
    report(
        "row",
        {
            "T": T,
            "B": B,
            "pass": "train step",
            "ms": 1e3 * seconds,
            "compile_s": compile_s,
            "tflops": flops / seconds / 1e12,
            "params": total,
            "variant": variant,
        },
    )
    report("peak", _peak_sample(settings["peak_n"]))


def _child(task: str, settings: dict, results: multiprocessing.Queue) -> None:
    def report(kind, payload):
        results.put((kind, payload))

    try:
        if task == "info":
            import jax

            report("info", (jax.default_backend(), jax.devices()[0].device_kind, jax.__version__))
        elif task == "gpt2":
            _gpt2_row(settings, report)
        else:
            _attention_rows(task, settings, report)
    except Exception as error:  # reported as the row's note; the run goes on
        last_line = traceback.format_exception_only(error)[-1].strip()
        report("error", last_line[:300])
    report("done", None)


# ---------------------------------------------------------------------------------------------
# The parent: one process per task, a time limit per row, the report.


def run_task(task: str, settings: dict, deadline: float, row_limit: float) -> tuple[list, list]:
    """Rows (dicts) and peak samples of one task; notes for rows over time or failed."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_child, args=(task, settings, results), daemon=True)
    process.start()
    rows, peaks, current = [], [], None
    limit = row_limit + 30  # the first row also pays for the process start and jax's import
    while True:
        wait = min(limit, deadline - time.time())
        try:
            kind, payload = results.get(timeout=max(wait, 0.1))
        except queue.Empty:
            process.kill()
            why = "over the run's budget" if wait < limit else f"over the {row_limit:g} s limit"
            if current is not None:
                rows.append({**current, "note": f"killed: {why}; longer rows skipped"})
            break
        if kind == "start":
            current, limit = payload, row_limit
        elif kind == "peak":
            peaks.append(payload)
        elif kind == "row":
            rows.append(payload)
            current = None
        elif kind == "info":
            rows.append({"info": payload})
        elif kind == "error":
            rows.append({**(current or {"T": 0, "pass": "?"}), "note": f"failed: {payload}"})
        else:  # done
            break
    process.join(timeout=5)
    for row in rows:
        row["implementation"] = task
    return rows, peaks


def report_lines(info: tuple, rows: list, peak: float, settings: dict) -> list:
    platform, device, jax_version = info
    N, H = settings["heads"], settings["head_dim"]
    lines = [
        f"- Device: {device} (backend {platform}); jax {jax_version}; {time.strftime('%Y-%m-%d')}",
        f"- Attention: bfloat16, causal, N={N}, H={H}, T = S, B = {settings['tokens']} / T",
        f"- Matmul peak: {peak:.3g} TFLOP/s (best {settings['peak_n']}² product, sampled before "
        "every row in every process)",
        "- FLOPs: forward 2·B·N·T²·H; forward+backward 3.5 x forward",
        "",
        "| implementation | pass | T | B | ms | compile s | TFLOP/s | % of matmul peak |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        if row["implementation"] == "gpt2":
            continue
        cells = [row["implementation"], row["pass"], str(row["T"]), str(row.get("B", ""))]
        if "note" in row:
            cells += [row["note"], "", "", ""]
        else:
            cells += [
                f"{row['ms']:,.2f}",
                f"{row['compile_s']:.1f}",
                f"{row['tflops']:.3g}",
                share_of_peak(row["tflops"], peak),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "| model | T | B | ms/step | compile s | tokens/s | TFLOP/s | MFU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        if row["implementation"] != "gpt2":
            continue
        if "note" in row:
            lines.append(f"| GPT-2 | {row['T']} | | {row['note']} | | | | |")
            continue
        tokens_per_s = row["B"] * row["T"] / (row["ms"] / 1e3)
        lines.append(
            f"| {row['variant']} ({row['params']:,} params) | {row['T']} | {row['B']} | "
            f"{row['ms']:,.1f} | {row['compile_s']:.1f} | {tokens_per_s:,.0f} | "
            f"{row['tflops']:.3g} | {share_of_peak(row['tflops'], peak)} |"
        )
    return lines


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=270.0, help="seconds for the whole run")
    parser.add_argument("--row-limit", type=float, default=45.0, help="seconds per row")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=None)
    parser.add_argument("--quick", action="store_true", help="tiny shapes: a CPU smoke run")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    deadline = time.time() + args.budget
    # The parent never touches the device (a TPU admits one process; a GPU process would hold
    # memory the children need): a child reports the platform.
    info_rows, _ = run_task("info", {}, deadline, args.row_limit)
    if not info_rows or "info" not in info_rows[0]:
        print(f"error: could not start jax in a child process: {info_rows}", file=sys.stderr)
        return 1
    info = info_rows[0]["info"]
    platform = info[0]
    settings = dict(
        lengths=LENGTHS, tokens=TOKENS, heads=HEADS, head_dim=HEAD_DIM, peak_n=PEAK_N, gpt2=GPT2
    )
    if args.quick:
        settings.update(QUICK, gpt2=GPT2_QUICK)
    settings["repeats"] = 1 if args.quick else args.repeats
    rows, peaks = [], []
    for task in (*IMPLEMENTATIONS.get(platform, ("xla", "blockwise")), "gpt2"):
        if time.time() > deadline:
            rows.append({"implementation": task, "T": 0, "pass": "-", "note": "skipped: budget"})
            continue
        print(f"{task} ...", file=sys.stderr, flush=True)
        task_rows, task_peaks = run_task(task, settings, deadline, args.row_limit)
        rows += task_rows
        peaks += task_peaks
        for row in task_rows:
            print(f"  {row}", file=sys.stderr, flush=True)
    peak = max(peaks, default=float("nan"))
    text = "\n".join(report_lines(info, rows, peak, settings)) + "\n"
    print(text, end="")
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
