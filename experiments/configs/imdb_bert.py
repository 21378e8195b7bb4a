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

from attn.training.config import default_config
from experiments.configs.common import parse_arg, smoke


def get_config(arg: str = ""):
    arg = parse_arg(arg, smoke=False)
    config = default_config()
    config.task = "classification"
    config.dataset.name = "imdb_reviews"
    config.dataset.eval_split = "test"  # IMDB has no validation split
    config.dataset.max_length = 256  # the first 256 tokens carry most of a review's sentiment
    config.dataset.vocab_size = 8000  # SentencePiece pieces: enough for English reviews
    config.model.family = "Bert"
    config.model.variant = "mini"  # 4 layers, width 256 (Turc et al. 2019)
    config.model.overrides.max_length = 256  # a position table as long as the reviews
    config.model.overrides.dropout_rate = 0.1  # BERT's dropout: 25,000 reviews overfit without
    config.batch_size = 64  # about 390 steps per epoch
    config.num_train_steps = 4000  # about 10 epochs
    config.optimizer.learning_rate = 5e-4  # small BERTs train at 1e-4 to 1e-3
    config.optimizer.warmup_steps = 400  # 10 % of the run
    config.optimizer.weight_decay = 0.01  # BERT's weight decay
    config.compute_dtype = "bfloat16"  # the TPU's native matmul type; parameters stay float32
    config.log_every_steps = 100  # fewer records for a long run
    config.eval_every_steps = 1000  # four evaluations of the 25,000 test reviews
    config.checkpoint_every_steps = 1000  # a checkpoint at each evaluation
    config.eval.batch_size = 100  # the test split in 250 batches
    config.eval.num_batches = 0  # the whole test split
    if arg.smoke:
        config.dataset.max_length = 16  # short mock reviews
        config.dataset.vocab_size = 40  # a vocabulary the few mock reviews can fill
        config.model.variant = "tiny"  # 2 layers, width 64
        config.model.overrides.max_length = 16  # as the data
        config.model.overrides.dropout_rate = 0.0  # no dropout in a 2-step check
        config.compute_dtype = "float32"  # CPUs are slow in bfloat16
        smoke(config, batch_size=4)
    return config
