"""The generated tasks: deterministic from the seed, correct, held-out dates unseen."""

import datetime
import re

import numpy as np
import pytest

from attn.data import generated

SEED = 7


def _pairs(task, split="train", n=200, seed=SEED, **kwargs):
    return list(generated.examples(task, split, n, seed, **kwargs))


@pytest.mark.parametrize("task", sorted(generated.TASKS))
def test_same_seed_same_examples_other_seed_other_examples(task):
    assert _pairs(task) == _pairs(task)
    assert _pairs(task) != _pairs(task, seed=SEED + 1)
    assert _pairs(task, "train") != _pairs(task, "validation")


@pytest.mark.parametrize("task", sorted(generated.TASKS))
def test_examples_fit_the_declared_lengths_and_alphabet(task):
    spec = generated.TASKS[task]
    for source, target in _pairs(task, n=500):
        assert 0 < len(source) <= spec.max_input_length
        assert 0 < len(target) <= spec.max_target_length
        assert set(source + target) <= set(generated.ALPHABET)


def test_copy_reverse_sort_transform_the_same_inputs():
    copies = _pairs("copy")
    assert all(s == t for s, t in copies)
    assert [s for s, _ in _pairs("reverse")] == [s for s, _ in copies]
    assert all(t == s[::-1] for s, t in _pairs("reverse"))
    assert all(t == "".join(sorted(s)) for s, t in _pairs("sort"))
    lengths = {len(s) for s, _ in _pairs("copy", n=2000)}
    assert lengths == set(range(generated.MIN_SYMBOLS, generated.MAX_SYMBOLS + 1))


@pytest.mark.parametrize("task", ["copy", "reverse", "sort"])
def test_a_symbol_range_sets_the_lengths_and_letters(task):
    symbols = generated.SymbolRange(min_length=21, max_length=30, alphabet_size=5)
    pairs = _pairs(task, n=2000, symbols=symbols)
    assert {len(s) for s, _ in pairs} == set(range(21, 31))
    assert set("".join(s + t for s, t in pairs)) == set("abcde")
    assert generated.TASKS[task].max_lengths(symbols) == (30, 30)


def test_the_default_symbol_range_draws_the_examples_drawn_without_one():
    for task in ("copy", "reverse", "sort"):
        assert _pairs(task, symbols=generated.SymbolRange()) == _pairs(task)
        assert _pairs(task, symbols=generated.SymbolRange(1, 20, 26)) == _pairs(task)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(min_length=0), "min_length must be an int >= 1, got 0"),
        (dict(min_length=5, max_length=4), "max_length must be >= min_length=5, got 4"),
        (dict(alphabet_size=27), r"alphabet_size must be in \[1, 26\]"),
        (dict(max_length=2.5), "max_length must be an int >= 1, got 2.5"),
    ],
)
def test_bad_symbol_ranges_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generated.SymbolRange(**kwargs)


def test_tasks_without_a_symbol_range_reject_one():
    with pytest.raises(ValueError, match=r"task 'dates' has no symbol range.*\['copy', 'reverse'"):
        _pairs("dates", symbols=generated.SymbolRange(max_length=30))
    assert _pairs("dates", symbols=generated.SymbolRange()) == _pairs("dates")


def test_addition_sums_are_right():
    pairs = _pairs("addition", n=1000)
    for source, target in pairs:
        a, b = source.split("+")
        assert int(target) == int(a) + int(b)
        assert target == str(int(target))  # no leading zeros
    assert max(len(s.split("+")[0]) for s, _ in pairs) == generated.MAX_ADDEND_DIGITS


def test_associative_recall_returns_the_value_of_the_queried_key():
    for source, target in _pairs("associative_recall", n=1000):
        pairs, query = source.split("?")
        keys, values = pairs[0::2], pairs[1::2]
        assert len(set(keys)) == len(keys)
        assert generated.MIN_PAIRS <= len(keys) <= generated.MAX_PAIRS
        assert target == values[keys.index(query)]


_STRPTIME_FORMATS = (
    "%d %b %Y", "%A, %B %d %Y", "%m/%d/%Y", "%d.%m.%Y", "%B %d, %Y", "%b %d, %Y", "%Y %b %d",
    "%d %B %Y", "%a %d %b %Y", "%A %d %B %Y", "%Y/%m/%d", "%d-%m-%Y", "the %d of %B %Y",
    "%B %d %Y", "%a, %b %d, %Y", "%Y.%m.%d",
)  # fmt: skip


def _parse(text):
    """The date a text names, read with datetime.strptime; None when no format matches."""
    plain = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", text)
    for fmt in _STRPTIME_FORMATS:
        try:
            return datetime.datetime.strptime(plain, fmt).date()
        except ValueError:
            continue
    return None


def test_dates_parse_back_to_the_iso_target_with_correct_weekday_and_ordinal():
    pairs = _pairs("dates", n=3000)
    for source, target in pairs:
        date = datetime.date.fromisoformat(target)
        assert _parse(source) == date, source
        for name in ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"):
            if name[:3] in source:
                assert source.startswith(date.strftime("%A" if name in source else "%a"))
        suffix = re.search(r"\b(\d+)(st|nd|rd|th)\b", source)
        if suffix:
            day = int(suffix.group(1))
            expected = "th" if 11 <= day <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
            assert suffix.group(2) == expected, source
    surface_forms = {re.sub(r"[0-9]", "9", re.sub(r"[A-Za-z]+", "W", s)) for s, _ in pairs}
    assert len(surface_forms) >= 12


def test_every_date_format_fits_the_declared_input_length():
    longest = max(
        len(text)
        for ordinal in range(generated.FIRST_DATE.toordinal(), generated.LAST_DATE.toordinal(), 3)
        for text in generated._date_formats(datetime.date.fromordinal(ordinal))
    )
    assert longest == generated.TASKS["dates"].max_input_length


def test_held_out_dates_are_disjoint_from_training_dates():
    kwargs = {"num_validation": 300, "num_test": 400}
    train = {t for _, t in _pairs("dates", "train", 5000, **kwargs)}
    validation = [t for _, t in _pairs("dates", "validation", 300, **kwargs)]
    test = [t for _, t in _pairs("dates", "test", 400, **kwargs)]
    assert len(set(test)) == 400 and len(set(validation)) == 300
    assert not train & set(test)
    assert not train & set(validation)
    assert not set(validation) & set(test)
    pools = generated.date_pools(SEED, 300, 400)
    assert len(np.union1d(pools["train"], pools["test"])) == len(pools["train"]) + 400


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "shuffle"}, "task must be one of"),
        ({"split": "dev"}, "split must be one of"),
        ({"num_examples": -1}, "num_examples"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    arguments = {"task": "copy", "split": "train", "num_examples": 3, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        generated.examples(**arguments)
    with pytest.raises(ValueError, match="num_validation"):
        generated.date_pools(0, 20_000, 20_000)
