# ---
# jupyter:
#   accelerator: TPU
#   colab:
#     gpuType: V5E1
#     provenance: []
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: accelerator,colab
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Scale: sharding a model over devices, and attention over long contexts
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/TO-BE-SET-ON-PUBLICATION/attn/blob/TO-BE-SET-ON-PUBLICATION/colab/07_scale.ipynb)
#
# What you will learn:
# - how `attn.training.sharding` lays a Transformer LM out over a (data, fsdp, tensor) mesh:
#   data parallel (every device holds every parameter), FSDP (parameters split along the model
#   width), tensor parallel (heads and MLP units split), with the printed plan of each;
# - that the sharded training step computes the same losses as one device, while each device
#   holds a fraction of the parameters, and which collectives XLA inserts for each layout;
# - that a dimension which does not divide its mesh axis is an error that names it;
# - at `full` scale on an accelerator: the memory and time of XLA attention against the
#   blockwise (online-softmax) kernel, forward and backward, from 2k to 32k tokens.
#
# The mesh is built from 8 fake CPU devices, so this runs on any runtime, a free CPU one
# included (the free Colab TPU is a single v5e chip).
#
# | scale | what runs | time |
# |---|---|---|
# | `ci` | a 1-layer LM, 2 steps per layout | about 20 s of CPU time (measured) |
# | `cpu` | a 2-layer LM, 10 steps per layout | about 25 s of CPU time (measured) |
# | `full` | the `cpu` run and the long-context sweep on the accelerator | about 5 min on a v5e (estimate) |
#
# The scale is the form field of the set-up cell; the environment variable `ATTN_NOTEBOOK_SCALE`
# (`ci`, `cpu` or `full`) wins over it. Every result below is checked by an `assert`.

# %% cellView="form"
# @title Set-up: installs attn with a matching JAX and checks the accelerator (safe to re-run)
SCALE = "auto"  # @param ["auto", "ci", "cpu", "full"]
# The next three lines equal [project.urls] of attn's pyproject.toml and the jax pin of its
# constraints file (a test checks); every notebook has this same cell.
ATTN_REPOSITORY = "https://github.com/TO-BE-SET-ON-PUBLICATION/attn"
ATTN_DOWNLOAD = (
    "https://github.com/TO-BE-SET-ON-PUBLICATION/attn/archive/TO-BE-SET-ON-PUBLICATION.zip"
)
JAX_VERSION = "0.10.2"
import importlib.metadata
import importlib.util
import os
import pathlib
import subprocess
import sys
import tempfile
import urllib.request


class SetupError(Exception):
    """Stops the notebook with one line (IPython prints `_render_traceback_` instead of a trace)."""

    def _render_traceback_(self):
        return [f"Set-up stopped: {self}"]


def installed_version(distribution):
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


# The runtime, read from what is installed, without importing jax.
if installed_version("libtpu"):
    RUNTIME, JAX_REQUIREMENT = "tpu", f"jax[tpu]=={JAX_VERSION}"
elif installed_version("jax-cuda12-plugin"):
    RUNTIME, JAX_REQUIREMENT = "gpu", f"jax[cuda12]=={JAX_VERSION}"
else:
    RUNTIME, JAX_REQUIREMENT = "cpu", f"jax=={JAX_VERSION}"

if importlib.util.find_spec("attn") is None:
    if "jax" in sys.modules:
        raise SetupError(
            "jax was imported before this cell; Runtime > Restart session, run this first"
        )
    source = os.environ.get("ATTN_SOURCE")
    if source:
        source = pathlib.Path(source).expanduser().resolve().as_uri()
    else:
        try:
            urllib.request.urlopen(urllib.request.Request(ATTN_DOWNLOAD, method="HEAD"), timeout=30)
        except (OSError, ValueError) as error:
            raise SetupError(
                f"attn is not installed, ATTN_SOURCE is not set and {ATTN_DOWNLOAD} cannot be "
                f"reached ({error}); set ATTN_SOURCE to a checkout of {ATTN_REPOSITORY}"
            ) from None
        source = ATTN_DOWNLOAD
    # Colab preloads numpy and runs on its own ipykernel/ipython: upgrading them forces a restart.
    keep = [f"{name}=={installed_version(name)}" for name in ("numpy", "ipykernel", "ipython")]
    keep = [pin for pin in keep if not pin.endswith("==None")]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as constraints:
        constraints.write("\n".join(keep) + "\n")
    print(f"Installing {JAX_REQUIREMENT} and attn[all] from {source}, keeping {', '.join(keep)}")
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "-c",
            constraints.name,
            JAX_REQUIREMENT,
            f"attn[all] @ {source}",
        ],
        capture_output=True,
        text=True,
    )
    print(
        "\n".join(
            line for line in (pip.stdout + pip.stderr).splitlines() if "is ignored" not in line
        )
    )
    if pip.returncode:
        raise SetupError(f"pip install failed (exit {pip.returncode}); its output is above")
    importlib.invalidate_caches()

