"""A ViT on CIFAR-10 (50,000 train / 10,000 test 32×32 colour images, patches of 4×4: 64 patches
and a class token), trained from scratch (Dosovitskiy et al. 2021 pre-train; without
pre-training and strong augmentation ViTs trail CNNs on small data).

    # once, with network access (Colab): attn.data.prepare("cifar10")
    python experiments/train.py --config experiments/configs/cifar10_vit.py --workdir runs/cifar10
    # smoke test on mock data (seconds): --config experiments/configs/cifar10_vit.py:smoke

Expected: the "cifar" variant (6 layers, width 256), 20,000 steps of 128 images without
augmentation: about 70-75 % test accuracy. Runtime on a Colab TPU v2-8 (estimated, not measured
here): about 20 minutes.
"""

from attn.training.config import default_config
from experiments.configs.common import parse_arg, smoke


def get_config(arg: str = ""):
    arg = parse_arg(arg, smoke=False)
    config = default_config()
    config.task = "classification"
    config.dataset.name = "cifar10"
    config.dataset.eval_split = "test"  # CIFAR-10 has no validation split
    config.model.family = "ViT"
    config.model.variant = "cifar"  # 6 layers, width 256, patches of 4×4
    config.batch_size = 128  # 390 steps per epoch of 50,000 images
    config.num_train_steps = 20_000  # about 50 epochs
    config.optimizer.learning_rate = 1e-3  # AdamW's usual rate for a small ViT at batch 128
    config.optimizer.warmup_steps = 1000  # 5 % of the run
    config.optimizer.weight_decay = 0.05  # ViTs overfit small data without it (DeiT's value)
    config.loss.label_smoothing = 0.1  # the same regulariser, on the labels
    config.compute_dtype = "bfloat16"  # the TPU's native matmul type; parameters stay float32
    config.log_every_steps = 100  # fewer records for a long run
    config.eval_every_steps = 2000  # ten evaluations of the 10,000 test images
    config.checkpoint_every_steps = 2000  # a checkpoint at each evaluation
    config.eval.batch_size = 200  # the test split in 50 batches
    config.eval.num_batches = 0  # the whole test split
    if arg.smoke:
        # a one-layer model of width 32 compiles in seconds
        config.model.overrides.num_layers = 1
        config.model.overrides.model_dim = 32
        config.model.overrides.mlp_dim = 64
        config.model.overrides.num_heads = 2
        config.compute_dtype = "float32"  # CPUs are slow in bfloat16
        smoke(config, batch_size=4)
    return config
