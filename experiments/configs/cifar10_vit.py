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

from attn.training.loop import default_config


def get_config(arg: str = ""):
    config = default_config()
    config.task = "classification"
    config.dataset.name = "cifar10"
    config.dataset.eval_split = "test"
    config.model.family = "ViT"
    config.model.variant = "cifar"
    config.batch_size = 128
    config.num_train_steps = 20_000
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 1000
    config.optimizer.weight_decay = 0.05
    config.loss.label_smoothing = 0.1
    config.compute_dtype = "bfloat16"
    config.log_every_steps = 100
    config.eval_every_steps = 2000
    config.checkpoint_every_steps = 2000
    config.eval.batch_size = 200
    config.eval.num_batches = 0
    if arg == "smoke":
        config.model.overrides.num_layers = 1
        config.model.overrides.model_dim = 32
        config.model.overrides.mlp_dim = 64
        config.model.overrides.num_heads = 2
        config.compute_dtype = "float32"
        config.batch_size = 4
        config.num_train_steps = 2
        config.log_every_steps = 1
        config.eval.batch_size = 4
        config.eval.num_batches = 1
    elif arg:
        raise ValueError(f"the cifar10_vit config takes '' or 'smoke', got {arg!r}")
    return config