# JAX looks at the accelerator in a subprocess, so this notebook can still set JAX options itself.
probe = subprocess.run(
    [
        sys.executable,
        "-c",
        "import attn, jax; print(jax.default_backend(), jax.__version__, jax.devices())",
    ],
    capture_output=True,
    text=True,
)
if probe.returncode:
    raise SetupError(f"import attn, jax failed: {(probe.stderr.strip().splitlines() or ['?'])[-1]}")
BACKEND, jax_version, devices = probe.stdout.strip().split(" ", 2)
if RUNTIME != "cpu" and BACKEND != RUNTIME:
    raise SetupError(f"this is a {RUNTIME.upper()} runtime but JAX runs on {BACKEND}: {devices}")
SCALE = os.environ.get("ATTN_NOTEBOOK_SCALE") or SCALE
if SCALE == "auto":
    SCALE = "cpu" if BACKEND == "cpu" else "full"
if SCALE not in ("ci", "cpu", "full"):
    raise SetupError(f"SCALE must be auto, ci, cpu or full, got {SCALE!r}")
print(f"runtime {RUNTIME}, jax {jax_version} on {BACKEND} {devices}, scale {SCALE}")

# %% [markdown]
# ## 8 CPU devices
#
# JAX reads the number of CPU devices when it first starts a backend, so it is set here, before any
# computation (the set-up cell looked at the accelerator in a subprocess for this reason). On a
# TPU or GPU runtime the accelerator stays JAX's default device; the mesh uses the CPU devices.

# %%
import jax

jax.config.update("jax_num_cpu_devices", 8)
import dataclasses
import time

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from attn.kernels import dot_product_attention
from attn.models import TransformerLM, TransformerLMConfig
from attn.training import sharding

CPUS = jax.devices("cpu")
print(CPUS)
assert len(CPUS) == 8
jax.config.update("jax_default_device", CPUS[0])  # the model and data start on CPU 0

SIZES = {
    "ci": dict(layers=1, heads=4, width=32, mlp=64, vocab=64, length=12, batch=8, steps=2),
    "cpu": dict(layers=2, heads=8, width=128, mlp=512, vocab=256, length=64, batch=16, steps=10),
    "full": dict(layers=2, heads=8, width=128, mlp=512, vocab=256, length=64, batch=16, steps=10),
}[SCALE]
print(SIZES)

# %% [markdown]
# ## A model, a loss and one training step
#
# A `TransformerLM` on random token ids, the next-token cross-entropy and plain SGD. The step is
# written once; `jax.jit` is told where the parameters and the batch live (`in_shardings`) and
# inserts the communication each layout needs.

# %%
config = TransformerLMConfig(
    vocab_size=SIZES["vocab"],
    num_layers=SIZES["layers"],
    num_heads=SIZES["heads"],
    model_dim=SIZES["width"],
    mlp_dim=SIZES["mlp"],
    max_length=SIZES["length"],
    tie_embeddings=False,
)
graphdef, params, rest = nnx.split(TransformerLM(config, rngs=nnx.Rngs(0)), nnx.Param, ...)
batches = np.random.default_rng(0).integers(
    0, SIZES["vocab"], (SIZES["steps"], SIZES["batch"], SIZES["length"] + 1), np.int32
)


def next_token_loss(params, ids):
    """Mean cross-entropy of predicting ids[:, t + 1] from ids[:, : t + 1]."""
    logits = nnx.merge(graphdef, params, rest)(ids[:, :-1])
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(log_probs, ids[:, 1:, None], axis=-1).mean()


def sgd_step(params, ids, learning_rate=0.5):
    loss, grads = jax.value_and_grad(next_token_loss)(params, ids)
    return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads), loss


# %% [markdown]
# ## Four layouts
#
# The mesh always has the axes (data, fsdp, tensor). The plan maps each parameter's logical axes
# (embed, heads, mlp, vocab …) to mesh axes; printed for each layout with the shard one device
# holds.

