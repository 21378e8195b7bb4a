"""Bert masked-language modelling (Devlin et al. 2019: 15 % of the characters chosen, 80 % of
those replaced by [MASK], 10 % by a random character, 10 % kept) on CPython's pydoc topics.

    .venv/bin/python experiments/train.py --config experiments/configs/pydoc_mlm.py \
        --workdir runs/pydoc_mlm
    # smoke test (seconds): --config experiments/configs/pydoc_mlm.py:smoke

Expected: accuracy on the masked characters above 50 % after 3,000 steps (a unigram guess gets
about 15 %): the bidirectional context recovers most letters inside words. Runtime: roughly
10-15 minutes on the project's 2-core CPU machine (estimated from the step rate; not a measured
full run).
"""

from attn.training.loop import default_config


def get_config(arg: str = ""):
    config = default_config()
    config.task = "mlm"
    config.dataset.name = "pydoc"
    config.dataset.max_length = 128
    config.model.family = "Bert"
    config.model.variant = "tiny"
    config.model.overrides.max_length = 128
    config.batch_size = 32
    config.num_train_steps = 3000
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 200
    config.optimizer.weight_decay = 0.01
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 1000
    config.eval.batch_size = 32
    config.eval.num_batches = 20
    if arg == "smoke":
        config.dataset.config = "tiny"
        config.dataset.max_length = 32
        config.batch_size = 4
        config.num_train_steps = 2
        config.log_every_steps = 1
        config.eval.batch_size = 4
        config.eval.num_batches = 1
    elif arg:
        raise ValueError(f"the pydoc_mlm config takes '' or 'smoke', got {arg!r}")
    return config
