"""Where the blockwise kernel's forward time goes on the CPU: the two block products against the
online-softmax passes (mask, max, exp, rescale, sums).

Run:

    python benchmarks/blockwise_parts.py --length 4096 --block-q 512 --block-k 256 --repeats 5

Causal self-attention, B=1, N=8, H=64, float32. Every variant below runs the kernel's own loop
(`lax.map` over query blocks, `lax.fori_loop` over key blocks, `lax.cond` on the causal block
schedule of `attn.kernels.blockwise.block_schedule`) on the kernel's layout ([B, K, G, T, H]
queries, [B, K, S, H] keys and values); only the body of one (query block, key block) pair
changes:

  - "kernel": `attn.kernels.blockwise_attention` itself, for reference
  - "full body": the kernel's body rebuilt here: logits, element mask (masked logits at -inf),
    running max, exp, rescale, sums, both products (should time like "kernel")
  - "zero after exp": the full body as the kernel had it before: masked logits at a finite floor
    and the probabilities zeroed after the exp (XLA's CPU code made that select twice, once per
    consumer: two more passes over the scores)
  - "no mask": the full body without the causal element mask (a wrong result on the diagonal
    blocks; timing only)
  - "products only": s = scale · q kᵀ and acc += s v, nothing else: the matmul floor
  - "products + exp": the products and one exp pass over the scores
  - "products + max": the products and one row-max pass over the scores

The share of the softmax passes is (full body − products only) / full body. The timed calls of
all variants alternate (one of each per round, after a warm-up call each); best of --repeats.
The matmul peak of the run (`measure.PeakMeter`, n = 2048) is sampled before and after.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax
from measure import PeakMeter, compile_timed, machine_line, progress, table_line, write_report

from attn.kernels import blockwise_attention
from attn.kernels.attention import mask_value
from attn.kernels.blockwise import block_schedule

B, N, H = 1, 8, 64

# A body maps (q_i, k_j, v_j, (m, l, acc), allowed) to the new (m, l, acc).
Body = Callable


def full_body(q_i, k_j, v_j, state, allowed, *, masking="-inf"):
    """masking: "-inf" (the kernel's: masked logits at -inf, so e^(s - m) = 0), "zero after exp"
    (the kernel's before: masked logits at the finite floor, probabilities zeroed after the exp)
    or "none" (no mask)."""
    m, l, acc = state
    s = jnp.einsum("BKGqH,BKkH->BKGqk", q_i, k_j) * (1.0 / H**0.5)
    if masking != "none":
        s = jnp.where(allowed, s, -jnp.inf if masking == "-inf" else mask_value(jnp.float32))
    m_new = jnp.maximum(m, jnp.max(s, axis=-1))
    p = jnp.exp(s - m_new[..., None])
    if masking == "zero after exp":
        p = jnp.where(allowed, p, 0.0)
    correction = jnp.exp(m - m_new)
    l = l * correction + jnp.sum(p, axis=-1)
    pv = jnp.einsum("BKGqk,BKkH->BKGqH", p, v_j)
    return m_new, l, acc * correction[..., None] + pv


def products_only(q_i, k_j, v_j, state, allowed, *, extra=None):
    m, l, acc = state
    s = jnp.einsum("BKGqH,BKkH->BKGqk", q_i, k_j) * (1.0 / H**0.5)
    if extra == "exp":
        s = jnp.exp(s)
    if extra == "max":
        m = jnp.maximum(m, jnp.max(s, axis=-1))
    return m, l, acc + jnp.einsum("BKGqk,BKkH->BKGqH", s, v_j)


BODIES: dict[str, Body] = {
    "full body": full_body,
    "zero after exp": functools.partial(full_body, masking="zero after exp"),
    "no mask": functools.partial(full_body, masking="none"),
    "products only": products_only,
    "products + exp": functools.partial(products_only, extra="exp"),
    "products + max": functools.partial(products_only, extra="max"),
}


def blockwise_loop(body: Body, T: int, block_q: int, block_k: int) -> Callable:
    """The kernel's forward loop over the causal block schedule with `body` per visible block;
    q, k, v [B, T, N, H] in, the unnormalised accumulator [B, N, 1, T, H] out."""
    visible = jnp.asarray(block_schedule(T, T, block_q=block_q, block_k=block_k, is_causal=True))
    floor = mask_value(jnp.float32)

    def run(query, key, value):
        q = query.transpose(0, 2, 1, 3)[:, :, None]  # [B, K, G=1, T, H]
        k, v = key.transpose(0, 2, 1, 3), value.transpose(0, 2, 1, 3)  # [B, K, S, H]

        def query_block(i):
            q_i = lax.dynamic_slice_in_dim(q, i * block_q, block_q, axis=3)

            def key_block(j, state):
                k_j = lax.dynamic_slice_in_dim(k, j * block_k, block_k, axis=2)
                v_j = lax.dynamic_slice_in_dim(v, j * block_k, block_k, axis=2)
                q_pos = i * block_q + jnp.arange(block_q)
                k_pos = j * block_k + jnp.arange(block_k)
                allowed = k_pos[None, :] <= q_pos[:, None]
                return body(q_i, k_j, v_j, state, allowed)

            def maybe(j, state):
                return lax.cond(visible[i, j], key_block, lambda _, s: s, j, state)

            state = (
                jnp.full((B, N, 1, block_q), floor),
                jnp.zeros((B, N, 1, block_q)),
                jnp.zeros((B, N, 1, block_q, H)),
            )
            return lax.fori_loop(0, visible.shape[1], maybe, state)[2]

        return lax.map(query_block, jnp.arange(visible.shape[0]))

    return run


def block_cost(body: Body, block_q: int, block_k: int) -> dict[str, float]:
    """XLA's cost analysis of one compiled (query block, key block) body on the diagonal (masked):
    GFLOP, transcendentals (exp) and MB accessed (each fused op's operands and outputs), plus
    the number of fused ops that write a whole [N, block_q, block_k] array: the passes over the
    scores that reach memory. Deterministic: it does not depend on the machine's load."""
    q_i = jax.ShapeDtypeStruct((B, N, 1, block_q, H), jnp.float32)
    kv_j = jax.ShapeDtypeStruct((B, N, block_k, H), jnp.float32)
    state = (
        jax.ShapeDtypeStruct((B, N, 1, block_q), jnp.float32),
        jax.ShapeDtypeStruct((B, N, 1, block_q), jnp.float32),
        jax.ShapeDtypeStruct((B, N, 1, block_q, H), jnp.float32),
    )
    allowed = jax.ShapeDtypeStruct((block_q, block_k), jnp.bool_)
    compiled = jax.jit(body).lower(q_i, kv_j, kv_j, state, allowed).compile()
    cost = compiled.cost_analysis()
    score_shapes = (f"[{N},{block_q},{block_k}]", f"[{B},{N},1,{block_q},{block_k}]")
    entry = compiled.as_text().split("ENTRY", 1)[1]
    writes = sum(
        1
        for line in entry.splitlines()
        if " = f32" in line
        and any(shape + "{" in line.replace(" ", "") for shape in score_shapes)
        and "bitcast(" not in line
    )
    return {
        "gflop": cost.get("flops", 0.0) / 1e9,
        "exp": cost.get("transcendentals", 0.0),
        "mb": cost.get("bytes accessed", 0.0) / 1e6,
        "score_writes": writes,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--block-q", type=int, default=512)
    parser.add_argument("--block-k", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    T, bq, bk = args.length, args.block_q, args.block_k
    if T % bq or T % bk:
        raise ValueError(f"--length {T} must be a multiple of --block-q {bq} and --block-k {bk}")
    meter = PeakMeter()
    meter.sample()
    keys = jax.random.split(jax.random.key(0), 3)
    q, k, v = (jax.random.normal(key, (B, T, N, H), jnp.float32) for key in keys)
    functions = {
        "kernel": functools.partial(blockwise_attention, is_causal=True, block_q=bq, block_k=bk)
    }
    functions |= {name: blockwise_loop(body, T, bq, bk) for name, body in BODIES.items()}
    calls = {}
    for name, fn in functions.items():
        compiled, _ = compile_timed(fn, (q, k, v))
        calls[name] = functools.partial(compiled, q, k, v)
        jax.block_until_ready(calls[name]())  # warm-up
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(args.repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(call())
            times[name].append(1e3 * (time.perf_counter() - start))
    peak = meter.sample()
    best = {name: min(samples) for name, samples in times.items()}
    num_blocks = int(block_schedule(T, T, block_q=bq, block_k=bk, is_causal=True).sum())
    product_flops = num_blocks * 2 * (2 * B * N * bq * bk * H)  # two products per visible block
    full = best["full body"]
    lines = [
        "# Where the blockwise forward time goes",
        "",
        f"- Machine: {machine_line()}",
        f"- Causal, B={B}, N={N}, H={H}, float32, T = S = {T}, blocks {bq}x{bk}: {num_blocks} "
        f"visible blocks, {product_flops / 1e9:.1f} GFLOP in the two block products",
        meter.line(),
        f"- ms: best of {args.repeats}, the variants' calls alternating",
        "",
        table_line(["variant", "ms", "share of full body", "product GFLOP/s", "% matmul peak"]),
        table_line(["---", "---:", "---:", "---:", "---:"]),
    ]
    for name, ms in best.items():
        gflops = product_flops / (1e6 * ms)
        lines.append(
            table_line(
                [name, f"{ms:,.1f}", f"{ms / full:.0%}", f"{gflops:.1f}", f"{gflops / peak:.0%}"]
            )
        )
    lines += [
        "",
        f"- softmax passes (full body - products only): {full - best['products only']:,.1f} ms, "
        f"{(full - best['products only']) / full:.0%} of the full body",
        f"- element mask (full body - no mask): {full - best['no mask']:,.1f} ms",
    ]
    lines += [
        "",
        f"XLA's cost analysis of one masked {bq}x{bk} block body (deterministic):",
        "",
        table_line(["variant", "GFLOP", "exp calls", "MB accessed", "writes of a score block"]),
        table_line(["---", "---:", "---:", "---:", "---:"]),
    ]
    for name, body in BODIES.items():
        cost = block_cost(body, bq, bk)
        lines.append(
            table_line(
                [
                    name,
                    f"{cost['gflop']:.3f}",
                    f"{cost['exp']:,.0f}",
                    f"{cost['mb']:,.1f}",
                    str(cost["score_writes"]),
                ]
            )
        )
    progress(f"matmul peak {peak:.1f} GFLOP/s")
    write_report(lines, args.output)


if __name__ == "__main__":
    main()
