"""TFDS builders for the generated tasks and the offline corpora (array_record, no TensorFlow).

Importing this module registers the builders `attn_copy`, `attn_reverse`, `attn_sort`,
`attn_addition`, `attn_associative_recall`, `attn_dates`, `attn_pydoc` and `attn_digits`, each
with the configs "default" and "tiny", so that after `prepare` they load by name:

    tfds.data_source("attn_dates/tiny", split="test", data_dir=data_dir)

Copy, reverse and sort also build with another `generated.SymbolRange` (string lengths and
alphabet size): `task_builder` names that config after the range, e.g. "tiny_len1-30_abc8", so
that each range is prepared in its own folder and two ranges never read each other's files.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from attn.data import corpora, generated

VERSION = "1.0.0"


@dataclasses.dataclass(eq=False, kw_only=True)
class SizedConfig(tfds.core.BuilderConfig):
    """A builder config: split sizes (None: everything the source has) and the seed.

    Attributes:
      num_train: training examples (pydoc: paragraphs).
      num_validation: validation examples (pydoc: paragraphs).
      num_test: test examples (pydoc: paragraphs).
      seed: the seed the data are generated or split with.
      symbols: the string lengths and alphabet of copy, reverse and sort (None: the default).
    """

    num_train: int | None = None
    num_validation: int | None = None
    num_test: int | None = None
    seed: int = 0
    symbols: generated.SymbolRange | None = None

    def size(self, split: str) -> int | None:
        """The configured size of `split`."""
        return {"train": self.num_train, "validation": self.num_validation, "test": self.num_test}[
            split
        ]


class _TaskBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A generated task from `attn.data.generated`: text `inputs` → text `targets`."""

    TASK: str
    VERSION = tfds.core.Version(VERSION)
    BUILDER_CONFIGS = [  # noqa: RUF012  (the TFDS builder interface)
        SizedConfig(name="default", num_train=50_000, num_validation=1_000, num_test=1_000),
        SizedConfig(name="tiny", num_train=256, num_validation=64, num_test=64),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {"inputs": tfds.features.Text(), "targets": tfds.features.Text()}
            ),
            supervised_keys=("inputs", "targets"),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in generated.SPLITS}

    def _generate_examples(self, split: str):
        config = self.builder_config
        pairs = generated.examples(
            self.TASK,
            split,
            config.size(split),
            config.seed,
            num_validation=config.num_validation,
            num_test=config.num_test,
            symbols=config.symbols,
        )
        for i, (inputs, targets) in enumerate(pairs):
            yield i, {"inputs": inputs, "targets": targets}


def config_name(config: str, symbols: generated.SymbolRange | None) -> str:
    """The builder config name: "default"/"tiny", followed by a non-default symbol range."""
    if symbols is None or symbols.is_default:
        return config
    return f"{config}_{symbols.name}"


def task_builder(
    name: str,
    config: str,
    data_dir: str | None,
    symbols: generated.SymbolRange | None = None,
) -> tfds.core.GeneratorBasedBuilder:
    """The builder of a generated dataset in one of its configs ("default", "tiny"), with the
    sizes of that config and the strings of `symbols` (copy, reverse, sort; None: default)."""
    builder_cls = BUILDERS[name]
    if symbols is None or symbols.is_default:
        return builder_cls(config=config, data_dir=data_dir, file_format="array_record")
    generated.check_symbol_range(name, symbols)
    base = next(c for c in builder_cls.BUILDER_CONFIGS if c.name == config)
    ranged = dataclasses.replace(base, name=config_name(config, symbols), symbols=symbols)
    return builder_cls(config=ranged, data_dir=data_dir, file_format="array_record")


class AttnCopy(_TaskBuilder):
    """Copy a string of 1-20 lowercase letters (or of a `SymbolRange`)."""

    TASK = "copy"


class AttnReverse(_TaskBuilder):
    """Reverse a string of 1-20 lowercase letters (or of a `SymbolRange`)."""

    TASK = "reverse"


class AttnSort(_TaskBuilder):
    """Sort the letters of a string of 1-20 lowercase letters (or of a `SymbolRange`)."""

    TASK = "sort"


class AttnAddition(_TaskBuilder):
    """Add two numbers of 1-5 digits written as "a+b"."""

    TASK = "addition"


class AttnAssociativeRecall(_TaskBuilder):
    """Recall the digit stored under a letter key: "c7a1k4?a" → "1"."""

    TASK = "associative_recall"


class AttnDates(_TaskBuilder):
    """Translate dates written in 20 formats into ISO 8601; held-out splits use unseen days."""

    TASK = "dates"


class AttnPydoc(tfds.core.GeneratorBasedBuilder):
    """CPython's pydoc help topics, one document per paragraph, for character-level LM."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {  # noqa: RUF012  (the TFDS builder interface)
        "1.1.0": "The text of attn's snapshot of CPython 3.11.7's pydoc topics, on every Python.",
        "1.0.0": "The text of the running interpreter's pydoc_data.topics.",
    }
    BUILDER_CONFIGS = [  # noqa: RUF012  (the TFDS builder interface)
        SizedConfig(name="default"),
        SizedConfig(name="tiny", num_train=200, num_validation=20, num_test=20),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in corpora.SPLITS}

    def _generate_examples(self, split: str):
        docs = corpora.pydoc_documents(split, max_documents=self.builder_config.size(split))
        for i, text in enumerate(docs):
            yield i, {"text": text}


class AttnDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's 8×8 handwritten digits (values 0-16), split 80/10/10 by a seeded shuffle."""

    VERSION = tfds.core.Version(VERSION)
    BUILDER_CONFIGS = [  # noqa: RUF012  (the TFDS builder interface)
        SizedConfig(name="default"),
        SizedConfig(name="tiny", num_train=200, num_validation=50, num_test=50),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=corpora.DIGITS_SHAPE, dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=corpora.DIGITS_CLASSES),
                }
            ),
            supervised_keys=("image", "label"),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in corpora.SPLITS}

    def _generate_examples(self, split: str):
        config = self.builder_config
        images, labels = corpora.digits(split, seed=config.seed, max_examples=config.size(split))
        for i, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield i, {"image": image, "label": int(label)}


BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
    "copy": AttnCopy,
    "reverse": AttnReverse,
    "sort": AttnSort,
    "addition": AttnAddition,
    "associative_recall": AttnAssociativeRecall,
    "dates": AttnDates,
    "pydoc": AttnPydoc,
    "digits": AttnDigits,
}
