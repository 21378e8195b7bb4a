"""Bert sentiment classification of IMDB movie reviews (25,000 train / 25,000 test; positive or
negative), trained from scratch: the pooled [CLS] representation into a 2-way classifier.

    # once, with network access (Colab): attn.data.prepare("imdb_reviews")
    python experiments/train.py --config experiments/configs/imdb_bert.py --workdir runs/imdb
    # smoke test on mock data (seconds): --config experiments/configs/imdb_bert.py:smoke

Expected: "mini" Bert (4 layers, width 256) from scratch, reviews cut to 256 SentencePiece
tokens, 4,000 steps: about 85 % test accuracy (pre-trained BERT-base reaches 94 %; from scratch
the model learns bag-of-words-like cues). Runtime on a Colab TPU v2-8 (estimated, not measured
here): about 15 minutes.
"""

from attn.training.loop import default_config


def get_config(arg: str = ""):
    config = default_config()
    config.task = "classification"
    config.dataset.name = "imdb_reviews"
    config.dataset.eval_split = "test"
    config.dataset.max_length = 256
    config.dataset.vocab_size = 8000
    config.model.family = "Bert"
    config.model.variant = "mini"
    config.model.overrides.max_length = 256
    config.model.overrides.dropout_rate = 0.1
    config.batch_size = 64
    config.num_train_steps = 4000
    config.optimizer.learning_rate = 5e-4
    config.optimizer.warmup_steps = 400
    config.optimizer.weight_decay = 0.01
    config.compute_dtype = "bfloat16"
    config.log_every_steps = 100
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 1000
    config.eval.batch_size = 100
    config.eval.num_batches = 0
    if arg == "smoke":
        config.dataset.max_length = 16
        config.dataset.vocab_size = 40
        config.model.variant = "tiny"
        config.model.overrides.max_length = 16
        config.model.overrides.dropout_rate = 0.0
        config.compute_dtype = "float32"
        config.batch_size = 4
        config.num_train_steps = 2
        config.log_every_steps = 1
        config.eval.batch_size = 4
        config.eval.num_batches = 1
    elif arg:
        raise ValueError(f"the imdb_bert config takes '' or 'smoke', got {arg!r}")
    return config
