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

from attn.training.config import default_config
from experiments.configs.common import parse_arg, smoke


def get_config(arg: str = ""):
    arg = parse_arg(arg, smoke=False)
    config = default_config()
    config.task = "mlm"
    config.dataset.name = "pydoc"
    config.dataset.max_length = 128  # 128 characters: a few sentences of context
    config.model.family = "Bert"
    config.model.variant = "tiny"
    config.model.overrides.max_length = 128  # a position table as long as the data
    config.batch_size = 32  # 32 × 128 = 4,096 characters per step
    config.num_train_steps = 3000  # about 26 passes over the 465k characters
    config.optimizer.learning_rate = 1e-3  # half of pydoc_lm's: the masked loss is noisier
    config.optimizer.warmup_steps = 200  # 7 % of the run
    config.optimizer.weight_decay = 0.01  # a light regulariser for a small corpus
    config.eval_every_steps = 1000  # three evaluations per run
    config.checkpoint_every_steps = 1000  # a checkpoint at each evaluation
    config.eval.batch_size = 32  # as in training
    config.eval.num_batches = 20  # 20 × 32 × 128 = 82k validation characters
    if arg.smoke:
        config.dataset.config = "tiny"  # a few paragraphs
        config.dataset.max_length = 32  # short sequences compile and run fast
        smoke(config, batch_size=4)
    return config
