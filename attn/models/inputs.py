"""The "sequence too long" check of the models with a learned position table."""

from __future__ import annotations


def check_fits(owner: str, what: str, length: int, max_length: int) -> None:
    """Raise a ValueError unless `length` positions (a sequence, or a cache to fill) fit a learned
    position table of `max_length` rows.

    Args:
      owner: the model or method named in the error.
      what: what is too long, as it reads in the error ("sequence length T", "cache length").
      length: its number of positions.
      max_length: the rows of the table (`config.max_length`).
    """
    if length > max_length:
        raise ValueError(
            f"{owner}: {what}={length} exceeds max_length={max_length} of the learned position "
            "table"
        )
