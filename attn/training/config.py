"""The configuration of a run: every field with its default, and the checks made before anything
is built.

Experiment configs (`experiments/configs/*.py`) start from `default_config()` and override what
they change; `--config.<field>=<value>` overrides any field from the command line. `check_config`
validates the values once, before any data or model is built; `model_config` and
`dataset_options` turn the config into the arguments of the model family and of `attn.data.load`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import ml_collections

from attn import data as attn_data
from attn.data.generated import check_symbol_range
from attn.training.tasks import FAMILIES, ClassificationTask, Seq2SeqTask, task_class

COMPUTE_DTYPES = ("float32", "bfloat16")

# Model config fields that `--config.model.overrides.<field>=<value>` can set on any experiment
# (None: the variant's value); configs may add others.
OVERRIDABLE = {
    "dropout_rate": float,
    "attention_dropout_rate": float,
    "num_layers": int,
    "num_encoder_layers": int,
    "num_decoder_layers": int,
    "num_heads": int,
    "num_kv_heads": int,
    "model_dim": int,
    "mlp_dim": int,
    "max_length": int,
    "position": str,
    "implementation": str,
    "embed_dim": int,
    "hidden_dim": int,
    "cell": str,
    "attention": str,
    "score": str,
    "estimator": str,
    "teacher_forcing_ratio": float,
    "scheduled_sampling_k": float,
}


def default_config() -> ml_collections.ConfigDict:
    """Every field a run reads, with its default; experiment configs start from this."""
    config = ml_collections.ConfigDict()
    # The one seed of the run: parameter initialisation, per-step randomness, data order.
    config.seed = 0
    # The task kind, a key of `attn.training.tasks.TASKS`: "seq2seq", "lm", "mlm" or
    # "classification".
    config.task = "seq2seq"

    config.dataset = ml_collections.ConfigDict()
    # A name of `attn.data.list_datasets()`.
    config.dataset.name = "dates"
    # "default", or "tiny" for a few generated examples (generated datasets).
    config.dataset.config = "default"
    # The TFDS directory of catalog datasets ("": TFDS's default).
    config.dataset.data_dir = ""
    # The splits trained on and evaluated on.
    config.dataset.train_split = "train"
    config.dataset.eval_split = "validation"
    # 0: the dataset's default length; T; or [S, T] for seq2seq.
    config.dataset.max_length = 0
    # "" (the dataset's default), "char" or "sentencepiece".
    config.dataset.tokenizer = ""
    # The SentencePiece vocabulary size (0: the default).
    config.dataset.vocab_size = 0
    # copy, reverse, sort: the string lengths [min_length, max_length] and the number of letters
    # (0: the task's 1-20 letters of a-z); see `attn.data.SymbolRange`.
    config.dataset.symbols = ml_collections.ConfigDict(
        dict(min_length=0, max_length=0, alphabet_size=0)
    )

    config.model = ml_collections.ConfigDict()
    # "Transformer", "Seq2SeqRNN", "TransformerLM", "Bert" or "ViT".
    config.model.family = "Transformer"
    # A named variant of the family's config (e.g. "tiny", "base").
    config.model.variant = "tiny"
    # Fields of the family's config: the names of `OVERRIDABLE` (None: the variant's value) and
    # any other a config file sets.
    config.model.overrides = ml_collections.ConfigDict(
        {name: ml_collections.config_dict.placeholder(kind) for name, kind in OVERRIDABLE.items()}
    )

    # The global batch B (split over processes and the data/fsdp mesh axes).
    config.batch_size = 64
    # The number of train-step calls.
    config.num_train_steps = 1000

    # See `attn.training.optimizers.make_optimizer`.
    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 1e-3
    config.optimizer.schedule = "warmup_cosine"
    config.optimizer.warmup_steps = 100
    config.optimizer.end_factor = 0.0
    config.optimizer.b1 = 0.9
    config.optimizer.b2 = 0.98
    config.optimizer.eps = 1e-9
    config.optimizer.weight_decay = 0.0
    config.optimizer.grad_clip_norm = 1.0
    config.optimizer.accumulate_steps = 1

    config.loss = ml_collections.ConfigDict()
    # ε of label smoothing, in [0, 1).
    config.loss.label_smoothing = 0.0
    # α of the z-loss α · log² Z, >= 0.
    config.loss.z_loss = 0.0
    # β of the moving-average REINFORCE baseline b' = β b + (1 − β) mean(R), in [0, 1): hard
    # attention trained with estimator="reinforce" (Seq2SeqRNN).
    config.loss.reinforce_baseline_decay = 0.9

    # "float32" or "bfloat16" (parameters stay float32).
    config.compute_dtype = "float32"
    # Devices per mesh axis, see `attn.training.sharding.make_mesh` (-1: the rest).
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    # Steps between train-metric records, evaluations and checkpoints.
    config.log_every_steps = 50
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 500
    # How many of the newest checkpoints stay on disk.
    config.keep_checkpoints = 3

    config.eval = ml_collections.ConfigDict()
    # The global evaluation batch.
    config.eval.batch_size = 100
    # How many batches of the evaluation split (0: the whole split).
    config.eval.num_batches = 0
    # seq2seq: decode (greedy or beam search) for exact match.
    config.eval.decode = True
    # The number of beams of the decoding (1: greedy).
    config.eval.beam_size = 1
    # seq2seq: BLEU (sacrebleu) of the decoded text.
    config.eval.bleu = False
    # Attention-map PNGs per evaluation.
    config.eval.num_attention_maps = 2
    return config


def check_config(config: Mapping[str, Any]) -> None:
    """Validate the values a run needs before anything is built.

    Raises:
      ValueError: one line naming the config field, the value and what to change.
    """
    if not isinstance(config, ml_collections.ConfigDict):
        raise TypeError(
            "config must be an ml_collections.ConfigDict (default_config() or an "
            f"experiments/configs file's get_config()), got {type(config).__name__}"
        )
    task_class(config.task).check_family(config.model.family)
    if config.dataset.name not in attn_data.list_datasets():
        raise ValueError(
            f"config.dataset.name must be one of {attn_data.list_datasets()}, got "
            f"{config.dataset.name!r}"
        )
    symbol_range(config)
    positive = {
        "batch_size": config.batch_size,
        "num_train_steps": config.num_train_steps,
        "log_every_steps": config.log_every_steps,
        "eval_every_steps": config.eval_every_steps,
        "checkpoint_every_steps": config.checkpoint_every_steps,
        "keep_checkpoints": config.keep_checkpoints,
        "eval.batch_size": config.eval.batch_size,
        "eval.beam_size": config.eval.beam_size,
        "optimizer.accumulate_steps": config.optimizer.accumulate_steps,
    }
    for name, value in positive.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"config.{name} must be a positive integer, got {value!r}")
    if not isinstance(config.eval.num_batches, int) or config.eval.num_batches < 0:
        raise ValueError(
            f"config.eval.num_batches must be >= 0 (0: the whole split), got "
            f"{config.eval.num_batches!r}"
        )
    if config.compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(
            f"config.compute_dtype must be one of {COMPUTE_DTYPES}, got {config.compute_dtype!r}"
        )
    _check_optimizer(config.optimizer)
    if not 0 <= config.loss.label_smoothing < 1:
        raise ValueError(
            f"config.loss.label_smoothing must be in [0, 1), got {config.loss.label_smoothing}"
        )
    if not config.loss.z_loss >= 0:
        raise ValueError(f"config.loss.z_loss must be >= 0, got {config.loss.z_loss}")
    decay = config.loss.reinforce_baseline_decay
    if not 0 <= decay < 1:
        raise ValueError(f"config.loss.reinforce_baseline_decay must be in [0, 1), got {decay}")
    if not isinstance(config.seed, int) or not 0 <= config.seed < 2**31:
        raise ValueError(f"config.seed must be an int in [0, 2**31), got {config.seed!r}")


_OPTIMIZER_RANGES = {  # field: (the rule as said in the error, the test of a finite number)
    "learning_rate": ("> 0", lambda x: x > 0),
    "b1": ("in [0, 1)", lambda x: 0 <= x < 1),
    "b2": ("in [0, 1)", lambda x: 0 <= x < 1),
    "eps": ("> 0", lambda x: x > 0),
    "weight_decay": (">= 0", lambda x: x >= 0),
    "grad_clip_norm": (">= 0 (0 or None: no clipping)", lambda x: x >= 0),
    "end_factor": ("in [0, 1]", lambda x: 0 <= x <= 1),
}


def _check_optimizer(optimizer: Mapping[str, Any]) -> None:
    """Each optimizer number finite and in its range (Adam's betas in [0, 1))."""
    for name, (rule, holds) in _OPTIMIZER_RANGES.items():
        value = optimizer.get(name)
        if value is None and name != "learning_rate":  # a field this optimizer does not use
            continue
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and holds(value)):
            raise ValueError(
                f"config.optimizer.{name} must be {rule} (a finite number), got {value!r}"
            )


