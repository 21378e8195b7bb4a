"""Accuracy, perplexity, exact match and BLEU."""

import math

import numpy as np
import pytest
import sacrebleu

from attn.training.metrics import MetricSums, bleu, exact_match, perplexity, token_accuracy


def test_token_accuracy_counts_only_masked_in():
    logits = np.zeros((1, 4, 3))
    logits[0, [0, 1, 2, 3], [2, 1, 0, 0]] = 1.0  # predictions 2, 1, 0, 0
    labels = np.array([[2, 0, 0, 1]])
    correct, count = token_accuracy(logits, labels, np.array([[1, 1, 1, 0]]))
    assert (float(correct), float(count)) == (2.0, 3.0)


def test_perplexity():
    assert perplexity(0.0) == 1.0
    np.testing.assert_allclose(perplexity(math.log(7.0)), 7.0)
    assert perplexity(1000.0) == math.inf
    with pytest.raises(ValueError, match="mean_cross_entropy"):
        perplexity(-1.0)


def test_exact_match_stops_at_eos():
    eos = 2
    predictions = np.array([[5, 6, eos, 9, 9], [5, 6, 7, eos, 0], [5, 0, 0, 0, 0]])
    targets = np.array([[5, 6, eos, 0], [5, 6, eos, 0], [5, eos, 0, 0]])
    # Row 0 matches (tokens after EOS ignored), row 1 has an extra token, row 2 lacks the EOS
    # but is equal once padding is dropped.
    assert exact_match(predictions, targets, eos_id=eos) == (2, 3)
    with pytest.raises(ValueError, match="predictions"):
        exact_match(predictions[0], targets, eos_id=eos)


def test_bleu_matches_sacrebleu():
    hyps = ["the cat sat on the mat", "a quick brown fox jumps over the dog"]
    refs = ["the cat sat on a mat", "the quick brown fox jumps over the lazy dog"]
    expected = sacrebleu.corpus_bleu(hyps, [refs]).score
    assert 0 < expected < 100
    np.testing.assert_allclose(bleu(hyps, refs), expected)
    np.testing.assert_allclose(bleu(refs, refs), 100.0)
    # A known pair: one 4-gram-perfect sentence with a brevity penalty of exp(1 - 7/6).
    np.testing.assert_allclose(
        bleu(["the cat sat on the mat ."], ["the cat sat on the mat today ."]),
        sacrebleu.sentence_bleu(
            "the cat sat on the mat .", ["the cat sat on the mat today ."]
        ).score,
    )
    with pytest.raises(ValueError, match="one reference per hypothesis"):
        bleu(hyps, refs[:1])
    with pytest.raises(TypeError, match="sequences of strings"):
        bleu("abc", "abc")


def test_metric_sums_weigh_every_item_once():
    sums = MetricSums()
    sums.add("loss", 6.0, 3)
    sums.add("loss", 1.0, 1)
    sums.add_all({"accuracy": (1.0, 4.0)})
    assert sums.means() == {"loss": 7.0 / 4, "accuracy": 0.25}
