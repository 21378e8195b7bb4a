"""Training and checkpoints of a small TransformerLM on 8 fake CPU devices, in its own process.

Run by `tests/training/sharding_test.py` as `python multidevice_check.py <workdir>` with
XLA_FLAGS=--xla_force_host_platform_device_count=8. Prints one JSON line with, for each mesh
(one device; data=8; data=2·fsdp=4; data=2·tensor=4): the losses of 3 AdamW steps of the
library's train step (`attn.training.steps`, next-token cross-entropy), and the mesh spec and
per-device shard shapes of some parameters, of their Adam moments and of the counters. Then the
results of restoring a checkpoint written under fsdp=4 onto tensor=4 and onto one device, and the
errors raised for a dimension that does not divide its mesh axis and an indivisible batch.
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from attn.models import TransformerLM, TransformerLMConfig
from attn.training import sharding
from attn.training.checkpoint import Checkpointer
from attn.training.steps import create_train_state, make_train_step
from attn.training.tasks import LMTask

CONFIG = TransformerLMConfig(
    vocab_size=64,
    num_layers=1,
    num_heads=4,
    model_dim=32,
    mlp_dim=48,
    max_length=16,
    tie_embeddings=False,
)
MESHES = {
    "single": None,
    "data": {"data": 8},
    "fsdp": {"data": 2, "fsdp": 4},
    "tensor": {"data": 2, "tensor": 4},
}
WATCHED = (
    "blocks/0/self_attention/query/kernel",
    "blocks/0/self_attention/out/kernel",
    "blocks/0/mlp/input_proj/kernel",
    "blocks/0/mlp/output_proj/bias",
    "token_embedding/embedding",
    "lm_head/kernel",
    "final_norm/scale",
)
STEPS = 3
TRAIN_KEY = jax.random.key(7)


def batches() -> np.ndarray:
    """[STEPS, B=8, T+1=13] token ids in [5, V), the same for every mesh."""
    return np.random.default_rng(0).integers(5, CONFIG.vocab_size, (STEPS, 8, 13), np.int32)


def lm_batch(ids: np.ndarray) -> dict:
    return {"inputs": ids[:, :-1], "targets": ids[:, 1:]}


TASK = LMTask("TransformerLM", vocab_size=CONFIG.vocab_size)
STATE = create_train_state(
    TASK, CONFIG, optax.adamw(1e-2, weight_decay=0.1), init_key=jax.random.key(0)
)


def build(mesh: jax.sharding.Mesh):
    """The (model, optimizer) arrays placed by the sharding plan and the jitted train step."""
    arrays_sharding = sharding.param_shardings(STATE.arrays, mesh)
    arrays = sharding.shard(jax.tree.map(jnp.copy, STATE.arrays), arrays_sharding)
    batch_sharding = sharding.batch_sharding(mesh)
    train_step = make_train_step(
        TASK, STATE, arrays_sharding=arrays_sharding, batch_sharding=batch_sharding
    )

    def step(arrays, ids, index):
        batch = sharding.shard_batch(lm_batch(ids), batch_sharding)
        arrays, metrics = train_step(arrays, batch, TRAIN_KEY, jnp.asarray(index, jnp.int32))
        total, count = metrics["loss"]
        return arrays, float(total / count)

    return arrays, step


def describe(tree) -> dict:
    """path → mesh spec and per-device shard shapes, for the watched parameters, their Adam
    moments and the counters."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = sharding.path_name(path)
        if name.endswith((*WATCHED, "count", "step")) and "/nu/" not in name:
            out[name] = {
                "spec": [None if s is None else str(s) for s in leaf.sharding.spec],
                "shards": sorted({tuple(s.data.shape) for s in leaf.addressable_shards}),
                "num_shards": len({str(s.index) for s in leaf.addressable_shards}),
            }
    return out


def make(shape):
    if shape is None:
        return sharding.make_mesh({}, devices=jax.devices()[:1])
    return sharding.make_mesh(shape)


def main(workdir: str) -> None:
    data = batches()
    report: dict = {"device_count": jax.device_count(), "meshes": {}}
    states = {}
    for name, shape in MESHES.items():
        mesh = make(shape)
        arrays, step = build(mesh)
        losses = []
        for index, ids in enumerate(data):
            arrays, loss = step(arrays, ids, index)
            losses.append(loss)
        report["meshes"][name] = {
            "losses": losses,
            "arrays": describe(arrays),
            "plan": sharding.plan_table(arrays, mesh),
        }
        states[name] = (arrays, step)

    # A checkpoint written under fsdp=4 restores onto tensor=4 and onto one device.
    arrays, fsdp_step = states["fsdp"]
    saved = {"state": arrays, "rng": TRAIN_KEY, "data": {"index": 24}}
    with Checkpointer(f"{workdir}/ckpt", async_save=True) as ckpt:
        ckpt.save(STEPS, saved)
    next_ids = data[0]
    _, next_loss_saved = fsdp_step(jax.tree.map(jnp.copy, arrays), next_ids, STEPS)
    restores = {}
    for name in ("tensor", "single"):
        mesh = make(MESHES[name])
        target = {
            "state": sharding.abstract_with_shardings(
                arrays, sharding.param_shardings(arrays, mesh)
            ),
            "rng": jax.ShapeDtypeStruct((), TRAIN_KEY.dtype, sharding=NamedSharding(mesh, P())),
            "data": None,
        }
        with Checkpointer(f"{workdir}/ckpt") as ckpt:
            step, restored = ckpt.restore_latest(target)
        equal = jax.tree.map(
            lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))),
            arrays,
            restored["state"],
        )
        description = describe(restored["state"])
        _, next_loss = states[name][1](restored["state"], next_ids, STEPS)
        restores[name] = {
            "step": step,
            "all_equal": all(jax.tree.leaves(equal)),
            "rng_equal": bool(
                np.array_equal(jax.random.key_data(restored["rng"]), jax.random.key_data(TRAIN_KEY))
            ),
            "data": restored["data"],
            "arrays": description,
            "next_loss_restored": next_loss,
            "next_loss_saved": next_loss_saved,
        }
    report["restores"] = restores

    # vocab 60 over tensor=8 does not divide.
    odd = jax.eval_shape(
        lambda: nnx.state(
            TransformerLM(
                TransformerLMConfig(vocab_size=60, num_layers=1, model_dim=32, mlp_dim=48),
                rngs=nnx.Rngs(0),
            ),
            nnx.Param,
        )
    )
    try:
        sharding.param_shardings(odd, sharding.make_mesh({"tensor": 8}))
        report["indivisible_error"] = None
    except ValueError as error:
        report["indivisible_error"] = str(error)
    try:
        sharding.shard_batch(
            np.zeros((6, 13), np.int32), sharding.batch_sharding(make(MESHES["data"]))
        )
        report["batch_error"] = None
    except ValueError as error:
        report["batch_error"] = str(error)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