# %%
LAYOUTS = {
    "one device": None,
    "data parallel (data=8)": {"data": 8},
    "FSDP (data=2, fsdp=4)": {"data": 2, "fsdp": 4},
    "tensor parallel (data=2, tensor=4)": {"data": 2, "tensor": 4},
}
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
runs = {}
for name, shape in LAYOUTS.items():
    mesh = sharding.make_mesh(shape or {}, devices=CPUS if shape else CPUS[:1])
    param_shardings = sharding.param_shardings(params, mesh)
    batch_sharding = sharding.batch_sharding(mesh)
    print(f"\n== {name}\n{sharding.plan_table(params, mesh)}")
    placed = sharding.shard(params, param_shardings)
    step = jax.jit(
        sgd_step,
        in_shardings=(param_shardings, batch_sharding),
        out_shardings=(param_shardings, None),
    )
    first_batch = sharding.shard_batch(batches[0], batch_sharding)
    hlo = step.lower(placed, first_batch).compile().as_text()
    trained, losses = placed, []
    for ids in batches:
        trained, loss = step(trained, sharding.shard_batch(ids, batch_sharding))
        losses.append(float(loss))
    runs[name] = dict(
        mesh=mesh,
        placed=placed,
        trained=trained,
        losses=losses,
        collectives={op: hlo.count(f" {op}(") + hlo.count(f" {op}-start(") for op in COLLECTIVES},
        device_bytes=sum(
            s.data.nbytes
            for leaf in jax.tree.leaves(placed)
            for s in leaf.addressable_shards
            if s.device == CPUS[0]
        ),
    )

# %% [markdown]
# ## Same losses, a fraction of the memory
#
# Every layout computes the same function, so the losses agree with one device up to float32
# rounding (the sums run in another order). FSDP and tensor parallelism keep a quarter of most
# matrices on each device; data parallelism keeps everything everywhere.
#
# Under FSDP, XLA may log an "involuntary full rematerialization" of the position embeddings: it
# gathers that small table whole before slicing it, which costs nothing that matters here.

# %%
total_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(params))
print(f"{'layout':36} {'losses':40} {'MiB on CPU 0':>12}  collectives in the step")
for name, run in runs.items():
    losses = " ".join(f"{loss:.6f}" for loss in run["losses"][:4])
    used = {op: n for op, n in run["collectives"].items() if n}
    print(f"{name:36} {losses:40} {run['device_bytes'] / 2**20:12.4f}  {used}")

figure, (left, *grids) = plt.subplots(
    1, 3, figsize=(15, 3.8), width_ratios=[1.6, 1, 1], layout="constrained"
)
left.barh(
    [name.split(" (")[0] for name in runs], [r["device_bytes"] / total_bytes for r in runs.values()]
)
left.set(xlabel="parameter bytes on CPU 0 / all parameter bytes", xlim=(0, 1.05))
left.invert_yaxis()
watched = "blocks/0/self_attention/query/kernel"
for ax, name in zip(
    grids, ("FSDP (data=2, fsdp=4)", "tensor parallel (data=2, tensor=4)"), strict=True
):
    leaf = next(
        leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(runs[name]["placed"])[0]
        if sharding.path_name(path) == watched
    )
    owner = np.full(leaf.shape, -1)
    for shard in sorted(leaf.addressable_shards, key=lambda s: -s.device.id):
        owner[shard.index] = shard.device.id  # the lowest device id holding each entry
    ax.imshow(owner, cmap="tab10", vmin=0, vmax=9, aspect="auto")
    ax.set(
        title=f"{name.split(' (')[0]}: {watched.split('/', 1)[1]}\n{leaf.sharding.spec}, colour = device",
        xlabel="N·H",
        ylabel="D",
    )
plt.show()

# %% [markdown]
# The checks. Exact at every scale: the placed parameters are the original numbers, bit for bit;
# each parameter's shards tile it; one device needs no collective; data parallelism keeps every
# byte on every device. Within float32 rounding: the losses and the trained parameters.

# %%
for name, run in runs.items():
    for original, placed in zip(
        jax.tree.leaves(params), jax.tree.leaves(run["placed"]), strict=True
    ):
        assert np.array_equal(np.asarray(original), np.asarray(placed)), name
        distinct = {str(s.index): s.data.size for s in placed.addressable_shards}
        assert sum(distinct.values()) == original.size, name
