"""`prepare` and `load`: named datasets → checkpointable grain iterators of fixed-shape batches.

The pipeline is

    example indices → shuffle(seed) → repeat(num_epochs) → batch(B) → this shard's rows →
    read from tfds.data_source(split) and encode

as a `grain.MapDataset`, turned into an iterator whose `get_state()` / `set_state()` capture its
position, so a resumed run reads exactly the batches the uninterrupted run would have read.
Shuffling is a seeded global permutation, different (and deterministic) in every epoch.

Several processes (`shard_options`, e.g. `grain.sharding.ShardByJaxProcess()`) build the same
global batches of B rows and each reads its own B/n of every one: process i of n gets rows
[i·B/n, (i+1)·B/n), disjoint from the others', and together they are the batches one process
would read. All processes read the same number of batches (the short final batch of an
evaluation split is padded on each process with rows marked `valid=False`), so collectives over
the batches never wait for a process that has run out.
"""

from __future__ import annotations

import dataclasses
import fcntl
import math
import os

import grain
import jax
import numpy as np

from attn.data import builders, encoding, generated
from attn.data.catalog import catalog_source, prepare_catalog
from attn.data.specs import DATASETS, DatasetSpec
from attn.data.tokenizers import CharTokenizer, SentencePieceTokenizer, Tokenizer

_TFDS_DEFAULT = "~/tensorflow_datasets"  # where TFDS reads and writes without a data_dir

