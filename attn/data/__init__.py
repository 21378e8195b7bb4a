"""Datasets for training attention models: generated tasks, offline corpora and TFDS catalog data.

Every dataset is read through TFDS (`tfds.data_source`, array_record files, no TensorFlow) and
batched with grain, so a batch iterator's position is a small dict that goes into checkpoints.

Names (`list_datasets()`):

    generated seq2seq tasks  "dates" (default main task), "copy", "reverse", "sort", "addition",
                             "associative_recall"
    offline corpora          "pydoc" (character LM on CPython's pydoc topics), "digits"
                             (scikit-learn's 8×8 digit images)
    TFDS catalog             "wmt14_translate/de-en", "ted_hrlr_translate/pt_to_en" (seq2seq),
                             "tiny_shakespeare", "lm1b" (lm), "imdb_reviews" (classification),
                             "cifar10" (image_classification)

Generated tasks and offline corpora are TFDS builders (`attn_dates`, `attn_copy`, …, `attn_pydoc`,
`attn_digits`) with the configs "default" (full size; "dates": 50,000 / 1,000 / 1,000 examples)
and "tiny" (a few hundred examples, for tests and smoke runs). They are deterministic from the
config's seed. Copy, reverse and sort take `symbols=SymbolRange(min_length, max_length,
alphabet_size)` (default 1-20 letters of a-z); each range is prepared under its own config name
("default_len1-30_abc8"), so ranges sharing a data_dir never load each other. Catalog datasets
must already be prepared in `data_dir` in array_record format; a missing one raises
`DatasetNotFoundError` at once, saying how to prepare it.

API:

    prepare(name, data_dir=None, *, config="default", symbols=None) -> None
        Builds a generated task or offline corpus if it is not prepared yet (the default "dates"
        task, 52,000 examples, takes 10-20 s on one CPU core). For a catalog dataset, downloads
        and prepares it in array_record format (needs network access).

    load(name, *, split, batch_size, data_dir=None, seed=0, shuffle=True, num_epochs=None,
         drop_remainder=True, max_length=None, config="default", symbols=None, tokenizer=None,
         vocab_size=None, num_threads=2) -> Dataset
        Prepares generated/offline datasets when missing. `Dataset.iterator()` returns a grain
        iterator with `get_state()` (a small JSON-serialisable dict) and `set_state(state)`;
        `Dataset.info` is a `DatasetInfo` (kind, num_examples, num_batches, element_spec of
        jax.ShapeDtypeStruct per batch key, tokenizer, vocab_size, num_classes, image_shape).
        Batches are dicts of numpy arrays with fixed shapes:
          seq2seq:  inputs int32[B, S], targets int32[B, T]; both end with EOS and are padded
                    with 0; the decoder input is `shift_right(targets, bos_id)`;
                    input_length int32[B], the source's tokens (for accuracy by length).
          lm:       inputs int32[B, T], targets int32[B, T] (the next token at each position);
                    targets 0 are padding. For masked-LM training apply `mask_tokens` to inputs.
          classification: inputs int32[B, T] (BOS + text + EOS, padded with 0), label int32[B].
          image_classification: image float32[B, H, W, C] (normalised), label int32[B].
        Every batch also has `valid` bool[B]: False on the zero rows that complete the last
        batch when `drop_remainder=False` (evaluation), True everywhere else.
        Pass the training set's `info.tokenizer` as `tokenizer=` when loading its evaluation
        splits (and when resuming), so that all splits share one vocabulary.

    shift_right(targets, bos_id) -> int32[B, T]: BOS followed by targets[:, :-1].
    mask_tokens(inputs, rng, *, vocab_size, mask_id=MASK_ID, rate=0.15, ...) -> dict
        BERT-style masking (80 % [MASK], 10 % random token, 10 % unchanged) returning
        `inputs`, `targets`, `weights`.

    mock_catalog_data(num_examples=8): context manager for tests; catalog datasets get random
        examples (tfds.testing.mock_data), so their pipelines run offline.

Tokenizers share the special ids PAD_ID=0, BOS_ID=1, EOS_ID=2, UNK_ID=3, MASK_ID=4 ([MASK]):
`CharTokenizer` (one id per character) and `SentencePieceTokenizer` (trained on the training
split). Both have `encode`, `decode`, `decode_batch`, `vocab_size`, `pad_id`, `bos_id`, `eos_id`,
`unk_id`, `mask_id`, `save(path)`; `load_tokenizer(path)` restores either kind.
"""

from attn.extras import require

require("data", "attn.data")

from attn.data.batches import mask_tokens, shift_right
from attn.data.catalog import DatasetNotFoundError
from attn.data.generated import SymbolRange
from attn.data.loader import Dataset, DatasetInfo, list_datasets, load, prepare
from attn.data.mocking import mock_catalog_data
from attn.data.tokenizers import (
    BOS_ID,
    EOS_ID,
    MASK_ID,
    PAD_ID,
    UNK_ID,
    CharTokenizer,
    SentencePieceTokenizer,
    Tokenizer,
    load_tokenizer,
)

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "MASK_ID",
    "PAD_ID",
    "UNK_ID",
    "CharTokenizer",
    "Dataset",
    "DatasetInfo",
    "DatasetNotFoundError",
    "SentencePieceTokenizer",
    "SymbolRange",
    "Tokenizer",
    "list_datasets",
    "load",
    "load_tokenizer",
    "mask_tokens",
    "mock_catalog_data",
    "prepare",
    "shift_right",
]
