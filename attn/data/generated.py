"""Generated sequence-to-sequence tasks, deterministic from a seed.

Each task maps an input string to a target string over `ALPHABET`:

    copy                "hdaxk"          → "hdaxk"
    reverse             "hdaxk"          → "kxadh"
    sort                "hdaxk"          → "adhkx"
    addition            "4096+718"       → "4814"
    associative_recall  "c7a1k4?a"       → "1"   (Ba et al., 2016, "Using Fast Weights to
                                                   Attend to the Recent Past", §4.1)
    dates               "Monday, November 23rd 2026" → "2026-11-23"  (the attention demo of
                                                   Bahdanau et al., 2015, made into a task)

`examples(task, split, num_examples, seed)` yields the (input, target) pairs of one split. The
splits of "dates" draw from disjoint sets of calendar days, so the held-out splits test dates
never seen in training. The strings of copy, reverse and sort have 1-20 letters of a-z unless a
`SymbolRange` says otherwise (e.g. `min_length=1, max_length=30, alphabet_size=8`: lengths drawn
uniformly from 1-30, letters from "a"-"h").
"""

from __future__ import annotations

import dataclasses
import datetime
import string
from collections.abc import Callable, Iterator

import numpy as np

ALPHABET = string.digits + string.ascii_letters + " ,./-+?"
SPLITS = ("train", "validation", "test")
_LETTERS = string.ascii_lowercase

MIN_SYMBOLS, MAX_SYMBOLS = 1, 20
MAX_ADDEND_DIGITS = 5
MIN_PAIRS, MAX_PAIRS = 2, 8
FIRST_DATE = datetime.date(1950, 1, 1)
LAST_DATE = datetime.date(2049, 12, 31)

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _ordinal(day: int) -> str:
    """1 → "1st", 2 → "2nd", 3 → "3rd", 11 → "11th", 22 → "22nd"."""
    if 11 <= day % 100 <= 13:
        return f"{day}th"
    return f"{day}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(day % 10, 'th') }"


def _date_formats(d: datetime.date) -> tuple[str, ...]:
    """The surface forms of date d that the "dates" task translates to ISO 8601."""
    month, mon = _MONTHS[d.month - 1], _MONTHS[d.month - 1][:3]
    weekday = _WEEKDAYS[d.weekday()]
    y, m, dd = d.year, d.month, d.day
    return (
        f"{dd} {mon} {y}",
        f"{dd:02d} {mon} {y}",
        f"{weekday}, {month} {_ordinal(dd)} {y}",
        f"{m}/{dd}/{y}",
        f"{m:02d}/{dd:02d}/{y}",
        f"{dd:02d}.{m:02d}.{y}",
        f"{dd}.{m}.{y}",
        f"{month} {dd}, {y}",
        f"{mon} {dd}, {y}",
        f"{y} {mon} {dd}",
        f"{dd} {month} {y}",
        f"{weekday[:3]} {dd} {mon} {y}",
        f"{weekday} {dd} {month} {y}",
        f"{y}/{m:02d}/{dd:02d}",
        f"{dd:02d}-{m:02d}-{y}",
        f"the {_ordinal(dd)} of {month} {y}",
        f"{month.lower()} {dd} {y}",
        f"{dd} {mon.upper()} {y}",
        f"{weekday[:3]}, {mon} {dd}, {y}",
        f"{y}.{m:02d}.{dd:02d}",
    )


NUM_DATE_FORMATS = len(_date_formats(FIRST_DATE))


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """The dataset seed and held-out sizes that all splits of one dataset are generated from."""

    seed: int
    num_validation: int
    num_test: int


