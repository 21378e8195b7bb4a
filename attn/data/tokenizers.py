"""Tokenizers: characters and SentencePiece, sharing one convention for special ids.

    PAD_ID = 0   padding (loss weight 0)
    BOS_ID = 1   beginning of sequence (decoder start token)
    EOS_ID = 2   end of sequence
    UNK_ID = 3   unknown character / piece
    MASK_ID = 4  [MASK] for masked-language-model training

Real tokens start at id 5 (`NUM_SPECIAL_IDS`). SentencePiece: Kudo & Richardson, "SentencePiece: A
simple and language independent subword tokenizer and detokenizer for Neural Text Processing"
(2018).
"""

from __future__ import annotations

import abc
import base64
import io
import json
import os
from collections.abc import Iterable, Sequence

import numpy as np
import sentencepiece as spm

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3
MASK_ID = 4
NUM_SPECIAL_IDS = 5
UNKNOWN_CHAR = "\u2047"  # "⁇", what an UNK id decodes to

_SPECIAL_IDS = frozenset({PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID})


class Tokenizer(abc.ABC):
    """Text ↔ ids with the special ids above; subclasses define the pieces between them."""

    pad_id = PAD_ID
    bos_id = BOS_ID
    eos_id = EOS_ID
    unk_id = UNK_ID
    mask_id = MASK_ID

    @property
    @abc.abstractmethod
    def vocab_size(self) -> int:
        """V, the number of ids including the 5 special ones."""

    @abc.abstractmethod
    def _encode_pieces(self, text: str) -> list[int]:
        """Ids of `text` without BOS/EOS."""

    @abc.abstractmethod
    def _decode_pieces(self, ids: Sequence[int]) -> str:
        """Text of ids that contain no special id except UNK."""

    @abc.abstractmethod
    def _to_json(self) -> dict:
        """The JSON-serialisable state that `load_tokenizer` restores."""

    def encode(self, text: str, *, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """Ids of `text`, optionally wrapped in BOS … EOS.

        Args:
          text: a `str` (bytes are decoded as UTF-8).
          add_bos: prepend BOS_ID.
          add_eos: append EOS_ID.

        Returns:
          list of ints in [0, vocab_size).
        """
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if not isinstance(text, str):
            raise TypeError(f"text must be str or bytes, got {type(text).__name__}")
        ids = self._encode_pieces(text)
        return [BOS_ID] * add_bos + ids + [EOS_ID] * add_eos

    def decode(self, ids: Iterable[int]) -> str:
        """Text of `ids`: stops at the first EOS, skips PAD, BOS and MASK, UNK becomes "⁇".

        Args:
          ids: a sequence of ints or a 1-D integer array [T].

        Returns:
          the decoded string.
        """
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"ids must be 1-D [T], got shape {ids.shape}")
        kept = []
        for i in ids.tolist():
            if i == EOS_ID:
                break
            if i not in (PAD_ID, BOS_ID, MASK_ID):
                kept.append(i)
        return self._decode_pieces(kept)

    def decode_batch(self, ids: np.ndarray) -> list[str]:
        """`decode` of every row of ids[B, T]."""
        ids = np.asarray(ids)
        if ids.ndim != 2:
            raise ValueError(f"ids must be 2-D [B, T], got shape {ids.shape}")
        return [self.decode(row) for row in ids]

    def save(self, path: str | os.PathLike) -> None:
        """Writes the tokenizer as JSON to `path`; `load_tokenizer(path)` restores it."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self._to_json(), f, ensure_ascii=False)


class CharTokenizer(Tokenizer):
    """One id per character: alphabet[i] ↦ NUM_SPECIAL_IDS + i; characters outside it ↦ UNK_ID.

    Args:
      alphabet: the characters, in id order (duplicates are dropped, first occurrence wins).
    """

    def __init__(self, alphabet: str):
        if not isinstance(alphabet, str) or not alphabet:
            raise ValueError(f"alphabet must be a non-empty str, got {alphabet!r}")
        self.alphabet = "".join(dict.fromkeys(alphabet))
        self._ids = {c: NUM_SPECIAL_IDS + i for i, c in enumerate(self.alphabet)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> CharTokenizer:
        """The tokenizer whose alphabet is the sorted set of characters in `texts`."""
        chars: set[str] = set()
        for text in texts:
            chars.update(text.decode("utf-8") if isinstance(text, bytes) else text)
        if not chars:
            raise ValueError("texts must contain at least one character, got none")
        return cls("".join(sorted(chars)))

    @property
    def vocab_size(self) -> int:
        return NUM_SPECIAL_IDS + len(self.alphabet)

    def _encode_pieces(self, text: str) -> list[int]:
        return [self._ids.get(c, UNK_ID) for c in text]

    def _decode_pieces(self, ids: Sequence[int]) -> str:
        n = len(self.alphabet)
        return "".join(
            self.alphabet[i - NUM_SPECIAL_IDS]
            if NUM_SPECIAL_IDS <= i < NUM_SPECIAL_IDS + n
            else UNKNOWN_CHAR
            for i in ids
        )

    def _to_json(self) -> dict:
        return {"kind": "char", "alphabet": self.alphabet}

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model (unigram or BPE) with ids 0-4 reserved as in this module's convention.

    Build one with `SentencePieceTokenizer.train(texts, vocab_size)`.

    Args:
      model_proto: the serialised SentencePiece model (bytes).
    """

    def __init__(self, model_proto: bytes):
        if not isinstance(model_proto, bytes):
            raise TypeError(f"model_proto must be bytes, got {type(model_proto).__name__}")
        self.model_proto = model_proto
        self._processor = spm.SentencePieceProcessor(model_proto=model_proto)
        specials = (
            self._processor.pad_id(),
            self._processor.bos_id(),
            self._processor.eos_id(),
            self._processor.unk_id(),
            self._processor.piece_to_id("[MASK]"),
        )
        if specials != (PAD_ID, BOS_ID, EOS_ID, UNK_ID, MASK_ID):
            raise ValueError(
                "model_proto must reserve pad/bos/eos/unk/[MASK] = ids 0/1/2/3/4, "
                f"got {specials}; train it with SentencePieceTokenizer.train"
            )

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int,
        *,
        model_type: str = "unigram",
        character_coverage: float = 1.0,
    ) -> SentencePieceTokenizer:
        """Trains a model on `texts` (deterministic for the same texts in the same order).

        Args:
          texts: training sentences (str or UTF-8 bytes), e.g. the training split.
          vocab_size: V, the upper bound on ids (smaller when the text has too few pieces).
          model_type: "unigram" or "bpe".
          character_coverage: share of characters covered by the model's alphabet.

        Returns:
          the trained tokenizer.
        """
        if not isinstance(vocab_size, int) or vocab_size <= NUM_SPECIAL_IDS + 1:
            raise ValueError(f"vocab_size must be an int > {NUM_SPECIAL_IDS + 1}, got {vocab_size}")
        if model_type not in ("unigram", "bpe"):
            raise ValueError(f"model_type must be 'unigram' or 'bpe', got {model_type!r}")
        sentences = [t.decode("utf-8") if isinstance(t, bytes) else t for t in texts]
        sentences = [s for s in sentences if s.strip()]
        if not sentences:
            raise ValueError("texts must contain at least one non-blank sentence, got none")
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            pad_id=PAD_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            unk_id=UNK_ID,
            user_defined_symbols=["[MASK]"],
            hard_vocab_limit=False,
            shuffle_input_sentence=False,
            num_threads=1,
            max_sentence_length=1 << 16,
            minloglevel=2,
        )
        return cls(model.getvalue())

    @property
    def vocab_size(self) -> int:
        return self._processor.get_piece_size()

    def _encode_pieces(self, text: str) -> list[int]:
        return list(self._processor.encode(text))

    def _decode_pieces(self, ids: Sequence[int]) -> str:
        return self._processor.decode(list(ids))

    def _to_json(self) -> dict:
        return {"kind": "sentencepiece", "model": base64.b64encode(self.model_proto).decode()}

    def __repr__(self) -> str:
        return f"SentencePieceTokenizer(vocab_size={self.vocab_size})"


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Restores a tokenizer written by `Tokenizer.save(path)` (either kind)."""
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        kind = state.get("kind") if isinstance(state, dict) else None
        if kind == "char":
            return CharTokenizer(state["alphabet"])
        if kind == "sentencepiece":
            return SentencePieceTokenizer(base64.b64decode(state["model"]))
    except (ValueError, KeyError, TypeError, RuntimeError, UnicodeDecodeError) as error:
        # json errors, a missing field, or a SentencePiece model that does not parse
        raise ValueError(
            f"{os.fspath(path)} is not a readable saved tokenizer ({type(error).__name__}: "
            f"{error}); delete it or restore it from the run that wrote it"
        ) from None
    raise ValueError(
        f"{os.fspath(path)} holds no saved tokenizer: expected kind 'char' or 'sentencepiece', "
        f"got {kind!r}"
    )
