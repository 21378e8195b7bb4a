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

from attn.training.loop import default_config


def get_config(arg: str = ""):
    options = [part for part in arg.split(",") if part]
    unknown = [o for o in options if o not in ("ted", "wmt14", "smoke")]
    if unknown:
        raise ValueError(f"translate options are 'ted' or 'wmt14', and 'smoke'; got {unknown}")
    wmt = "wmt14" in options
    config = default_config()
    config.task = "seq2seq"
    config.dataset.name = "wmt14_translate/de-en" if wmt else "ted_hrlr_translate/pt_to_en"
    config.dataset.eval_split = "test"
    config.dataset.max_length = 64
    config.dataset.vocab_size = 32000 if wmt else 8000
    config.model.family = "Transformer"
    config.model.variant = "base" if wmt else "small"
    config.batch_size = 256 if wmt else 128
    config.num_train_steps = 100_000 if wmt else 20_000
    config.optimizer.schedule = "inverse_sqrt"
    config.optimizer.learning_rate = 1.0  # the scale of D^-0.5 · min(s^-0.5, s · w^-1.5)
    config.optimizer.warmup_steps = 4000
    config.optimizer.grad_clip_norm = 0.0
    config.loss.label_smoothing = 0.1
    config.compute_dtype = "bfloat16"
    config.log_every_steps = 100
    config.eval_every_steps = 5000
    config.checkpoint_every_steps = 2000
    config.eval.batch_size = 128
    config.eval.num_batches = 0
    config.eval.bleu = True
    if "smoke" in options:
        config.dataset.max_length = 12
        config.dataset.vocab_size = 40
        config.model.variant = "tiny"
        config.compute_dtype = "float32"
        config.batch_size = 4
        config.num_train_steps = 2
        config.log_every_steps = 1
        config.eval.batch_size = 4
        config.eval.num_batches = 1
    return config
