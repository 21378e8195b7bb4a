"""Fake catalog data for tests: `tfds.testing.mock_data` made to work with batched reads.

    with attn.data.mock_catalog_data(num_examples=16):
        dataset = attn.data.load("wmt14_translate/de-en", split="train", batch_size=4)

Random examples with the catalog dataset's features replace the real files, so pipelines on
catalog datasets run offline. tfds 4.9.10's mock binds its `__getitems__` without `self` (a
MagicMock binds only the magic methods it knows), so the batched reads of `attn.data.load` fail
under plain `tfds.testing.mock_data`; this context manager supplies a batched read that works.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from unittest import mock

import tensorflow_datasets as tfds
from tensorflow_datasets.testing import mocking as tfds_mocking


def _fake_examples(record_keys: Sequence[int], generator, serialized: bool = False) -> list:
    if serialized:
        raise NotImplementedError("serialized fake reads are not supported")
    return [generator[key] for key in record_keys]


@contextlib.contextmanager
def mock_catalog_data(num_examples: int = 8) -> Iterator[None]:
    """Within the context, every TFDS catalog dataset has `num_examples` random examples per split.

    Args:
      num_examples: examples in every split (> 0).
    """
    if not isinstance(num_examples, int) or num_examples <= 0:
        raise ValueError(f"num_examples must be a positive int, got {num_examples!r}")
    with (
        mock.patch.object(tfds_mocking, "_getitems", _fake_examples),
        tfds.testing.mock_data(num_examples=num_examples, policy=tfds.testing.MockPolicy.USE_CODE),
    ):
        yield
