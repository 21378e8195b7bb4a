"""Seq2SeqRNN on generated sequence tasks: the bottleneck of a fixed-size summary against attention
(Sutskever et al. 2014; Bahdanau et al. 2015; Luong et al. 2015).

    .venv/bin/python experiments/train.py \
        --config experiments/configs/rnn_seq2seq.py:reverse,bahdanau --workdir runs/rev_att
    .venv/bin/python experiments/train.py \
        --config experiments/configs/rnn_seq2seq.py:reverse,bottleneck --workdir runs/rev

The argument is a comma-separated list: a task ("reverse" (default) or "sort"), a model
("bahdanau" (default): bidirectional GRU with additive attention; "luong": stacked LSTM with the
general score; "bottleneck": LSTM without attention, reversed source), and "smoke" (a few
seconds on tiny data).

Expected: with attention, > 90 % exact match on held-out sequences of 1-20 symbols and diagonal
(reverse) or sorted (sort) alignment maps; the bottleneck model stays far below on long sequences
(its errors grow with the length). Runtime: about 5-10 minutes per run on the project's 2-core
CPU machine (estimated from the step rate; not a measured full run).
"""

from attn.training.config import default_config
from experiments.configs.common import parse_arg, smoke


def get_config(arg: str = ""):
    arg = parse_arg(
        arg, task=("reverse", "sort"), model=("bahdanau", "luong", "bottleneck"), smoke=False
    )
    config = default_config()
    config.task = "seq2seq"
    config.dataset.name = arg.task
    config.model.family = "Seq2SeqRNN"
    config.model.variant = arg.model
    config.batch_size = 64  # sequences of 1-20 symbols: fast steps on CPU
    config.num_train_steps = 3000  # attention reaches > 90 % exact match by then
    config.optimizer.learning_rate = 3e-3  # small recurrent models on clean data train fast
    config.optimizer.warmup_steps = 100  # a short warmup for a short run
    config.eval_every_steps = 1000  # three evaluations per run
    config.checkpoint_every_steps = 1000  # a checkpoint at each evaluation
    # the bottleneck model has no attention to plot
    config.eval.num_attention_maps = 2 if config.model.variant != "bottleneck" else 0
    if arg.smoke:
        config.dataset.config = "tiny"  # a few generated sequences
        smoke(config, batch_size=8)
    return config
