"""What every experiment config shares: the parser of its `:argument` and the smoke-test settings.

    def get_config(arg=""):
        arg = parse_arg(arg, task=("reverse", "sort"), smoke=False)
        config = default_config()
        ...
        if arg.smoke:
            smoke(config, batch_size=8)

`--config experiments/configs/rnn_seq2seq.py:sort,smoke` then gives arg.task == "sort" and
arg.smoke == True (big_vision's `parse_arg`, with bare choice values).
"""

from __future__ import annotations

from typing import Any

import ml_collections


def _describe(name: str, default: Any) -> str:
    if isinstance(default, bool):
        return f"{name!r} (a switch)"
    if isinstance(default, tuple):
        return f"{name}: one of {list(default)}"
    return f"{name}=<{type(default).__name__}>"


def parse_arg(arg: str, **spec: Any) -> ml_collections.ConfigDict:
    """The options of a config's `:argument`, a comma-separated list.

    Args:
      arg: the text after the config path's colon, e.g. "sort,bottleneck,smoke" or
        "task=sort,smoke" ("" for none).
      **spec: option name -> default. A bool is a switch: its bare name turns it on ("smoke").
        A tuple of strings is a choice whose first value is the default: a bare value selects
        it ("sort"), as does name=value. Anything else (str, int, float) is set as name=value and
        converted to the default's type.

    Returns:
      A ConfigDict with one field per option.

    Raises:
      ValueError: an option that is not in `spec` (the message lists them), or a value that is
        not one of a choice's values or does not convert.
    """
    if not isinstance(arg, str):
        raise TypeError(f"the config argument must be a str, got {type(arg).__name__}")
    options = {
        name: default[0] if isinstance(default, tuple) else default
        for name, default in spec.items()
    }
    listing = ", ".join(_describe(name, default) for name, default in spec.items()) or "none"
    for part in (part.strip() for part in arg.split(",")):
        if not part:
            continue
        name, has_value, value = part.partition("=")
        choices = [key for key, default in spec.items() if isinstance(default, tuple)]
        if not has_value:
            owner = next((key for key in choices if part in spec[key]), None)
            if owner is not None:
                options[owner] = part
            elif isinstance(spec.get(part), bool):
                options[part] = True
            else:
                raise ValueError(f"unknown config option {part!r}; the options are {listing}")
            continue
        if name not in spec:
            raise ValueError(f"unknown config option {name!r}; the options are {listing}")
        default = spec[name]
        if isinstance(default, tuple):
            if value not in default:
                raise ValueError(
                    f"config option {name} must be one of {list(default)}, got {value!r}"
                )
            options[name] = value
        elif isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"config option {name} must be true or false, got {value!r}")
            options[name] = value.lower() in ("true", "1")
        else:
            try:
                options[name] = type(default)(value)
            except ValueError:
                raise ValueError(
                    f"config option {name} must be a {type(default).__name__}, got {value!r}"
                ) from None
    return ml_collections.ConfigDict(options)


def smoke(config: ml_collections.ConfigDict, *, batch_size: int = 4) -> None:
    """Shrink `config` in place to a seconds-long check: 2 steps of `batch_size` examples, a
    train record per step and an evaluation of one batch."""
    config.batch_size = batch_size
    config.num_train_steps = 2
    config.log_every_steps = 1
    config.eval.batch_size = batch_size
    config.eval.num_batches = 1
