"""What every named dataset is: its TFDS name, task kind, splits, fields and defaults."""

from __future__ import annotations

import dataclasses

from attn.data import corpora, generated

KINDS = ("seq2seq", "lm", "classification", "image_classification")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """How `attn.data.load` reads and encodes one dataset.

    Attributes:
      name: the name users pass to `load` / `prepare`.
      tfds_name: the TFDS builder name (with its config for catalog datasets).
      kind: one of KINDS.
      splits: the split names.
      fields: role → TFDS feature key; roles are "inputs"/"targets" (seq2seq), "text" (lm,
        classification), "image", "label".
      generated: True for the builders in `attn.data.builders` (configs "default", "tiny").
      tokenizer: the default tokenizer kind, "char" or "sentencepiece" (None for images).
      alphabet: a fixed character alphabet (generated tasks), else the tokenizer is fitted on
        the training split.
      vocab_size: default SentencePiece vocabulary size.
      max_length: default sequence lengths: (S, T) for seq2seq, T otherwise (images: None).
      lm_stream: LM corpora only: True to cut windows from the concatenated split, False to
        read one sentence per example.
      num_classes: classes of classification datasets.
      image_shape: (H, W, C) of image datasets.
      pixel_max: the largest raw pixel value.
      pixel_mean: per-channel mean of pixel / pixel_max.
      pixel_std: per-channel standard deviation of pixel / pixel_max.
    """

    name: str
    tfds_name: str
    kind: str
    splits: tuple[str, ...]
    fields: dict[str, str]
    generated: bool = False
    tokenizer: str | None = "char"
    alphabet: str | None = None
    vocab_size: int = 8_000
    max_length: int | tuple[int, int] | None = None
    lm_stream: bool = False
    num_classes: int | None = None
    image_shape: tuple[int, int, int] | None = None
    pixel_max: float = 255.0
    pixel_mean: tuple[float, ...] = ()
    pixel_std: tuple[float, ...] = ()


_THREE_SPLITS = ("train", "validation", "test")
_SEQ2SEQ_FIELDS = {"inputs": "inputs", "targets": "targets"}


def _generated_spec(name: str) -> DatasetSpec:
    task = generated.TASKS[name]
    return DatasetSpec(
        name=name,
        tfds_name=f"attn_{name}",
        kind="seq2seq",
        splits=generated.SPLITS,
        fields=_SEQ2SEQ_FIELDS,
        generated=True,
        alphabet=generated.ALPHABET,
        max_length=(task.max_input_length + 1, task.max_target_length + 1),  # + EOS
    )


DATASETS: dict[str, DatasetSpec] = {
    **{name: _generated_spec(name) for name in generated.TASKS},
    "pydoc": DatasetSpec(
        name="pydoc",
        tfds_name="attn_pydoc",
        kind="lm",
        splits=corpora.SPLITS,
        fields={"text": "text"},
        generated=True,
        max_length=128,
        lm_stream=True,
    ),
    "digits": DatasetSpec(
        name="digits",
        tfds_name="attn_digits",
        kind="image_classification",
        splits=corpora.SPLITS,
        fields={"image": "image", "label": "label"},
        generated=True,
        tokenizer=None,
        num_classes=corpora.DIGITS_CLASSES,
        image_shape=corpora.DIGITS_SHAPE,
        pixel_max=float(corpora.DIGITS_MAX_VALUE),
        pixel_mean=(0.3053,),
        pixel_std=(0.3760,),
    ),
    "wmt14_translate/de-en": DatasetSpec(
        name="wmt14_translate/de-en",
        tfds_name="wmt14_translate/de-en",
        kind="seq2seq",
        splits=_THREE_SPLITS,
        fields={"inputs": "de", "targets": "en"},
        tokenizer="sentencepiece",
        vocab_size=32_000,
        max_length=(64, 64),
    ),
    "ted_hrlr_translate/pt_to_en": DatasetSpec(
        name="ted_hrlr_translate/pt_to_en",
        tfds_name="ted_hrlr_translate/pt_to_en",
        kind="seq2seq",
        splits=_THREE_SPLITS,
        fields={"inputs": "pt", "targets": "en"},
        tokenizer="sentencepiece",
        max_length=(64, 64),
    ),
    "tiny_shakespeare": DatasetSpec(
        name="tiny_shakespeare",
        tfds_name="tiny_shakespeare",
        kind="lm",
        splits=_THREE_SPLITS,
        fields={"text": "text"},
        max_length=128,
        lm_stream=True,
    ),
    "lm1b": DatasetSpec(
        name="lm1b",
        tfds_name="lm1b",
        kind="lm",
        splits=("train", "test"),
        fields={"text": "text"},
        tokenizer="sentencepiece",
        vocab_size=32_000,
        max_length=64,
    ),
    "imdb_reviews": DatasetSpec(
        name="imdb_reviews",
        tfds_name="imdb_reviews",
        kind="classification",
        splits=("train", "test"),
        fields={"text": "text", "label": "label"},
        tokenizer="sentencepiece",
        max_length=256,
        num_classes=2,
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        tfds_name="cifar10",
        kind="image_classification",
        splits=("train", "test"),
        fields={"image": "image", "label": "label"},
        tokenizer=None,
        num_classes=10,
        image_shape=(32, 32, 3),
        pixel_mean=(0.4914, 0.4822, 0.4465),
        pixel_std=(0.2470, 0.2435, 0.2616),
    ),
}
