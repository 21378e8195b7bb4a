"""The run config is checked once, before anything is built: one line per bad value."""

import pytest

from attn.data import SymbolRange
from attn.training.config import check_config, dataset_options, default_config


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("learning_rate", float("inf"), r"learning_rate must be > 0 \(a finite number\), got inf"),
        ("learning_rate", -1.0, r"learning_rate must be > 0"),
        ("b1", 1.5, r"b1 must be in \[0, 1\) \(a finite number\), got 1.5"),
        ("b2", float("nan"), r"b2 must be in \[0, 1\)"),
        ("eps", 0.0, r"eps must be > 0"),
        ("weight_decay", -0.1, r"weight_decay must be >= 0"),
        ("grad_clip_norm", -1.0, r"grad_clip_norm must be >= 0"),
    ],
)
def test_optimizer_values_out_of_range_are_one_line(field, value, message):
    config = default_config()
    config.optimizer[field] = value
    with pytest.raises(ValueError, match=rf"^config\.optimizer\.{message}"):
        check_config(config)


def test_default_config_passes_and_no_clipping_is_allowed():
    config = default_config()
    check_config(config)
    config.optimizer.grad_clip_norm = None
    check_config(config)


def test_a_plain_dict_is_a_type_error_naming_what_to_pass():
    with pytest.raises(TypeError, match=r"ml_collections.ConfigDict .* got dict"):
        check_config(default_config().to_dict())


def test_symbol_fields_become_the_data_symbol_range_and_zero_keeps_the_default():
    config = default_config()
    assert dataset_options(config)["symbols"] is None
    config.dataset.name = "copy"
    config.dataset.symbols.max_length = 30
    config.dataset.symbols.alphabet_size = 8
    check_config(config)
    assert dataset_options(config)["symbols"] == SymbolRange(1, 30, 8)


@pytest.mark.parametrize(
    "name, field, value, message",
    [
        ("copy", "min_length", 25, r"max_length must be >= min_length=25, got 20"),
        ("sort", "alphabet_size", 40, r"alphabet_size must be in \[1, 26\]"),
        ("dates", "max_length", 30, r"task 'dates' has no symbol range"),
    ],
)
def test_bad_symbol_fields_are_one_line(name, field, value, message):
    config = default_config()
    config.dataset.name = name
    config.dataset.symbols[field] = value
    with pytest.raises(ValueError, match=rf"^config\.dataset\.symbols: {message}"):
        check_config(config)
