"""Turn raw TFDS examples into fixed-shape numpy arrays, one encoder per task kind.

Every encoder is a small picklable callable (grain may run it in worker processes).
Sequences are truncated to fit, end with EOS where the layout says so, and are padded with
PAD_ID = 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from attn.data.tokenizers import BOS_ID, EOS_ID, PAD_ID, Tokenizer


def text_of(value) -> str:
    """A TFDS text feature as `str`: real sources give bytes, mocked ones str or 0-d arrays."""
    if isinstance(value, np.ndarray):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a text feature (bytes or str), got {type(value).__name__}")


def pad_ids(ids: Sequence[int], length: int) -> np.ndarray:
    """ids padded with PAD_ID (or cut) to int32[length]."""
    out = np.full((length,), PAD_ID, dtype=np.int32)
    ids = ids[:length]
    out[: len(ids)] = ids
    return out


class Seq2SeqEncoder:
    """example → inputs int32[S] = x + EOS, targets int32[T] = y + EOS (truncated, 0-padded),
    input_length int32[] = the tokens of x before truncation (without EOS)."""

    def __init__(self, tokenizer: Tokenizer, fields: Mapping[str, str], lengths: tuple[int, int]):
        self.tokenizer, self.fields, self.lengths = tokenizer, dict(fields), lengths

    def __call__(self, example: Mapping) -> dict[str, np.ndarray]:
        out = {}
        for role, length in zip(("inputs", "targets"), self.lengths, strict=True):
            ids = self.tokenizer.encode(text_of(example[self.fields[role]]))
            out[role] = pad_ids([*ids[: length - 1], EOS_ID], length)
            if role == "inputs":
                out["input_length"] = np.asarray(len(ids), dtype=np.int32)
        return out


class ClassificationEncoder:
    """example → inputs int32[T] = BOS + x + EOS (truncated, 0-padded), label int32[]."""

    def __init__(self, tokenizer: Tokenizer, fields: Mapping[str, str], length: int):
        self.tokenizer, self.fields, self.length = tokenizer, dict(fields), length

    def __call__(self, example: Mapping) -> dict[str, np.ndarray]:
        ids = self.tokenizer.encode(text_of(example[self.fields["text"]]))
        return {
            "inputs": pad_ids([BOS_ID, *ids[: self.length - 2], EOS_ID], self.length),
            "label": np.asarray(example[self.fields["label"]], dtype=np.int32),
        }


class SentenceLMEncoder:
    """example → w = BOS + x + EOS cut/padded to T+1; inputs = w[:-1], targets = w[1:]."""

    def __init__(self, tokenizer: Tokenizer, fields: Mapping[str, str], length: int):
        self.tokenizer, self.fields, self.length = tokenizer, dict(fields), length

    def __call__(self, example: Mapping) -> dict[str, np.ndarray]:
        ids = self.tokenizer.encode(text_of(example[self.fields["text"]]))
        window = pad_ids([BOS_ID, *ids, EOS_ID], self.length + 1)
        return {"inputs": window[:-1], "targets": window[1:]}


class ImageEncoder:
    """example → image float32[H, W, C] = (pixel / pixel_max - mean) / std, label int32[]."""

    def __init__(
        self,
        fields: Mapping[str, str],
        pixel_max: float,
        mean: Sequence[float],
        std: Sequence[float],
    ):
        self.fields = dict(fields)
        self.pixel_max = pixel_max
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def __call__(self, example: Mapping) -> dict[str, np.ndarray]:
        pixels = np.asarray(example[self.fields["image"]], dtype=np.float32)
        return {
            "image": (pixels / self.pixel_max - self.mean) / self.std,
            "label": np.asarray(example[self.fields["label"]], dtype=np.int32),
        }


class TokenWindows:
    """Random access to the windows of a token stream: window i = stream[i·T : i·T + T + 1],
    returned as inputs = window[:-1], targets = window[1:] (int32[T] each).

    Args:
      stream: int32[L], the concatenated documents of a split, each followed by EOS.
      length: T, the window length.
    """

    def __init__(self, stream: np.ndarray, length: int):
        if len(stream) < length + 1:
            raise ValueError(
                f"max_length must be < the split's {len(stream)} tokens to cut one window, "
                f"got {length}"
            )
        self.stream, self.length = np.asarray(stream, dtype=np.int32), length

    def __len__(self) -> int:
        return (len(self.stream) - 1) // self.length

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"window index must be in [0, {len(self)}), got {index}")
        start = index * self.length
        window = self.stream[start : start + self.length + 1]
        return {"inputs": window[:-1], "targets": window[1:]}


def token_stream(tokenizer: Tokenizer, texts) -> np.ndarray:
    """int32[L]: the ids of all texts, each followed by EOS."""
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer.encode(text_of(text), add_eos=True))
    return np.asarray(ids, dtype=np.int32)


def read_examples(source, keys: list[int]) -> list:
    """source[k] for k in keys, in one batched read (`__getitems__`) where the source has one:
    array_record reads many records far faster at once than one by one."""
    if hasattr(source, "__getitems__"):
        return list(source.__getitems__(keys))
    return [source[key] for key in keys]


class BatchReader:
    """indices int[b] → the batch of encoded examples: one batched read (`__getitems__`,
    much faster than b single reads from array_record), then `encoder` per example, stacked.

    Args:
      source: random-access examples (`__len__`, `__getitem__`, optionally `__getitems__`).
      encoder: example → dict of arrays, or None when the source yields encoded examples.
    """

    def __init__(self, source, encoder):
        self.source, self.encoder = source, encoder

    def __call__(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        examples = read_examples(self.source, [int(i) for i in np.atleast_1d(indices)])
        if not examples:  # this shard's part of a short final batch: all padding
            return {}
        if self.encoder is not None:
            examples = [self.encoder(example) for example in examples]
        return {key: np.stack([e[key] for e in examples]) for key in examples[0]}


class ShardRows:
    """indices int[b] of a global batch (b <= B) → the rows of shard i of n: indices
    [i·B/n, (i+1)·B/n), so that the shards of every batch are disjoint and together are the
    global batch. Every shard gets a (possibly empty) part of every batch, short final batch
    included: all shards read the same number of batches.

    Args:
      batch_size: B, the global batch size (divisible by n).
      shard_index: i in [0, n).
      shard_count: n.
    """

    def __init__(self, batch_size: int, shard_index: int, shard_count: int):
        self.rows = batch_size // shard_count
        self.start = shard_index * self.rows

    def __call__(self, indices: np.ndarray) -> np.ndarray:
        return np.atleast_1d(indices)[self.start : self.start + self.rows]


class CompleteBatch:
    """Pads a short final batch with zero rows to B and adds `valid` bool[B] (False on them).

    Args:
      batch_size: B.
      layout: key → (shape of one row, dtype): the rows of a batch that has none.
    """

    def __init__(self, batch_size: int, layout: Mapping[str, tuple[tuple[int, ...], Any]]):
        self.batch_size = batch_size
        self.layout = layout

    def __call__(self, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not batch:
            batch = {
                key: np.zeros((0, *shape), dtype) for key, (shape, dtype) in self.layout.items()
            }
        size = len(next(iter(batch.values())))
        missing = self.batch_size - size
        out = {
            key: np.concatenate([value, np.zeros((missing, *value.shape[1:]), value.dtype)])
            if missing
            else value
            for key, value in batch.items()
        }
        out["valid"] = np.arange(self.batch_size) < size
        return out
