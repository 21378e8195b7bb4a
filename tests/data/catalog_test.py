"""Catalog pipelines on tfds.testing.mock_data, and the error for a dataset that is missing."""

import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

import attn.data
from attn.data import EOS_ID

CATALOG = {
    "wmt14_translate/de-en": "seq2seq",
    "ted_hrlr_translate/pt_to_en": "seq2seq",
    "tiny_shakespeare": "lm",
    "lm1b": "lm",
    "imdb_reviews": "classification",
    "cifar10": "image_classification",
}


@pytest.fixture
def mocked():
    with attn.data.mock_catalog_data(num_examples=24):
        yield


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_catalog_pipeline_runs_on_mock_data(name, mocked, tmp_path):
    image = CATALOG[name] == "image_classification"
    dataset = attn.data.load(
        name,
        split="train",
        batch_size=4,
        data_dir=str(tmp_path),
        max_length=None if image else 12,
        vocab_size=None if image else 40,
    )
    info = dataset.info
    assert info.kind == CATALOG[name]
    iterator = dataset.iterator()
    batches = [next(iterator) for _ in range(3)]
    for batch in batches:
        assert set(batch) == set(info.element_spec)
        for key, spec in info.element_spec.items():
            assert (batch[key].shape, batch[key].dtype) == (spec.shape, spec.dtype), key
    batch = batches[0]
    if image:
        assert info.element_spec["image"].shape == (4, 32, 32, 3)
        assert -3 < batch["image"].min() < 0 < batch["image"].max() < 3
        assert batch["label"].max() < info.num_classes == 10
        return
    assert info.vocab_size == info.tokenizer.vocab_size
    assert 5 < info.vocab_size <= 40 or isinstance(info.tokenizer, attn.data.CharTokenizer)
    if info.kind == "seq2seq":
        assert (batch["targets"] == EOS_ID).any(axis=1).all()
    if info.kind == "classification":
        assert set(np.unique(batch["label"])) <= {0, 1} and info.num_classes == 2
    if info.kind == "lm":
        np.testing.assert_array_equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])


def test_mock_translation_decodes_back_to_the_source_text(mocked, tmp_path):
    dataset = attn.data.load(
        "ted_hrlr_translate/pt_to_en", split="validation", batch_size=3, data_dir=str(tmp_path),
        shuffle=False, num_epochs=1, max_length=200, tokenizer="char",
    )  # fmt: skip
    source = tfds.data_source("ted_hrlr_translate/pt_to_en", split="validation")
    batch = next(iter(dataset))
    decoded = dataset.info.tokenizer.decode_batch(batch["inputs"])
    assert decoded == [attn.data.encoding.text_of(source[i]["pt"]) for i in range(3)]


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_missing_catalog_dataset_fails_fast_saying_how_to_prepare_it(name, tmp_path):
    start = time.perf_counter()
    with pytest.raises(attn.data.DatasetNotFoundError) as raised:
        attn.data.load(name, split="train", batch_size=2, data_dir=str(tmp_path))
    assert time.perf_counter() - start < 5  # no network retries
    message = str(raised.value)
    assert "is not prepared in" in message and str(tmp_path) in message
    assert f"attn.data.prepare({name!r}" in message and "data_dir=" in message
    assert isinstance(raised.value, FileNotFoundError)


def test_mock_catalog_data_rejects_a_bad_size():
    with (
        pytest.raises(ValueError, match="num_examples must be a positive int"),
        attn.data.mock_catalog_data(num_examples=0),
    ):
        pass


def test_prepare_asks_tfds_for_array_record_files(monkeypatch, tmp_path):
    prepared = []

    def record(builder, *args, **kwargs):
        prepared.append((builder.name, builder.info.file_format, str(builder.data_dir)))

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", record)
    attn.data.prepare("imdb_reviews", str(tmp_path))
    [(name, file_format, folder)] = prepared
    assert name == "imdb_reviews" and file_format == tfds.core.FileFormat.ARRAY_RECORD
    assert folder.startswith(str(tmp_path))
