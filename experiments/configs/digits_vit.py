"""A ViT on scikit-learn's 8×8 handwritten digits (1,797 images, patches of 2×2: 16 patches and
a class token; Dosovitskiy et al. 2021).

    .venv/bin/python experiments/train.py --config experiments/configs/digits_vit.py \
        --workdir runs/digits_vit
    # smoke test (seconds): --config experiments/configs/digits_vit.py:smoke

Expected: validation accuracy above 95 % after 2,000 steps. Runtime: a few minutes on the
project's 2-core CPU machine (estimated from the step rate; not a measured full run).
"""

from attn.training.loop import default_config


def get_config(arg: str = ""):
    config = default_config()
    config.task = "classification"
    config.dataset.name = "digits"
    config.model.family = "ViT"
    config.model.variant = "digits"
    config.batch_size = 64
    config.num_train_steps = 2000
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 100
    config.optimizer.weight_decay = 0.05
    config.loss.label_smoothing = 0.1
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 500
    config.eval.batch_size = 100
    if arg == "smoke":
        config.dataset.config = "tiny"
        config.batch_size = 8
        config.num_train_steps = 2
        config.log_every_steps = 1
        config.eval.batch_size = 8
        config.eval.num_batches = 1
    elif arg:
        raise ValueError(f"the digits_vit config takes '' or 'smoke', got {arg!r}")
    return config
