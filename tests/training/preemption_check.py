"""A training-loop stand-in that saves a checkpoint and exits 0 on SIGTERM.

Run by `tests/training/checkpoint_test.py` as `python preemption_check.py <directory>`. Each step
adds 1 to a counter array; the script prints "ready" after its first step, and on SIGTERM saves
the state of the current step with `force=True`, waits for the write and prints "saved <step>".
"""

from __future__ import annotations

import signal
import sys
import time

import jax.numpy as jnp

from attn.training.checkpoint import Checkpointer
from attn.training.preemption import PreemptionGuard


def main(directory: str) -> None:
    ckpt = Checkpointer(directory, save_interval_steps=1000)
    counter = jnp.zeros((3,), jnp.float32)
    with PreemptionGuard() as guard:
        step = 0
        while True:
            step += 1
            counter = counter + 1
            if step == 1:
                print("ready", flush=True)
            if guard.requested:
                ckpt.save(step, {"counter": counter, "data": {"step": step}}, force=True)
                ckpt.close()
                print(f"saved {step}", flush=True)
                break
            time.sleep(0.01)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


if __name__ == "__main__":
    main(sys.argv[1])
