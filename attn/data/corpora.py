"""Real data that ships inside installed packages, split deterministically.

- "pydoc": the help topics of CPython 3.11's `pydoc_data.topics` (about 465k characters of English
  prose about Python), one document per paragraph, for character-level language modelling. The
  text differs between Python versions, so attn ships one fixed snapshot of it
  (`pydoc_topics.json.gz`, written by `tools/pydoc_topics_snapshot.py`) and reads that on every
  Python.
- "digits": scikit-learn's `load_digits` (Alpaydin & Kaynak, 1998, UCI optical recognition of
  handwritten digits): 1,797 8×8 images with 17 grey levels (0-16), labels 0-9.
"""

from __future__ import annotations

import functools
import gzip
import json
from importlib import resources

import numpy as np

SPLITS = ("train", "validation", "test")
DIGITS_SHAPE = (8, 8, 1)
DIGITS_MAX_VALUE = 16
DIGITS_CLASSES = 10


def _split_of(position: int, split_every: int) -> str:
    """Position i goes to validation when i % split_every == 1, test when == 2, else train."""
    return {1: "validation", 2: "test"}.get(position % split_every, "train")


def pydoc_topics() -> dict[str, str]:
    """The pydoc help topics shipped with attn: {topic name: text}, 79 topics, 464,970 characters.

    A fixed snapshot of CPython 3.11.7's `pydoc_data.topics` (the running interpreter's module is
    not read: it holds other text on other Python versions).
    """
    return dict(_pydoc_snapshot()["topics"])


def pydoc_snapshot_python() -> str:
    """The Python version whose `pydoc_data.topics` the shipped snapshot holds ("3.11.7")."""
    return _pydoc_snapshot()["python"]


@functools.cache
def _pydoc_snapshot() -> dict:
    data = resources.files(__package__).joinpath("pydoc_topics.json.gz").read_bytes()
    return json.loads(gzip.decompress(data).decode("utf-8"))


def pydoc_documents(split: str, *, max_documents: int | None = None) -> list[str]:
    """The pydoc paragraphs of one split.

    The topics of `pydoc_topics()`, sorted by name, are cut into paragraphs (at blank lines); of
    these 2,608 paragraphs every 20th (offset 1) is validation, every 20th (offset 2) test, the
    rest train, so each split samples the whole range of topics.

    Args:
      split: "train", "validation" or "test".
      max_documents: keep only the first this many paragraphs of the split (None: all).

    Returns:
      list of paragraph texts, in order.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    topics = pydoc_topics()
    paragraphs = [p for key in sorted(topics) for p in topics[key].split("\n\n") if p.strip()]
    return [p for i, p in enumerate(paragraphs) if _split_of(i, 20) == split][:max_documents]


def digits(split: str, *, seed: int = 0, max_examples: int | None = None):
    """The digit images of one split: a `seed` permutation of the 1,797 images, 80/10/10.

    Args:
      split: "train", "validation" or "test".
      seed: permutation seed.
      max_examples: keep only the first this many examples of the split (None: all).

    Returns:
      (images uint8[B, 8, 8, 1] with values 0-16, labels int64[B]).
    """
    from sklearn.datasets import load_digits  # slow to import: only when needed

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    data = load_digits()
    order = np.random.default_rng(seed).permutation(len(data.target))
    n_val = n_test = len(order) // 10
    parts = {
        "validation": order[:n_val],
        "test": order[n_val : n_val + n_test],
        "train": order[n_val + n_test :],
    }
    index = parts[split][:max_examples]
    images = data.images[index].astype(np.uint8).reshape((-1, *DIGITS_SHAPE))
    return images, data.target[index].astype(np.int64)
