"""TFDS builders of the generated tasks and offline corpora: prepare, then load by name."""

import pathlib
import platform
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

import attn.data
from attn.data import builders, corpora, generated


@pytest.mark.parametrize("task", sorted(generated.TASKS))
def test_tiny_task_prepares_and_loads_by_name_with_the_generated_examples(task, data_dir):
    attn.data.prepare(task, data_dir, config="tiny")
    for split, size in (("train", 256), ("test", 64)):
        source = tfds.data_source(f"attn_{task}/tiny", split=split, data_dir=data_dir)
        assert len(source) == size
        expected = list(generated.examples(task, split, size, 0, num_validation=64, num_test=64))
        got = [(source[i]["inputs"].decode(), source[i]["targets"].decode()) for i in range(size)]
        assert got == expected


def test_default_configs_have_the_documented_sizes():
    default = {c.name: c for c in builders.AttnDates.BUILDER_CONFIGS}["default"]
    assert (default.num_train, default.num_validation, default.num_test) == (50_000, 1_000, 1_000)


def test_prepare_twice_keeps_the_prepared_files(data_dir):
    attn.data.prepare("copy", data_dir, config="tiny")
    folder = pathlib.Path(tfds.builder("attn_copy/tiny", data_dir=data_dir).data_dir)
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert any(name.endswith("array_record-00000-of-00001") for name in stamps)
    attn.data.prepare("copy", data_dir, config="tiny")
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps


def test_pydoc_corpus_splits_documents_without_overlap(data_dir):
    attn.data.prepare("pydoc", data_dir, config="tiny")
    source = tfds.data_source("attn_pydoc/tiny", split="train", data_dir=data_dir)
    texts = [source[i]["text"].decode() for i in range(len(source))]
    assert texts == corpora.pydoc_documents("train")[:200]
    full = {s: corpora.pydoc_documents(s) for s in corpora.SPLITS}
    characters = {s: sum(map(len, docs)) for s, docs in full.items()}
    assert 400_000 < sum(characters.values()) < 500_000
    assert 0.03 < characters["test"] / sum(characters.values()) < 0.07
    topics = corpora.pydoc_topics()
    paragraphs = [p for k in sorted(topics) for p in topics[k].split("\n\n") if p.strip()]
    assert sum(len(docs) for docs in full.values()) == len(paragraphs) == 2_608
    assert full["test"][:3] == [paragraphs[2], paragraphs[22], paragraphs[42]]


def test_pydoc_corpus_is_the_shipped_snapshot_on_every_python():
    topics = corpora.pydoc_topics()
    assert corpora.pydoc_snapshot_python() == "3.11.7"
    assert (len(topics), sum(map(len, topics.values()))) == (79, 464_970)
    assert topics["assert"].startswith('The "assert" statement')
    assert builders.AttnPydoc.VERSION == "1.1.0"
    assert "1.1.0" in builders.AttnPydoc.RELEASE_NOTES


@pytest.mark.skipif(
    platform.python_version() != corpora.pydoc_snapshot_python(),
    reason="the snapshot holds another Python's pydoc_data.topics",
)
def test_pydoc_snapshot_script_rewrites_the_same_file_from_its_python():
    from pydoc_data.topics import topics

    assert corpora.pydoc_topics() == topics
    script = pathlib.Path(__file__).parents[2] / "tools" / "pydoc_topics_snapshot.py"
    check = subprocess.run([sys.executable, script, "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_digits_builder_holds_the_scikit_learn_images(data_dir):
    from sklearn.datasets import load_digits

    attn.data.prepare("digits", data_dir, config="tiny")
    source = tfds.data_source("attn_digits/tiny", split="validation", data_dir=data_dir)
    assert len(source) == 50
    digits = load_digits()
    flat = digits.images.reshape(len(digits.images), -1)
    for i in (0, 17, 49):
        image, label = source[i]["image"], int(source[i]["label"])
        assert image.shape == (8, 8, 1) and image.dtype == np.uint8
        row = np.flatnonzero((flat == image.reshape(-1)).all(axis=1))
        assert digits.target[row[0]] == label
    splits = {s: corpora.digits(s)[0].reshape(-1, 64) for s in corpora.SPLITS}
    assert sum(len(x) for x in splits.values()) == 1797
    assert [len(splits[s]) for s in ("validation", "test")] == [179, 179]