reference = runs["one device"]
assert sum(reference["collectives"].values()) == 0
assert runs["data parallel (data=8)"]["device_bytes"] == total_bytes
assert runs["FSDP (data=2, fsdp=4)"]["device_bytes"] < 0.5 * total_bytes
assert runs["tensor parallel (data=2, tensor=4)"]["device_bytes"] < 0.6 * total_bytes
assert reference["losses"][-1] < reference["losses"][0]  # it learns (repeated random batches)
for name, run in runs.items():
    np.testing.assert_allclose(run["losses"], reference["losses"], rtol=2e-5, err_msg=name)
    for a, b in zip(
        jax.tree.leaves(run["trained"]), jax.tree.leaves(reference["trained"]), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-5, err_msg=name)
print("same losses and parameters on every layout")

# %% [markdown]
# ## A plan that does not fit is an error, not a silent copy
#
# A vocabulary of 60 cannot be split over 8 tensor-parallel devices. The plan says which
# parameter, which dimension and which sizes, instead of replicating it quietly.

# %%
odd = jax.eval_shape(
    lambda: nnx.state(
        TransformerLM(dataclasses.replace(config, vocab_size=60), rngs=nnx.Rngs(0)),
        nnx.Param,
    )
)
try:
    sharding.param_shardings(odd, sharding.make_mesh({"tensor": 8}, devices=CPUS))
    raise AssertionError("a vocabulary of 60 over 8 devices was accepted")
except ValueError as error:
    print("ValueError:", error)
    assert "60" in str(error) and "8" in str(error)

# %% [markdown]
# ## Long contexts on the accelerator (`full` scale only)
#
# Standard attention materialises the [B, N, T, S] score matrix: at T = 32k and 8 heads that is
# 16 GiB in bfloat16 for one example, all of a v5e chip's 16 GB, and the backward pass keeps
# more. The blockwise kernel (online softmax over key blocks, as in Rabe & Staats 2021 and
# FlashAttention) keeps O(T) memory. Below: XLA's compiled scratch memory (`memory_analysis`) and
# the time of forward + backward, causal, for growing T. It runs only at `full` scale on a TPU
# or GPU; elsewhere it says so and skips.

# %%
if SCALE == "full" and BACKEND != "cpu":
    accelerator = jax.devices()[0]
    print(accelerator, accelerator.device_kind)
    sweep = []
    rng = np.random.default_rng(0)
    for T in (2048, 4096, 8192, 16384, 32768):
        qkv = [
            jax.device_put(jnp.asarray(rng.normal(size=(1, T, 8, 128)), jnp.bfloat16), accelerator)
            for _ in range(3)
        ]
        for implementation in ("xla", "blockwise"):

            def loss(q, k, v, implementation=implementation):
                out = dot_product_attention(q, k, v, is_causal=True, implementation=implementation)
                return out.astype(jnp.float32).sum()

            row = dict(T=T, implementation=implementation)
            try:
                compiled = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(*qkv).compile()
                row["scratch_GiB"] = compiled.memory_analysis().temp_size_in_bytes / 2**30
                jax.block_until_ready(compiled(*qkv))
                start = time.perf_counter()
                jax.block_until_ready(compiled(*qkv))
                row["ms"] = 1e3 * (time.perf_counter() - start)
            except Exception as error:  # out of memory at long T is a result, not a crash
                row["error"] = str(error).splitlines()[0][:80]
            print(row)
            sweep.append(row)
    figure, ax = plt.subplots(figsize=(6, 3.6))
    for implementation in ("xla", "blockwise"):
        done = [r for r in sweep if r["implementation"] == implementation and "scratch_GiB" in r]
        ax.plot(
            [r["T"] for r in done], [r["scratch_GiB"] for r in done], "o-", label=implementation
        )
    ax.set(xscale="log", yscale="log", xlabel="T", ylabel="compiled scratch (GiB)")
    ax.legend()
    plt.show()
    small = [jax.device_put(x[:, :2048], accelerator) for x in qkv]
    xla_out, blockwise_out = (
        dot_product_attention(*small, is_causal=True, implementation=i)
        for i in ("xla", "blockwise")
    )
    assert (
        float(jnp.abs(xla_out.astype(jnp.float32) - blockwise_out.astype(jnp.float32)).max()) < 0.05
    )
    by = {(r["T"], r["implementation"]): r for r in sweep}
    assert by[8192, "blockwise"]["scratch_GiB"] < by[8192, "xla"]["scratch_GiB"]
else:
    print(
        f"long-context sweep skipped: it runs at scale 'full' on a TPU or GPU (here {SCALE!r} on {BACKEND})"
    )

# %%
print(f"notebook 07 passed its checks at scale {SCALE!r}")
