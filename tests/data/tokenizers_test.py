"""Character and SentencePiece tokenizers: special ids, round trips, save/load."""

import re

import numpy as np
import pytest

from attn.data import (
    BOS_ID,
    EOS_ID,
    MASK_ID,
    PAD_ID,
    UNK_ID,
    CharTokenizer,
    SentencePieceTokenizer,
    load_tokenizer,
)
from attn.data.corpora import pydoc_topics

TEXT = "Attention is all you need, 2017."


@pytest.fixture(scope="module")
def sentencepiece():
    topics = pydoc_topics()
    corpus = [line for key in sorted(topics)[:60] for line in topics[key].splitlines()]
    return SentencePieceTokenizer.train(corpus, 400)


def test_special_ids_keep_the_convention():
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID) == (0, 1, 2, 3, 4)
    tok = CharTokenizer("ab")
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id, tok.mask_id) == (0, 1, 2, 3, 4)


def test_char_tokenizer_maps_characters_after_the_special_ids():
    tok = CharTokenizer("abca")
    assert tok.alphabet == "abc"
    assert tok.vocab_size == 8
    assert tok.encode("cab") == [7, 5, 6]
    assert tok.encode("ab", add_bos=True, add_eos=True) == [1, 5, 6, 2]
    assert tok.encode("axb") == [5, UNK_ID, 6]
    assert tok.encode(b"ba") == [6, 5]


def test_char_tokenizer_round_trips_and_decode_stops_at_eos():
    tok = CharTokenizer.from_texts([TEXT, b"xyz"])
    ids = tok.encode(TEXT, add_bos=True, add_eos=True)
    assert tok.decode(ids) == TEXT
    assert tok.decode([*ids, 7, 8]) == TEXT  # everything after EOS is ignored
    assert tok.decode([tok.encode("A")[0], PAD_ID, MASK_ID, UNK_ID]) == "A\u2047"
    padded = np.zeros((2, 40), np.int32)
    padded[0, :5] = tok.encode("Atten")
    padded[1, :3] = tok.encode("you")
    assert tok.decode_batch(padded) == ["Atten", "you"]


def test_char_tokenizer_save_load(tmp_path):
    tok = CharTokenizer.from_texts([TEXT, "éß漢"])
    tok.save(tmp_path / "tok.json")
    restored = load_tokenizer(tmp_path / "tok.json")
    assert isinstance(restored, CharTokenizer)
    assert restored.alphabet == tok.alphabet
    assert restored.encode("漢 need") == tok.encode("漢 need")


def test_sentencepiece_reserves_the_special_ids_and_round_trips(sentencepiece):
    tok = sentencepiece
    assert tok.vocab_size <= 400
    ids = tok.encode(TEXT, add_bos=True, add_eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert min(ids[1:-1]) >= 5
    assert len(ids) < len(TEXT)  # subwords, not characters
    assert tok.decode(ids) == TEXT
    rows = np.zeros((2, len(ids) + 2), np.int32)
    rows[0, : len(ids)] = ids
    rows[1, :2] = [*tok.encode("need")[:1], EOS_ID]
    assert tok.decode_batch(rows) == [TEXT, tok.decode(tok.encode("need")[:1])]


def test_sentencepiece_training_is_deterministic_and_save_load(sentencepiece, tmp_path):
    topics = pydoc_topics()
    corpus = [line for key in sorted(topics)[:60] for line in topics[key].splitlines()]
    assert SentencePieceTokenizer.train(corpus, 400).model_proto == sentencepiece.model_proto
    sentencepiece.save(tmp_path / "sp.json")
    restored = load_tokenizer(tmp_path / "sp.json")
    assert isinstance(restored, SentencePieceTokenizer)
    assert restored.encode(TEXT) == sentencepiece.encode(TEXT)
    assert restored.vocab_size == sentencepiece.vocab_size


def test_bad_tokenizer_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="alphabet"):
        CharTokenizer("")
    with pytest.raises(ValueError, match="vocab_size"):
        SentencePieceTokenizer.train(["a b c"], 3)
    with pytest.raises(ValueError, match="model_type"):
        SentencePieceTokenizer.train(["a b c"], 50, model_type="wordpiece")
    with pytest.raises(TypeError, match="text"):
        CharTokenizer("ab").encode(5)
    with pytest.raises(ValueError, match=r"ids must be 2-D \[B, T\]"):
        CharTokenizer("ab").decode_batch(np.zeros(3, np.int32))
    (tmp_path / "other.json").write_text('{"kind": "bpe"}')
    with pytest.raises(ValueError, match="no saved tokenizer"):
        load_tokenizer(tmp_path / "other.json")


@pytest.mark.parametrize(
    "text",
    ['{"kind": "char", "alph', '{"kind": "char"}', '{"kind": "sentencepiece", "model": "AAAA"}'],
    ids=["truncated", "missing-field", "corrupt-model"],
)
def test_a_corrupt_tokenizer_file_is_one_error_naming_the_file(text, tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))} is not a readable saved"):
        load_tokenizer(path)
