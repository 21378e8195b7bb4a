"""One of two processes on this machine joined by `attn.training.distributed.initialize`.

Run by `tests/training/distributed_test.py` as
`python two_process_check.py <coordinator host:port> <process id> <checkpoint dir>`, with 2 CPU
devices per process. Process i contributes the rows [i+1, i+1] to a global [4] array sharded over
the 4 devices of both processes; the script prints the psum of a `shard_map`, a jitted global sum,
the all-gathered array and the array after a checkpoint round trip written by both processes as
one JSON line, which the test checks.
"""

from __future__ import annotations

import json
import sys

import jax

from attn.training import distributed


def main(coordinator: str, process_id: int, checkpoint_dir: str) -> None:
    jax.config.update("jax_num_cpu_devices", 2)
    info = distributed.initialize(coordinator, num_processes=2, process_id=process_id)

    import jax.numpy as jnp
    import numpy as np
    from jax.experimental import multihost_utils
    from jax.sharding import PartitionSpec as P

    from attn.training import sharding
    from attn.training.checkpoint import Checkpointer

    mesh = sharding.make_mesh({"data": -1})
    batch = sharding.batch_sharding(mesh)
    rows = np.full((2,), process_id + 1, np.float32)  # this process's 2 of the 4 rows
    x = sharding.shard_batch(rows, batch)

    psum = jax.jit(
        jax.shard_map(
            lambda block: jax.lax.psum(jnp.sum(block), "data"),
            mesh=mesh,
            in_specs=P("data"),
            out_specs=P(),
        )
    )(x)
    total = jax.jit(lambda v: jnp.sum(v * v))(x)
    gathered = multihost_utils.process_allgather(x, tiled=True)

    # Both processes write their shards into one checkpoint and read them back.
    with Checkpointer(checkpoint_dir) as ckpt:
        ckpt.save(1, {"x": x * 10, "data": {"process_count": info.process_count}})
    with Checkpointer(checkpoint_dir) as ckpt:
        step, restored = ckpt.restore_latest({"x": x, "data": None})
    restored_rows = multihost_utils.process_allgather(restored["x"], tiled=True)
    print(
        json.dumps(
            {
                "process_index": info.process_index,
                "process_count": info.process_count,
                "device_count": info.device_count,
                "local_device_count": info.local_device_count,
                "psum": float(psum),
                "sum_of_squares": float(total),
                "gathered": np.asarray(gathered).tolist(),
                "restored_step": step,
                "restored": np.asarray(restored_rows).tolist(),
                "restored_data": restored["data"],
            }
        ),
        flush=True,
    )
    jax.distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