def check_batch_divides(name: str, batch_size: int, mesh: jax.sharding.Mesh) -> None:
    """Raise unless the batch `config.<name>` splits evenly over the mesh and the processes."""
    ways = mesh.shape["data"] * mesh.shape["fsdp"]
    if batch_size % ways:
        raise ValueError(
            f"config.{name}={batch_size} is not divisible by the {ways} batch shards of the mesh "
            f"(data={mesh.shape['data']} * fsdp={mesh.shape['fsdp']}, config.mesh); use a "
            f"multiple of {ways}"
        )
    if batch_size % jax.process_count():
        raise ValueError(
            f"config.{name}={batch_size} is not divisible by the {jax.process_count()} processes"
        )


def check_dataset(config: Mapping[str, Any], info: attn_data.DatasetInfo) -> None:
    """Raise unless the loaded dataset suits the task (its kind) and the evaluation (a beam no
    wider than the vocabulary), before any training."""
    cls = task_class(config.task)
    if info.kind not in cls.data_kinds:
        raise ValueError(
            f"config.dataset.name={config.dataset.name!r} is a {info.kind} dataset; a "
            f"{config.task!r} task needs one of kind {cls.data_kinds}"
        )
    decodes = cls is Seq2SeqTask and config.eval.decode
    if decodes and info.vocab_size is not None and config.eval.beam_size > info.vocab_size:
        raise ValueError(
            f"config.eval.beam_size={config.eval.beam_size} is larger than the vocabulary "
            f"V={info.vocab_size} of {config.dataset.name!r}; use at most {info.vocab_size}"
        )


