"""A character-level TransformerLM (GPT-style, pre-LN, causal) on CPython's pydoc topics, prose
that ships with Python (about 465k characters).

    .venv/bin/python experiments/train.py --config experiments/configs/pydoc_lm.py \
        --workdir runs/pydoc_lm
    # smoke test (seconds): --config experiments/configs/pydoc_lm.py:smoke

Expected: validation perplexity per character below about 4 (loss < 1.4 nats) after 3,000
steps, from 70+ at the start; the self-attention maps show heads that look at the previous
character and at the start of the current word. Runtime: roughly 10-15 minutes on the project's
2-core CPU machine (estimated from the step rate; not a measured full run).
"""

from attn.training.config import default_config
from experiments.configs.common import parse_arg, smoke


def get_config(arg: str = ""):
    arg = parse_arg(arg, smoke=False)
    config = default_config()
    config.task = "lm"
    config.dataset.name = "pydoc"
    config.dataset.max_length = 128  # 128 characters: a few sentences of context
    config.model.family = "TransformerLM"
    config.model.variant = "tiny"
    config.model.overrides.max_length = 128  # a position table as long as the data
    config.batch_size = 32  # 32 × 128 = 4,096 characters per step
    config.num_train_steps = 3000  # about 26 passes over the 465k characters
    config.optimizer.learning_rate = 2e-3  # a small character model learns fast at a high rate
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
