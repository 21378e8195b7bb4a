"""The main job: a small Transformer translates dates into ISO 8601 ("Monday, November 23rd 2026"
→ "2026-11-23"), character by character, on generated data.

    make train
    # or: .venv/bin/python experiments/train.py --config experiments/configs/dates.py \
    #         --workdir runs/dates
    # smoke test (seconds): --config experiments/configs/dates.py:smoke

Expected: >= 95 % exact match (greedy decoding) on the 1,000 validation dates (calendar days
never seen in training): measured 83 % at step 400 and 99.9 % at step 1,200, with
cross-attention maps that align each output digit with the day, month or year in the input.
Runtime: 2 min 4 s wall for `make train` (data generation included) on the project's 2-core
CPU machine with other jobs running (load average about 2); about 17 steps/s.
"""

from attn.training.loop import default_config


def get_config(arg: str = ""):
    config = default_config()
    config.task = "seq2seq"
    config.dataset.name = "dates"
    config.model.family = "Transformer"
    config.model.variant = "tiny"
    config.batch_size = 64
    config.num_train_steps = 1200
    config.optimizer.learning_rate = 3e-3
    config.optimizer.warmup_steps = 100
    config.eval_every_steps = 400
    config.checkpoint_every_steps = 400
    if arg == "smoke":
        config.dataset.config = "tiny"
        config.batch_size = 8
        config.num_train_steps = 2
        config.log_every_steps = 1
        config.eval.batch_size = 8
        config.eval.num_batches = 1
    elif arg:
        raise ValueError(f"the dates config takes '' or 'smoke', got {arg!r}")
    return config
