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

from attn.training.loop import default_config


def get_config(arg: str = ""):
    options = [part for part in arg.split(",") if part]
    unknown = [o for o in options if o not in ("shakespeare", "lm1b", "smoke")]
    if unknown:
        raise ValueError(
            f"shakespeare_lm options are 'shakespeare' or 'lm1b', and 'smoke'; got {unknown}"
        )
    lm1b = "lm1b" in options
    config = default_config()
    config.task = "lm"
    config.dataset.name = "lm1b" if lm1b else "tiny_shakespeare"
    config.dataset.eval_split = "test" if lm1b else "validation"
    config.dataset.max_length = 128 if lm1b else 256
    config.model.family = "TransformerLM"
    config.model.variant = "small"
    config.model.overrides.dropout_rate = 0.1
    config.batch_size = 128 if lm1b else 64
    config.num_train_steps = 100_000 if lm1b else 5000
    config.optimizer.learning_rate = 6e-4
    config.optimizer.warmup_steps = 500
    config.optimizer.b2 = 0.95
    config.optimizer.eps = 1e-8
    config.optimizer.weight_decay = 0.1
    config.compute_dtype = "bfloat16"
    config.log_every_steps = 100
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 1000
    config.eval.batch_size = 64
    config.eval.num_batches = 50
    if "smoke" in options:
        config.dataset.max_length = 16
        config.dataset.vocab_size = 40 if lm1b else 0
        config.model.variant = "tiny"
        config.model.overrides.dropout_rate = 0.0
        config.compute_dtype = "float32"
        config.batch_size = 4
        config.num_train_steps = 2
        config.log_every_steps = 1
        config.eval.batch_size = 4
        config.eval.num_batches = 1
    return config