def symbol_range(config: Mapping[str, Any]) -> attn_data.SymbolRange | None:
    """The `attn.data.SymbolRange` of `config.dataset.symbols` (None when every field is 0);
    a field left at 0 keeps the default's value."""
    chosen = config.dataset.get("symbols") or {}
    fields = {name: value for name, value in chosen.items() if value}
    if not fields:
        return None
    try:
        symbols = attn_data.SymbolRange(**fields)
        check_symbol_range(config.dataset.name, symbols)
    except (TypeError, ValueError) as error:
        raise ValueError(f"config.dataset.symbols: {error}") from None
    return symbols


def dataset_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `attn.data.load` shared by the training and evaluation splits."""
    max_length = config.dataset.max_length or None
    return dict(
        data_dir=config.dataset.data_dir or None,
        config=config.dataset.config,
        symbols=symbol_range(config),
        max_length=tuple(max_length)
        if isinstance(max_length, list | tuple)
        else max_length or None,
    )


def model_config(config: Mapping[str, Any], info: attn_data.DatasetInfo) -> Any:
    """The family's config: the named variant with the dataset's sizes and the overrides."""
    _, config_cls = FAMILIES[config.model.family]
    fields = {f.name for f in dataclasses.fields(config_cls)}
    derived: dict[str, Any] = {}
    if info.vocab_size is not None and "vocab_size" in fields:
        derived["vocab_size"] = info.vocab_size
    if config.task == ClassificationTask.name and "num_classes" in fields:
        derived["num_classes"] = info.num_classes
    if info.image_shape is not None:
        derived.update(image_size=info.image_shape[0], num_channels=info.image_shape[2])
    if config.compute_dtype != "float32":
        derived["dtype"] = config.compute_dtype
    chosen = {name: value for name, value in config.model.overrides.items() if value is not None}
    unknown = sorted(set(chosen) - fields)
    if unknown:
        raise ValueError(
            f"config.model.overrides sets {unknown}, which {config_cls.__name__} does not have; "
            f"its fields are {sorted(fields)}"
        )
    return config_cls.named(config.model.variant, **{**derived, **chosen})
