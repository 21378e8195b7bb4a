"""A ViT on scikit-learn's 8×8 handwritten digits (1,797 images, patches of 2×2: 16 patches and
a class token; Dosovitskiy et al. 2021).

    .venv/bin/python experiments/train.py --config experiments/configs/digits_vit.py \
        --workdir runs/digits_vit
    # smoke test (seconds): --config experiments/configs/digits_vit.py:smoke

Expected: validation accuracy above 95 % after 2,000 steps. Runtime: a few minutes on the
project's 2-core CPU machine (estimated from the step rate; not a measured full run).
"""

from attn.training.config import default_config
from experiments.configs.common import parse_arg, smoke


def get_config(arg: str = ""):
    arg = parse_arg(arg, smoke=False)
    config = default_config()
    config.task = "classification"
    config.dataset.name = "digits"
    config.model.family = "ViT"
    config.model.variant = "digits"  # patches of 2×2 over the 8×8 images
    config.batch_size = 64  # 1,797 images: about 25 steps per epoch
    config.num_train_steps = 2000  # above 95 % validation accuracy by then
    config.optimizer.learning_rate = 1e-3  # AdamW's usual rate for a small ViT
    config.optimizer.warmup_steps = 100  # 5 % of the run
    config.optimizer.weight_decay = 0.05  # ViTs overfit small data without it (DeiT's value)
    config.loss.label_smoothing = 0.1  # the same regulariser, on the labels
    config.eval_every_steps = 500  # four evaluations per run
    config.checkpoint_every_steps = 500  # a checkpoint at each evaluation
    config.eval.batch_size = 100  # the validation split in a few batches
    if arg.smoke:
        config.dataset.config = "tiny"  # a few images
        smoke(config, batch_size=8)
    return config
