"""attn.data.load: fixed-shape batches, checkpointable iterators, seeded shuffling, errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from grain.sharding import ShardOptions

import attn.data
from attn.data import BOS_ID, EOS_ID, generated
from attn.data.specs import DATASETS

LOCAL = [name for name, spec in DATASETS.items() if spec.generated]


def _load(name, data_dir, **kwargs):
    arguments = {"split": "train", "batch_size": 8, "data_dir": data_dir, "config": "tiny"}
    return attn.data.load(name, **{**arguments, **kwargs})


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _assert_same_batches(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.parametrize("name", LOCAL)
def test_batches_have_the_documented_fixed_shapes_and_dtypes(name, data_dir):
    max_length = 24 if name == "pydoc" else None
    dataset = _load(name, data_dir, max_length=max_length)
    info = dataset.info
    assert info.kind == DATASETS[name].kind
    expected_keys = {
        "seq2seq": {"inputs", "targets", "input_length", "valid"},
        "lm": {"inputs", "targets", "valid"},
        "image_classification": {"image", "label", "valid"},
    }[info.kind]
    assert set(info.element_spec) == expected_keys
    for batch in _take(dataset.iterator(), 3):
        assert set(batch) == expected_keys
        for key, spec in info.element_spec.items():
            assert batch[key].shape == spec.shape, key
            assert batch[key].dtype == spec.dtype, key
        assert batch["valid"].all()
    if info.kind == "image_classification":
        assert info.num_classes == 10 and info.image_shape == (8, 8, 1)
        assert info.tokenizer is None and info.vocab_size is None
    else:
        assert info.vocab_size == info.tokenizer.vocab_size
        assert int(batch["inputs"].max()) < info.vocab_size


def test_seq2seq_batches_decode_to_the_examples_in_order_with_eos_and_padding(data_dir):
    dataset = _load(
        "dates", data_dir, split="test", batch_size=10, shuffle=False, num_epochs=1,
        drop_remainder=False,
    )  # fmt: skip
    info = dataset.info
    assert (info.num_examples, info.num_batches) == (64, 7)
    assert info.element_spec["inputs"].shape == (10, generated.TASKS["dates"].max_input_length + 1)
    batches = list(dataset)
    assert len(batches) == 7
    np.testing.assert_array_equal(batches[-1]["valid"], np.arange(10) < 4)
    assert not batches[-1]["targets"][4:].any() and not batches[-1]["inputs"][4:].any()
    rows = [
        (batch["inputs"][i], batch["targets"][i])
        for batch in batches
        for i in np.flatnonzero(batch["valid"])
    ]
    expected = list(generated.examples("dates", "test", 64, 0, num_validation=64, num_test=64))
    tok = info.tokenizer
    assert [(tok.decode(x), tok.decode(y)) for x, y in rows] == expected
    for (x, y), (source, target) in zip(rows, expected, strict=True):
        np.testing.assert_array_equal(y[: len(target) + 1], tok.encode(target, add_eos=True))
        assert not y[len(target) + 1 :].any() and not x[len(source) + 1 :].any()
        assert x[len(source)] == EOS_ID
    decoder_input = np.asarray(attn.data.shift_right(batches[0]["targets"], tok.bos_id))
    assert (decoder_input[:, 0] == BOS_ID).all()
    lengths = [
        int(batch["input_length"][i]) for batch in batches for i in np.flatnonzero(batch["valid"])
    ]
    assert lengths == [len(source) for source, _ in expected]
    assert not batches[-1]["input_length"][4:].any()


def test_two_symbol_ranges_in_one_data_dir_each_load_their_own_examples(tmp_path):
    data_dir = str(tmp_path)
    ranges = {
        "short": None,
        "long": attn.data.SymbolRange(min_length=21, max_length=30, alphabet_size=4),
        "few_letters": attn.data.SymbolRange(min_length=1, max_length=20, alphabet_size=3),
    }
    for symbols in ranges.values():
        attn.data.prepare("copy", data_dir, config="tiny", symbols=symbols)
    for symbols in ranges.values():
        dataset = _load(
            "copy", data_dir, split="validation", shuffle=False, num_epochs=1,
            drop_remainder=False, symbols=symbols,
        )  # fmt: skip
        longest = (symbols or generated.SymbolRange()).max_length
        assert dataset.info.element_spec["inputs"].shape == (8, longest + 1)
        tok = dataset.info.tokenizer
        rows = [
            (tok.decode(batch["inputs"][i]), int(batch["input_length"][i]))
            for batch in dataset
            for i in np.flatnonzero(batch["valid"])
        ]
        expected = generated.examples("copy", "validation", 64, 0, num_test=64, symbols=symbols)
        assert rows == [(source, len(source)) for source, _ in expected]
    prepared = sorted(os.listdir(os.path.join(data_dir, "attn_copy")))
    assert [name for name in prepared if not name.startswith(".")] == [
        "tiny", "tiny_len1-20_abc3", "tiny_len21-30_abc4",
    ]  # fmt: skip


def test_restoring_the_iterator_state_resumes_the_same_batches(data_dir):
    dataset = _load("reverse", data_dir, seed=3)
    iterator = dataset.iterator()
    _take(iterator, 30)  # 32 batches per epoch: the next five cross into the second epoch
    state = json.dumps(iterator.get_state())  # as a checkpoint stores it
    expected = _take(iterator, 5)
    resumed = _load("reverse", data_dir, seed=3).iterator()
    resumed.set_state(json.loads(state))
    _assert_same_batches(_take(resumed, 5), expected)
    fresh = dataset.iterator()
    _assert_same_batches(_take(fresh, 2), _take(_load("reverse", data_dir, seed=3).iterator(), 2))


def test_shuffling_is_seeded_and_every_epoch_is_a_new_permutation(data_dir):
    first = _take(_load("copy", data_dir, seed=1).iterator(), 2)
    _assert_same_batches(first, _take(_load("copy", data_dir, seed=1).iterator(), 2))
    other = _take(_load("copy", data_dir, seed=2).iterator(), 2)
    assert not np.array_equal(first[0]["inputs"], other[0]["inputs"])

    dataset = _load("copy", data_dir, batch_size=16, seed=1, num_epochs=2)
    assert dataset.info.num_batches == 32
    batches = list(dataset)
    assert len(batches) == 32
    epochs = [np.concatenate([b["inputs"] for b in batches[i : i + 16]]) for i in (0, 16)]
    unshuffled = np.concatenate(
        [b["inputs"] for b in _load("copy", data_dir, batch_size=16, shuffle=False, num_epochs=1)]
    )
    for epoch in epochs:
        assert sorted(map(bytes, epoch)) == sorted(map(bytes, unshuffled))
        assert not np.array_equal(epoch, unshuffled)
    assert not np.array_equal(epochs[0], epochs[1])


def test_unshuffled_epochs_repeat_exactly(data_dir):
    batches = list(_load("sort", data_dir, batch_size=64, shuffle=False, num_epochs=3))
    assert len(batches) == 12
    _assert_same_batches(batches[:4], batches[4:8])
    _assert_same_batches(batches[:4], batches[8:])


def test_lm_windows_are_consecutive_and_targets_are_the_next_tokens(data_dir):
    dataset = _load("pydoc", data_dir, batch_size=4, max_length=32, shuffle=False, num_epochs=1)
    batch = next(iter(dataset))
    inputs, targets = batch["inputs"], batch["targets"]
    np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
    np.testing.assert_array_equal(inputs[1:, 0], targets[:-1, -1])
    tok = dataset.info.tokenizer
    first_paragraph = attn.data.corpora.pydoc_documents("train")[0]
    assert tok.decode(inputs[0]) == first_paragraph[:32]
    total = sum(len(p) + 1 for p in attn.data.corpora.pydoc_documents("train")[:200])
    assert dataset.info.num_examples == (total - 1) // 32


def test_digit_images_are_standardised(data_dir):
    batch = next(iter(_load("digits", data_dir, batch_size=200, shuffle=False, num_epochs=1)))
    images, labels = batch["image"], batch["label"]
    raw, raw_labels = attn.data.corpora.digits("train", max_examples=200)
    np.testing.assert_allclose(images, (raw / 16 - 0.3053) / 0.3760, rtol=1e-5)
    np.testing.assert_array_equal(labels, raw_labels)
    assert abs(images.mean()) < 0.1 and 0.9 < images.std() < 1.1


def test_evaluation_splits_reuse_the_training_tokenizer(data_dir):
    train = _load("pydoc", data_dir, max_length=16)
    validation = _load("pydoc", data_dir, split="validation", max_length=16,
                       tokenizer=train.info.tokenizer)  # fmt: skip
    assert validation.info.tokenizer is train.info.tokenizer
    sentencepiece = _load("addition", data_dir, tokenizer="sentencepiece", vocab_size=30)
    assert isinstance(sentencepiece.info.tokenizer, attn.data.SentencePieceTokenizer)
    batch = next(iter(sentencepiece))
    assert batch["inputs"].shape == sentencepiece.info.element_spec["inputs"].shape


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "match"),
    [
        ("dutch_dates", {}, ValueError, r"name must be one of \[.*'dates'.*'cifar10'"),
        ("dates", {"batch_size": 0}, ValueError, "batch_size must be a positive int, got 0"),
        ("dates", {"batch_size": -4}, ValueError, "batch_size must be a positive int"),
        ("dates", {"batch_size": 2.0}, ValueError, "batch_size must be a positive int"),
        ("dates", {"split": "dev"}, ValueError, r"split must be one of \['train', 'valid"),
        ("cifar10", {"split": "validation", "config": "default"}, ValueError, "split must be"),
        ("dates", {"config": "huge"}, ValueError, "config must be one of"),
        ("lm1b", {"config": "tiny"}, ValueError, "config must be 'default'"),
        ("dates", {"num_epochs": 0}, ValueError, "num_epochs must be a positive int"),
        ("dates", {"seed": -1}, ValueError, "seed must be an int"),
        ("dates", {"max_length": 1}, ValueError, "max_length must be an int >= 2"),
        ("pydoc", {"max_length": (8, 8)}, ValueError, "max_length must be one int"),
        ("digits", {"max_length": 8}, ValueError, "max_length must be None"),
        ("digits", {"tokenizer": "char"}, ValueError, "tokenizer must be None"),
        ("dates", {"tokenizer": "bytes"}, ValueError, "tokenizer must be a Tokenizer"),
    ],
)
def test_bad_arguments_raise_clear_errors(name, kwargs, error, match, data_dir):
    with pytest.raises(error, match=match):
        _load(name, data_dir, **kwargs)


def test_prepare_rejects_unknown_names_and_configs(data_dir):
    with pytest.raises(ValueError, match=r"name must be one of \[.*'imdb_reviews'"):
        attn.data.prepare("mnist", data_dir)
    with pytest.raises(ValueError, match="config must be one of"):
        attn.data.prepare("dates", data_dir, config="small")
    assert set(attn.data.list_datasets()) >= {"dates", "pydoc", "digits", "lm1b", "cifar10"}


def test_processes_preparing_one_fresh_data_dir_all_succeed(tmp_path):
    """Later ones wait for the first (a lock in the data dir) instead of failing on its files;
    without the lock, two such processes failed in one run of three here."""
    code = "import sys; from attn.data import prepare; prepare('copy', sys.argv[1], config='tiny')"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for run in runs:
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
    batches = attn.data.load(
        "copy", split="test", batch_size=2, data_dir=str(tmp_path), config="tiny", num_epochs=1
    )
    assert next(iter(batches))


def test_shards_read_disjoint_rows_of_the_same_batches_padded_alike(data_dir):
    """Shard i of 2 reads rows [4i, 4i + 4) of every global batch of 8: disjoint rows that
    together are the unsharded batches, and as many batches in every shard, the short last one
    (15 - 8 = 7 rows: 4 + 3) padded with invalid rows."""
    options = {"split": "test[:15]", "batch_size": 8, "shuffle": False, "num_epochs": 1,
               "drop_remainder": False}  # fmt: skip
    whole = list(_load("dates", data_dir, **options))
    shards = [
        list(_load("dates", data_dir, **options, shard_options=ShardOptions(i, 2)))
        for i in range(2)
    ]
    assert [len(batches) for batches in shards] == [2, 2]
    for index, batch in enumerate(whole):
        first, second = shards[0][index], shards[1][index]
        for key in batch:
            np.testing.assert_array_equal(np.concatenate([first[key], second[key]]), batch[key])
    assert [b["valid"].sum() for b in shards[1]] == [4, 3]
    train = [_take(_load("dates", data_dir, seed=5, shard_options=ShardOptions(i, 2)).iterator(), 3)
             for i in range(2)]  # fmt: skip
    rows = [{bytes(row) for b in batches for row in b["inputs"]} for batches in train]
    assert len(rows[0]) == len(rows[1]) == 12
    assert not rows[0] & rows[1]
    with pytest.raises(ValueError, match=r"batch_size B=8 \(global\) must be divisible by the 3"):
        _load("dates", data_dir, shard_options=ShardOptions(0, 3))
    with pytest.raises(TypeError, match="shard_options must be a grain.sharding.ShardOptions"):
        _load("dates", data_dir, shard_options=(0, 2))