@dataclasses.dataclass(frozen=True)
class SymbolRange:
    """The strings that copy, reverse and sort transform: a length drawn uniformly from
    [min_length, max_length], then each letter uniformly from the first `alphabet_size` of a-z.

    Attributes:
      min_length: the shortest string, >= 1.
      max_length: the longest string, >= min_length.
      alphabet_size: how many letters ("a", "b", ...) strings draw from, in [1, 26].
    """

    min_length: int = MIN_SYMBOLS
    max_length: int = MAX_SYMBOLS
    alphabet_size: int = len(_LETTERS)

    def __post_init__(self):
        for name in ("min_length", "max_length", "alphabet_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.max_length < self.min_length:
            raise ValueError(
                f"max_length must be >= min_length={self.min_length}, got {self.max_length}"
            )
        if self.alphabet_size > len(_LETTERS):
            raise ValueError(
                f"alphabet_size must be in [1, {len(_LETTERS)}] (letters a-z), got "
                f"{self.alphabet_size}"
            )

    @property
    def is_default(self) -> bool:
        """True for the 1-20 letters of a-z that the tasks draw without a range."""
        return self == SymbolRange()

    @property
    def name(self) -> str:
        """The range in a dataset config name, e.g. "len1-30_abc8"."""
        return f"len{self.min_length}-{self.max_length}_abc{self.alphabet_size}"

    @property
    def letters(self) -> list[str]:
        """The letters strings are drawn from."""
        return list(_LETTERS[: self.alphabet_size])


@dataclasses.dataclass(frozen=True)
class Task:
    """A generated task: its name, the longest input/target it produces, and its sampler.

    Attributes:
      name: the task's name in `TASKS`.
      max_input_length: the longest input string, in characters.
      max_target_length: the longest target string, in characters.
      sample: `sample(rng, split, num_examples, plan, symbols)` yields (input, target) pairs;
        `plan` is the `SplitPlan` of the dataset (only "dates" uses it, to keep held-out days
        apart), `symbols` the `SymbolRange` (only the tasks with `takes_symbol_range` use it).
      takes_symbol_range: True for the tasks whose strings follow a `SymbolRange` (copy,
        reverse, sort); `max_input_length`/`max_target_length` are those of the default range.
    """

    name: str
    max_input_length: int
    max_target_length: int
    sample: Callable[
        [np.random.Generator, str, int, SplitPlan, SymbolRange], Iterator[tuple[str, str]]
    ]
    takes_symbol_range: bool = False

    def max_lengths(self, symbols: SymbolRange = SymbolRange()) -> tuple[int, int]:
        """(longest input, longest target) in characters for the strings of `symbols`."""
        if self.takes_symbol_range:
            return symbols.max_length, symbols.max_length
        return self.max_input_length, self.max_target_length


def _symbols(rng: np.random.Generator, symbols: SymbolRange) -> str:
    length = int(rng.integers(symbols.min_length, symbols.max_length + 1))
    return "".join(rng.choice(symbols.letters, size=length))


def _sample_copy(rng, split, num_examples, plan, symbols):
    for _ in range(num_examples):
        s = _symbols(rng, symbols)
        yield s, s


def _sample_reverse(rng, split, num_examples, plan, symbols):
    for _ in range(num_examples):
        s = _symbols(rng, symbols)
        yield s, s[::-1]


def _sample_sort(rng, split, num_examples, plan, symbols):
    for _ in range(num_examples):
        s = _symbols(rng, symbols)
        yield s, "".join(sorted(s))


def _sample_addition(rng, split, num_examples, plan, symbols):
    def number() -> int:
        digits = int(rng.integers(1, MAX_ADDEND_DIGITS + 1))
        return int(rng.integers(0, 10**digits))

    for _ in range(num_examples):
        a, b = number(), number()
        yield f"{a}+{b}", str(a + b)


def _sample_associative_recall(rng, split, num_examples, plan, symbols):
    for _ in range(num_examples):
        num_pairs = int(rng.integers(MIN_PAIRS, MAX_PAIRS + 1))
        keys = rng.choice(list(_LETTERS), size=num_pairs, replace=False)
        values = rng.integers(0, 10, size=num_pairs)
        query = int(rng.integers(num_pairs))
        pairs = "".join(f"{k}{v}" for k, v in zip(keys, values, strict=True))
        yield f"{pairs}?{keys[query]}", str(values[query])


def date_pools(seed: int, num_validation: int, num_test: int) -> dict[str, np.ndarray]:
    """Disjoint sets of day ordinals (`datetime.date.toordinal`) for each split of "dates".

    The days FIRST_DATE … LAST_DATE are permuted with `seed`; the first `num_test` are the test
    days, the next `num_validation` the validation days, the rest the training days.

    Returns:
      dict split → int64 array of ordinals.
    """
    days = np.arange(FIRST_DATE.toordinal(), LAST_DATE.toordinal() + 1)
    if num_validation + num_test >= len(days):
        raise ValueError(
            f"num_validation + num_test must be < {len(days)} days, got "
            f"{num_validation} + {num_test}"
        )
    days = np.random.default_rng([seed, 1_000_003]).permutation(days)
    return {
        "test": days[:num_test],
        "validation": days[num_test : num_test + num_validation],
        "train": days[num_test + num_validation :],
    }


def _sample_dates(rng, split, num_examples, plan, symbols):
    pool = date_pools(plan.seed, plan.num_validation, plan.num_test)[split]
    if split == "train":
        chosen = rng.choice(pool, size=num_examples)
    else:
        # Each held-out day once (in pool order), cycling if more examples are asked for.
        chosen = np.resize(pool, num_examples)
    formats = rng.integers(0, NUM_DATE_FORMATS, size=num_examples)
    for ordinal, fmt in zip(chosen, formats, strict=True):
        d = datetime.date.fromordinal(int(ordinal))
        yield _date_formats(d)[int(fmt)], d.isoformat()


TASKS: dict[str, Task] = {
    "copy": Task("copy", MAX_SYMBOLS, MAX_SYMBOLS, _sample_copy, takes_symbol_range=True),
    "reverse": Task("reverse", MAX_SYMBOLS, MAX_SYMBOLS, _sample_reverse, takes_symbol_range=True),
    "sort": Task("sort", MAX_SYMBOLS, MAX_SYMBOLS, _sample_sort, takes_symbol_range=True),
    "addition": Task(
        "addition", 2 * MAX_ADDEND_DIGITS + 1, MAX_ADDEND_DIGITS + 1, _sample_addition
    ),
    "associative_recall": Task(
        "associative_recall", 2 * MAX_PAIRS + 2, 1, _sample_associative_recall
    ),
    # "Wednesday, September 23rd 2026" is the longest form.
    "dates": Task("dates", 30, 10, _sample_dates),
}


def examples(
    task: str,
    split: str,
    num_examples: int,
    seed: int,
    *,
    num_validation: int = 1_000,
    num_test: int = 1_000,
    symbols: SymbolRange | None = None,
) -> Iterator[tuple[str, str]]:
    """Yields the (input, target) pairs of one split, the same for the same arguments.

    Args:
      task: a name in `TASKS`.
      split: "train", "validation" or "test".
      num_examples: how many pairs to yield.
      seed: the dataset seed; each split draws from its own stream of it.
      num_validation: size of the "dates" validation day pool (disjoint from training days).
      num_test: size of the "dates" test day pool.
      symbols: the lengths and letters of the strings of copy, reverse and sort (None: 1-20
        letters of a-z); the other tasks take none.

    Returns:
      iterator of (input, target) strings over `ALPHABET`.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {sorted(TASKS)}, got {task!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not isinstance(num_examples, int) or num_examples < 0:
        raise ValueError(f"num_examples must be an int >= 0, got {num_examples!r}")
    symbols = check_symbol_range(task, symbols)
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    plan = SplitPlan(seed, num_validation, num_test)
    return TASKS[task].sample(rng, split, num_examples, plan, symbols)


def check_symbol_range(task: str, symbols: SymbolRange | None) -> SymbolRange:
    """`symbols` (None: the default range), after checking that `task` takes one."""
    if symbols is None:
        return SymbolRange()
    if not isinstance(symbols, SymbolRange):
        raise TypeError(f"symbols must be a SymbolRange or None, got {type(symbols).__name__}")
    takes = task in TASKS and TASKS[task].takes_symbol_range
    if not takes and not symbols.is_default:
        takers = sorted(name for name, t in TASKS.items() if t.takes_symbol_range)
        raise ValueError(
            f"task {task!r} has no symbol range (lengths and alphabet size): only {takers} "
            f"take one, got {symbols}"
        )
    return symbols
