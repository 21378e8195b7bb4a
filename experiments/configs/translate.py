"""A Transformer translating TED talks Portuguese → English (ted_hrlr_translate/pt_to_en, 51,785
sentence pairs) or WMT 2014 German → English (wmt14_translate/de-en, 4.5M pairs): the setting of
Vaswani et al. (2017) — post-LN, shared SentencePiece vocabulary, label smoothing 0.1, Adam with
β2 = 0.98 and the inverse-square-root warmup schedule — scored with BLEU (sacrebleu).

    # once, with network access (Colab): attn.data.prepare("ted_hrlr_translate/pt_to_en")
    python experiments/train.py --config experiments/configs/translate.py --workdir runs/ted
    python experiments/train.py --config experiments/configs/translate.py:wmt14 --workdir runs/wmt14
    # smoke test on mock data (seconds): --config experiments/configs/translate.py:smoke

Options (comma-separated): "ted" (default) or "wmt14"; "smoke".
Expected: TED pt→en, "small" model, 20k steps: about 25-30 BLEU on the test set with greedy
decoding (published small-Transformer baselines on this set are 30-40). WMT14 de→en with "base"
and 100k steps of 4096 tokens: about 27-30 BLEU (not reproduced here). Runtime on a Colab TPU
v2-8 (estimated, not measured here): TED about 30 minutes; WMT14 base about a day. These need the
catalog data, which this project's CPU machine cannot download.
"""

from attn.training.config import default_config
from experiments.configs.common import parse_arg, smoke


def get_config(arg: str = ""):
    arg = parse_arg(arg, dataset=("ted", "wmt14"), smoke=False)
    wmt = arg.dataset == "wmt14"
    config = default_config()
    config.task = "seq2seq"
    config.dataset.name = "wmt14_translate/de-en" if wmt else "ted_hrlr_translate/pt_to_en"
    config.dataset.eval_split = "test"  # the split published BLEU scores use
    config.dataset.max_length = 64  # 64 pieces hold nearly every sentence
    config.dataset.vocab_size = 32000 if wmt else 8000  # a shared vocabulary (WMT: the paper's)
    config.model.family = "Transformer"
    config.model.variant = "base" if wmt else "small"  # TED's 52k pairs overfit "base"
    config.batch_size = 256 if wmt else 128  # WMT: about 4,096 tokens per batch
    config.num_train_steps = 100_000 if wmt else 20_000  # WMT: the paper's base schedule
    config.optimizer.schedule = "inverse_sqrt"  # the paper's eq. 3
    config.optimizer.learning_rate = 1.0  # the scale of D^-0.5 · min(s^-0.5, s · w^-1.5)
    config.optimizer.warmup_steps = 4000  # the paper's warmup
    config.optimizer.grad_clip_norm = 0.0  # the paper does not clip
    config.loss.label_smoothing = 0.1  # the paper's ε_ls
    config.compute_dtype = "bfloat16"  # the TPU's native matmul type; parameters stay float32
    config.log_every_steps = 100  # fewer records for a long run
    config.eval_every_steps = 5000  # decoding the test set for BLEU is slow: rarely
    config.checkpoint_every_steps = 2000  # more often than evaluations: less work lost
    config.eval.batch_size = 128  # as in training
    config.eval.num_batches = 0  # the whole test split
    config.eval.bleu = True
    if arg.smoke:
        config.dataset.max_length = 12  # short mock sentences
        config.dataset.vocab_size = 40  # a vocabulary the few mock sentences can fill
        config.model.variant = "tiny"  # 2 layers, width 64
        config.compute_dtype = "float32"  # CPUs are slow in bfloat16
        smoke(config, batch_size=4)
    return config