CONFIGS = ("default", "tiny")
TOKENIZER_KINDS = ("char", "sentencepiece")
TOKENIZER_SAMPLE_SIZE = 50_000  # training examples a tokenizer is fitted on


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a training loop needs to know about a loaded dataset.

    Attributes:
      name: the dataset name.
      kind: "seq2seq", "lm", "classification" or "image_classification".
      split: the split that was loaded.
      num_examples: examples in the split (LM corpora cut into windows: windows).
      batch_size: the rows of each batch this process reads: B / n of n shards (B alone).
      num_batches: batches the iterator yields (None when it repeats forever).
      element_spec: batch key → `jax.ShapeDtypeStruct` of the batch arrays, e.g.
        {"inputs": [B, S] int32, "targets": [B, T] int32, "valid": [B] bool}.
      tokenizer: the tokenizer of text datasets (None for images); save it with the run.
      vocab_size: V of the tokenizer (None for images).
      num_classes: classes of (image) classification datasets, else None.
      image_shape: (H, W, C) of image datasets, else None.
    """

    name: str
    kind: str
    split: str
    num_examples: int
    batch_size: int
    num_batches: int | None
    element_spec: dict[str, jax.ShapeDtypeStruct]
    tokenizer: Tokenizer | None = None
    vocab_size: int | None = None
    num_classes: int | None = None
    image_shape: tuple[int, int, int] | None = None


class Dataset:
    """A loaded split: `iterator()` gives a fresh checkpointable iterator over its batches.

    Iterating the `Dataset` itself is the same as iterating `iterator()`. Each batch is a dict of
    numpy arrays whose shapes and dtypes are `info.element_spec`.
    """

    def __init__(self, batches: grain.MapDataset, info: DatasetInfo, num_threads: int):
        self._batches = batches
        self._num_threads = num_threads
        self.info = info

    def iterator(self) -> grain.DatasetIterator:
        """A new iterator at the start; `get_state()` returns its position as a small dict and
        `set_state(state)` moves it there (e.g. after restoring a checkpoint)."""
        options = grain.ReadOptions(num_threads=self._num_threads, prefetch_buffer_size=4)
        return iter(self._batches.to_iter_dataset(options))

    def __iter__(self):
        return self.iterator()

    def __repr__(self) -> str:
        info = self.info
        return f"Dataset({info.name!r}, split={info.split!r}, batch_size={info.batch_size})"


def list_datasets() -> list[str]:
    """Names accepted by `load` and `prepare`."""
    return list(DATASETS)


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"name must be one of {list(DATASETS)}, got {name!r}")
    return DATASETS[name]


def _check_config(spec: DatasetSpec, config: str) -> None:
    if spec.generated and config not in CONFIGS:
        raise ValueError(f"config must be one of {CONFIGS} for {spec.name!r}, got {config!r}")
    if not spec.generated and config != "default":
        raise ValueError(
            f"config must be 'default' for the catalog dataset {spec.name!r} (its variant is "
            f"part of the name), got {config!r}"
        )


def prepare(
    name: str,
    data_dir: str | None = None,
    *,
    config: str = "default",
    symbols: generated.SymbolRange | None = None,
) -> None:
    """Writes a dataset's array_record files to `data_dir` unless they are already there.

    Generated tasks and offline corpora are built locally (the default "dates" config, 52,000
    examples, takes about 10 s on one CPU core). Catalog datasets are downloaded and prepared,
    which needs network access.

    Args:
      name: a name from `list_datasets()`.
      data_dir: the TFDS data directory (None: TFDS's default, usually ~/tensorflow_datasets).
      config: "default" or "tiny" (a few hundred examples) for generated datasets.
      symbols: copy, reverse and sort: the lengths and alphabet size of their strings (None:
        1-20 letters of a-z). The range is part of the TFDS config name ("tiny_len1-30_abc8"),
        so each range is prepared apart from the others.
    """
    spec = _spec(name)
    _check_config(spec, config)
    generated.check_symbol_range(name, symbols)
    if spec.generated:
        root = os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR", _TFDS_DEFAULT))
        os.makedirs(root, exist_ok=True)
        config_name = builders.config_name(config, symbols)
        with open(os.path.join(root, f".{name}-{config_name}.lock"), "w") as lock:
            # Another process preparing the same dataset: wait for it, then find it prepared.
            fcntl.flock(lock, fcntl.LOCK_EX)
            builders.task_builder(name, config, data_dir, symbols).download_and_prepare()
    else:
        prepare_catalog(spec.tfds_name, data_dir)


def _source(spec: DatasetSpec, split: str, data_dir: str | None, config: str, symbols):
    if spec.generated:
        prepare(spec.name, data_dir, config=config, symbols=symbols)
        return builders.task_builder(spec.name, config, data_dir, symbols).as_data_source(split)
    return catalog_source(spec.name, spec.tfds_name, split, data_dir)


def _training_texts(spec: DatasetSpec, data_dir: str | None, config: str, symbols) -> list[str]:
    """Texts of (the first TOKENIZER_SAMPLE_SIZE examples of) the training split."""
    source = _source(spec, "train", data_dir, config, symbols)
    roles = ("inputs", "targets") if spec.kind == "seq2seq" else ("text",)
    examples = encoding.read_examples(source, list(range(min(len(source), TOKENIZER_SAMPLE_SIZE))))
    return [encoding.text_of(e[spec.fields[role]]) for e in examples for role in roles]


def _tokenizer(
    spec: DatasetSpec,
    tokenizer: Tokenizer | str | None,
    vocab_size: int | None,
    data_dir: str | None,
    config: str,
    symbols: generated.SymbolRange | None,
) -> Tokenizer | None:
    if spec.tokenizer is None:
        if tokenizer is not None:
            raise ValueError(f"tokenizer must be None for the image dataset {spec.name!r}")
        return None
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    kind = spec.tokenizer if tokenizer is None else tokenizer
    if kind not in TOKENIZER_KINDS:
        raise ValueError(
            f"tokenizer must be a Tokenizer, one of {TOKENIZER_KINDS} or None, got {tokenizer!r}"
        )
    if kind == "char" and spec.alphabet is not None:
        return CharTokenizer(spec.alphabet)
    texts = _training_texts(spec, data_dir, config, symbols)
    if kind == "char":
        return CharTokenizer.from_texts(texts)
    lines = [line for text in texts for line in text.splitlines()]
    return SentencePieceTokenizer.train(lines, vocab_size or spec.vocab_size)


def _lengths(spec: DatasetSpec, max_length, symbols) -> int | tuple[int, int] | None:
    if spec.kind == "image_classification":
        if max_length is not None:
            raise ValueError(f"max_length must be None for the image dataset {spec.name!r}")
        return None
    if max_length is None and symbols is not None:
        longest_input, longest_target = generated.TASKS[spec.name].max_lengths(symbols)
        return longest_input + 1, longest_target + 1  # + EOS
    if max_length is None:
        return spec.max_length
    values = (max_length,) if isinstance(max_length, int) else tuple(max_length)
    minimum = 3 if spec.kind == "classification" else 2
    if not all(isinstance(v, int) and v >= minimum for v in values) or len(values) not in (1, 2):
        raise ValueError(
            f"max_length must be an int >= {minimum} (or (S, T) for seq2seq), got {max_length!r}"
        )
    if spec.kind == "seq2seq":
        return (values[0], values[-1])
    if len(values) != 1:
        raise ValueError(f"max_length must be one int T for a {spec.kind} dataset, got {values}")
    return values[0]


def _shard(shard_options: grain.sharding.ShardOptions | None, batch_size: int) -> tuple[int, int]:
    """(shard index i, shard count n) of `shard_options`, checked against the batch size B."""
    if shard_options is None:
        return 0, 1
    if not isinstance(shard_options, grain.sharding.ShardOptions):
        raise TypeError(
            "shard_options must be a grain.sharding.ShardOptions (e.g. "
            f"grain.sharding.ShardByJaxProcess()) or None, got {type(shard_options).__name__}"
        )
    index, count = shard_options.shard_index, shard_options.shard_count
    if count < 1 or not 0 <= index < count:
        raise ValueError(
            f"shard_options: need 0 <= shard_index < shard_count, got {index=}, {count=}"
        )
    if batch_size % count:
        raise ValueError(
            f"batch_size B={batch_size} (global) must be divisible by the {count} shards"
        )
    return index, count


def _examples_and_encoder(spec, split, data_dir, config, symbols, tokenizer, lengths):
    """(random-access examples of the split, the encoder mapping one to arrays, element spec)."""
    source = _source(spec, split, data_dir, config, symbols)
    i32 = np.int32
    if spec.kind == "seq2seq":
        encoder = encoding.Seq2SeqEncoder(tokenizer, spec.fields, lengths)
        layout = {
            "inputs": ((lengths[0],), i32),
            "targets": ((lengths[1],), i32),
            "input_length": ((), i32),
        }
        return source, encoder, layout
    if spec.kind == "classification":
        encoder = encoding.ClassificationEncoder(tokenizer, spec.fields, lengths)
        return source, encoder, {"inputs": ((lengths,), i32), "label": ((), i32)}
    if spec.kind == "image_classification":
        encoder = encoding.ImageEncoder(
            spec.fields, spec.pixel_max, spec.pixel_mean, spec.pixel_std
        )
        return source, encoder, {"image": (spec.image_shape, np.float32), "label": ((), i32)}
    layout = {"inputs": ((lengths,), i32), "targets": ((lengths,), i32)}
    if spec.lm_stream:
        examples = encoding.read_examples(source, list(range(len(source))))
        texts = (example[spec.fields["text"]] for example in examples)
        windows = encoding.TokenWindows(encoding.token_stream(tokenizer, texts), lengths)
        return windows, None, layout
    return source, encoding.SentenceLMEncoder(tokenizer, spec.fields, lengths), layout


def load(
    name: str,
    *,
    split: str,
    batch_size: int,
    data_dir: str | None = None,
    seed: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = None,
    drop_remainder: bool = True,
    max_length: int | tuple[int, int] | None = None,
    config: str = "default",
    symbols: generated.SymbolRange | None = None,
    tokenizer: Tokenizer | str | None = None,
    vocab_size: int | None = None,
    num_threads: int = 2,
    shard_options: grain.sharding.ShardOptions | None = None,
) -> Dataset:
    """Loads one split of a named dataset as fixed-shape batches.

    Generated tasks and offline corpora are prepared first when missing. Catalog datasets must
    be prepared in `data_dir`; otherwise `DatasetNotFoundError` says how to prepare them.

    Batch layouts (B = batch_size; every batch also has `valid` bool[B]):
      seq2seq: inputs int32[B, S], targets int32[B, T]: x + EOS and y + EOS, padded with 0;
        feed the decoder `shift_right(targets)`. input_length int32[B]: the tokens of x
        before truncation, without EOS (the source length, to bin accuracy by).
      lm: inputs int32[B, T], targets int32[B, T] (the next tokens). Stream corpora ("pydoc",
        "tiny_shakespeare") are cut into consecutive windows of the concatenated split (each
        document followed by EOS); sentence corpora ("lm1b") give BOS + x + EOS per row, padded.
      classification: inputs int32[B, T] = BOS + x + EOS padded with 0, label int32[B].
      image_classification: image float32[B, H, W, C] standardised per channel, label int32[B].

    Args:
      name: a name from `list_datasets()`.
      split: "train", "validation", "test" (whichever the dataset has), or a TFDS slice of one
        such as "train[:90%]".
      batch_size: B > 0, the global batch size (over all shards).
      data_dir: the TFDS data directory (None: TFDS's default, usually ~/tensorflow_datasets).
      seed: the shuffling seed; each epoch is a different permutation derived from it.
      shuffle: shuffle examples (set False for evaluation).
      num_epochs: passes over the split; None repeats forever.
      drop_remainder: drop a final batch smaller than B; when False it is completed with zero
        rows marked `valid=False` (for evaluation over every example).
      max_length: sequence length T, or (S, T) for seq2seq; longer sequences are truncated.
        None: the dataset's default (generated tasks: their longest example plus EOS).
      config: "default" or "tiny" for generated datasets (catalog datasets: "default").
      symbols: copy, reverse and sort: a `SymbolRange` of string lengths and alphabet size
        (None: 1-20 letters of a-z); prepared apart from the other ranges (see `prepare`).
        The default max_length becomes the range's longest string plus EOS.
      tokenizer: a `Tokenizer` (pass the training split's `info.tokenizer` for evaluation splits
        and when resuming), "char", "sentencepiece" (fitted on the training split), or None for
        the dataset's default.
      vocab_size: SentencePiece vocabulary size (None: the dataset's default).
      num_threads: threads that read and encode examples ahead of the training loop.
      shard_options: read shard i of n (`shard_index`, `shard_count`): rows [i·B/n, (i+1)·B/n)
        of every global batch (B divisible by n), e.g. `grain.sharding.ShardByJaxProcess()` in a
        multi-process run; the other processes must load with the same `seed`. None: all rows.

    Returns:
      a `Dataset` with `.iterator()` and `.info`.
    """
    spec = _spec(name)
    _check_config(spec, config)
    generated.check_symbol_range(name, symbols)
    base_split = split.split("[", 1)[0] if isinstance(split, str) else split
    if base_split not in spec.splits:
        raise ValueError(f"split must be one of {list(spec.splits)} for {name!r}, got {split!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if num_epochs is not None and (not isinstance(num_epochs, int) or num_epochs <= 0):
        raise ValueError(f"num_epochs must be a positive int or None, got {num_epochs!r}")
    if not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    if not isinstance(num_threads, int) or num_threads < 0:
        raise ValueError(f"num_threads must be an int >= 0, got {num_threads!r}")
    shard_index, shard_count = _shard(shard_options, batch_size)
    lengths = _lengths(spec, max_length, symbols)
    tokenizer = _tokenizer(spec, tokenizer, vocab_size, data_dir, config, symbols)
    examples, encoder, layout = _examples_and_encoder(
        spec, split, data_dir, config, symbols, tokenizer, lengths
    )
    num_examples = len(examples)
    if num_examples == 0:
        raise ValueError(f"split {split!r} of {name!r} has no examples")

    # Shuffle and batch example indices, then read each batch at once.
    dataset = grain.MapDataset.range(num_examples)
    if shuffle:
        dataset = dataset.shuffle(seed)
    if num_epochs != 1:
        dataset = dataset.repeat(num_epochs)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    if shard_count > 1:
        dataset = dataset.map(encoding.ShardRows(batch_size, shard_index, shard_count))
    local_batch_size = batch_size // shard_count
    dataset = dataset.map(encoding.BatchReader(examples, encoder))
    dataset = dataset.map(encoding.CompleteBatch(local_batch_size, layout))

    if num_epochs is None:
        num_batches = None
    else:
        rounding = math.floor if drop_remainder else math.ceil
        num_batches = rounding(num_examples * num_epochs / batch_size)
    element_spec = {
        key: jax.ShapeDtypeStruct((local_batch_size, *shape), dtype)
        for key, (shape, dtype) in {**layout, "valid": ((), np.bool_)}.items()
    }
    info = DatasetInfo(
        name=name,
        kind=spec.kind,
        split=split,
        num_examples=num_examples,
        batch_size=local_batch_size,
        num_batches=num_batches,
        element_spec=element_spec,
        tokenizer=tokenizer,
        vocab_size=None if tokenizer is None else tokenizer.vocab_size,
        num_classes=spec.num_classes,
        image_shape=spec.image_shape,
    )
    return Dataset(dataset, info, num_threads)
