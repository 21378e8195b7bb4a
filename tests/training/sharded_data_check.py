"""One process of a training run over `num_processes` processes on this machine.

Run by `tests/training/faults_test.py` as
`python sharded_data_check.py <coordinator host:port> <process id> <num processes> <workdir>
<data dir>`: two processes of one CPU device each, or one process of two devices (the same
2-device mesh and the same global batches: the same numbers). It trains the dates smoke config
for 2 steps, evaluates on the first 7 validation dates (an odd count: the two processes cannot
split it evenly) and prints one JSON line: the input rows of the training batches this process
fed, and the evaluation metrics.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import jax

ROOT = Path(__file__).resolve().parents[2]


def dates_config(data_dir: str):
    spec = importlib.util.spec_from_file_location(
        "dates_config", ROOT / "experiments/configs/dates.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("smoke")
    config.dataset.data_dir = data_dir
    config.dataset.eval_split = "validation[:7]"
    config.eval.batch_size = 4
    config.eval.num_batches = 0  # the whole split: 2 batches, the second with 3 real rows
    config.eval.num_attention_maps = 1
    return config


def main(coordinator: str, process_id: int, num_processes: int, workdir: str, data_dir: str):
    jax.config.update("jax_num_cpu_devices", 2 // num_processes)
    if num_processes > 1:
        from attn.training import distributed

        distributed.initialize(coordinator, num_processes=num_processes, process_id=process_id)

    from attn.data import loader
    from attn.training.loop import train_and_evaluate

    fed: list[list[str]] = []
    iterator = loader.Dataset.iterator

    def recording_iterator(self):
        inner = iterator(self)
        if self.info.split != "train":
            return inner

        class Recording:
            def __next__(self):
                batch = next(inner)
                fed.append([" ".join(map(str, row)) for row in batch["inputs"][batch["valid"]]])
                return batch

            def get_state(self):
                return inner.get_state()

            def set_state(self, state):
                inner.set_state(state)

        return Recording()

    loader.Dataset.iterator = recording_iterator
    result = train_and_evaluate(dates_config(data_dir), workdir)
    print(json.dumps({"train_rows": fed, "eval": result.eval}), flush=True)
    if num_processes > 1:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
