"""A character-level TransformerLM on tiny_shakespeare (1M characters; Karpathy's char-rnn data),
or a SentencePiece TransformerLM on lm1b (the One Billion Word benchmark), scored by perplexity.

    # once, with network access (Colab): attn.data.prepare("tiny_shakespeare")
    python experiments/train.py --config experiments/configs/shakespeare_lm.py --workdir runs/tiny
    python experiments/train.py --config experiments/configs/shakespeare_lm.py:lm1b --workdir lm
    # smoke test on mock data (seconds): --config experiments/configs/shakespeare_lm.py:smoke

Options (comma-separated): "shakespeare" (default) or "lm1b"; "smoke".
Expected: tiny_shakespeare, "small" model (6 layers, width 512), 5,000 steps of 64 × 256
characters: validation loss about 1.45 nats per character (perplexity about 4.3), samples with
the look of a play. lm1b, "small", 100k steps: perplexity per word piece below 40. Runtime on a
Colab TPU v2-8 (estimated, not measured here): about 15 minutes (shakespeare), hours (lm1b).
"""

from attn.training.config import default_config
from experiments.configs.common import parse_arg, smoke


def get_config(arg: str = ""):
    arg = parse_arg(arg, dataset=("shakespeare", "lm1b"), smoke=False)
    lm1b = arg.dataset == "lm1b"
    config = default_config()
    config.task = "lm"
    config.dataset.name = "lm1b" if lm1b else "tiny_shakespeare"
    config.dataset.eval_split = "test" if lm1b else "validation"  # lm1b has no validation split
    # lm1b: 128 word pieces cover most sentences; shakespeare: 256 characters, a few lines
    config.dataset.max_length = 128 if lm1b else 256
    config.model.family = "TransformerLM"
    config.model.variant = "small"  # 6 layers, width 512
    config.model.overrides.dropout_rate = 0.1  # 1M characters overfit a small model without it
    config.batch_size = 128 if lm1b else 64  # lm1b: a larger batch for its 30M sentences
    config.num_train_steps = 100_000 if lm1b else 5000  # shakespeare: about 20 passes
    config.optimizer.learning_rate = 6e-4  # GPT-style rate for a model of this width
    config.optimizer.warmup_steps = 500  # 10 % of the shakespeare run
    config.optimizer.b2 = 0.95  # GPT's β2: steadier updates with larger batches
    config.optimizer.eps = 1e-8  # Adam's default ε
    config.optimizer.weight_decay = 0.1  # GPT's weight decay
    config.compute_dtype = "bfloat16"  # the TPU's native matmul type; parameters stay float32
    config.log_every_steps = 100  # fewer records for a long run
    config.eval_every_steps = 1000  # five evaluations of a shakespeare run
    config.checkpoint_every_steps = 1000  # a checkpoint at each evaluation
    config.eval.batch_size = 64  # as in training
    config.eval.num_batches = 50  # 50 batches: a stable estimate, quickly
    if arg.smoke:
        config.dataset.max_length = 16  # short mock texts
        config.dataset.vocab_size = 40 if lm1b else 0  # lm1b: a vocabulary mock text can fill
        config.model.variant = "tiny"  # 2 layers, width 64
        config.model.overrides.dropout_rate = 0.0  # no dropout in a 2-step check
        config.compute_dtype = "float32"  # CPUs are slow in bfloat16
        smoke(config, batch_size=4)
    return config
