"""`train_and_evaluate(config, workdir)`: the training loop every experiment and notebook runs.

    init_key, train_key, data_key = split(key(config.seed), 3)
    for s in [start, num_train_steps):   θ, m = train_step(θ, m, batch_s, fold_in(train_key, s))

One seed gives three streams: parameter initialisation, per-step randomness (dropout, masked-LM
masks: `fold_in(train_key, s)`) and the data order (the shuffling seed of the grain loader). A
checkpoint holds the parameters, the optimizer state, the step, the training key and the data
iterator's position, so a run resumed from `workdir` continues bit for bit as the uninterrupted
run would have (on CPU). SIGTERM saves a checkpoint and returns; a NaN or infinite loss stops the
run with the last good checkpoint kept.

What a run leaves in `workdir`:

    checkpoints/<step>/    orbax checkpoints (the newest `keep_checkpoints`)
    tensorboard/           TensorBoard event files (train and eval scalars, attention maps)
    metrics.jsonl          one JSON line per train log and per evaluation
    attention/             attention-map PNGs of a few evaluation examples, at every evaluation
    tokenizer.json         the tokenizer of text tasks (reused when resuming)
    config.json            the configuration of the run
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from attn import data as attn_data
from attn import viz
from attn.training import sharding
from attn.training.checkpoint import Checkpointer, PreemptionGuard
from attn.training.metrics import MetricSums, bleu, exact_match, perplexity, truncate_at_eos
from attn.training.optimizers import make_optimizer, make_schedule
from attn.training.steps import (
    check_finite_loss,
    create_train_state,
    make_attention_maps,
    make_eval_step,
    make_train_step,
)
from attn.training.tasks import KINDS, LossOptions, Task, model_family
from attn.training.writers import MetricWriter, progress_bar

# Which dataset kinds (attn.data) each task kind trains on.
DATA_KINDS = {
    "seq2seq": ("seq2seq",),
    "lm": ("lm",),
    "mlm": ("lm",),
    "classification": ("classification", "image_classification"),
}
COMPUTE_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass
class RunResult:
    """What `train_and_evaluate` returns.

    Fields:
      step: the last step trained (the checkpoint step).
      finished: False when SIGTERM stopped the run before `num_train_steps`.
      eval: the metrics of the last evaluation (empty when none ran).
      train: the training metrics of the last logged interval.
      workdir: the run's directory.
    """

    step: int
    finished: bool
    eval: dict[str, float]
    train: dict[str, float]
    workdir: str


def check_config(config: Mapping[str, Any]) -> None:
    """Validate the values a run needs before anything is built.

    Raises:
      ValueError: one line naming the config field, the value and what to change.
    """
    if config.task not in KINDS:
        raise ValueError(f"config.task must be one of {sorted(KINDS)}, got {config.task!r}")
    family = config.model.family
    if family not in KINDS[config.task]:
        model_family(family)  # an unknown family gets the list of every family
        raise ValueError(
            f"config.model.family={family!r} cannot train a {config.task!r} task; use one of "
            f"{list(KINDS[config.task])}"
        )
    if config.dataset.name not in attn_data.list_datasets():
        raise ValueError(
            f"config.dataset.name must be one of {attn_data.list_datasets()}, got "
            f"{config.dataset.name!r}"
        )
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
    if not config.optimizer.learning_rate > 0:
        raise ValueError(
            f"config.optimizer.learning_rate must be > 0, got {config.optimizer.learning_rate}"
        )
    if not 0 <= config.loss.label_smoothing < 1:
        raise ValueError(
            f"config.loss.label_smoothing must be in [0, 1), got {config.loss.label_smoothing}"
        )
    if not config.loss.z_loss >= 0:
        raise ValueError(f"config.loss.z_loss must be >= 0, got {config.loss.z_loss}")
    if not isinstance(config.seed, int) or not 0 <= config.seed < 2**31:
        raise ValueError(f"config.seed must be an int in [0, 2**31), got {config.seed!r}")


def _check_batch_divides(name: str, batch_size: int, mesh: jax.sharding.Mesh) -> None:
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


def _dataset_options(config: Mapping[str, Any]) -> dict[str, Any]:
    max_length = config.dataset.max_length or None
    return dict(
        data_dir=config.dataset.data_dir or None,
        config=config.dataset.config,
        max_length=tuple(max_length)
        if isinstance(max_length, list | tuple)
        else max_length or None,
    )


def _model_config(config: Mapping[str, Any], info: attn_data.DatasetInfo) -> Any:
    """The family's config: the named variant with the dataset's sizes and the overrides."""
    _, config_cls = model_family(config.model.family)
    fields = {f.name for f in dataclasses.fields(config_cls)}
    derived: dict[str, Any] = {}
    if info.vocab_size is not None and "vocab_size" in fields:
        derived["vocab_size"] = info.vocab_size
    if config.task == "classification" and "num_classes" in fields:
        derived["num_classes"] = info.num_classes
    if info.image_shape is not None:
        derived.update(image_size=info.image_shape[0], num_channels=info.image_shape[2])
    if config.compute_dtype != "float32":
        derived["dtype"] = config.compute_dtype
    chosen = {k: v for k, v in config.model.overrides.items() if v is not None}
    unknown = sorted(set(chosen) - fields)
    if unknown:
        raise ValueError(
            f"config.model.overrides sets {unknown}, which {config_cls.__name__} does not have; "
            f"its fields are {sorted(fields)}"
        )
    return config_cls.named(config.model.variant, **{**derived, **chosen})


def _print(*args: Any) -> None:
    if jax.process_index() == 0:
        print(*args, flush=True)


def _tokens(tokenizer: attn_data.Tokenizer | None, ids: np.ndarray) -> list[str]:
    """One label per id for the axes of an attention map."""
    if tokenizer is None:
        return [str(int(i)) for i in ids]
    names = {attn_data.BOS_ID: "<s>", attn_data.EOS_ID: "</s>", attn_data.PAD_ID: "<pad>"}
    labels = [names.get(int(i)) or tokenizer.decode([int(i)]) for i in ids]
    return [label if label.strip() else "␣" for label in labels]


class _Evaluator:
    """Evaluation over (the first `config.eval.num_batches` batches of) the evaluation split."""

    def __init__(self, config, task, state, dataset, tokenizer, batch_sharding, key, workdir):
        self.config = config
        self.task = task
        self.state = state
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.batch_sharding = batch_sharding
        self.key = key
        self.eval_step = make_eval_step(task, state)
        self.attention_maps = make_attention_maps(task, state)
        self.attention_dir = os.path.join(workdir, "attention")

    def __call__(self, step: int, writer: MetricWriter) -> dict[str, float]:
        config, task = self.config.eval, self.task
        sums = MetricSums()
        hypotheses, references = [], []
        pngs: list[str] = []
        model = None
        for index, batch in enumerate(self.dataset.iterator()):
            if config.num_batches and index >= config.num_batches:
                break
            placed = sharding.shard_batch(batch, self.batch_sharding)
            metrics = self.eval_step(self.state.arrays, placed, jax.random.fold_in(self.key, index))
            sums.add_all(jax.device_get(metrics))
            if task.kind == "seq2seq" and config.decode:
                model = model or self.state.merge()[0]
                targets = batch["targets"]
                plot = index == 0 and config.num_attention_maps > 0
                tokens, weights = task.predict(
                    model,
                    placed,
                    max_new_tokens=targets.shape[1],
                    beam_size=config.beam_size,
                    return_weights=plot,
                )
                tokens = np.asarray(tokens)
                valid = np.asarray(batch["valid"])
                matches, _ = exact_match(
                    tokens[valid], targets[valid], eos_id=attn_data.EOS_ID, pad_id=0
                )
                sums.add("exact_match", matches, valid.sum())
                if config.bleu and self.tokenizer is not None:
                    hypotheses += self.tokenizer.decode_batch(tokens[valid])
                    references += self.tokenizer.decode_batch(targets[valid])
                if plot:
                    pngs = self._plot_alignments(step, batch, tokens, np.asarray(weights))
            elif index == 0 and config.num_attention_maps:
                pngs = self._plot_self_attention(step, batch)
        results = sums.means()
        if "loss" in results:
            results["perplexity"] = perplexity(results["loss"])
        if hypotheses:
            results["bleu"] = bleu(hypotheses, references)
        writer.write(step, "eval", results)
        for number, path in enumerate(pngs):
            writer.write_image(step, f"attention/{number}", path)
        return results

    def _png(self, step: int, number: int) -> str:
        os.makedirs(self.attention_dir, exist_ok=True)
        return os.path.join(self.attention_dir, f"step_{step:07d}_example_{number}.png")

    def _plot_alignments(self, step, batch, tokens, weights) -> list[str]:
        """Cross-attention of the decoded tokens over the source (Bahdanau et al. 2015, Fig. 3)."""
        paths = []
        count = min(self.config.eval.num_attention_maps, len(tokens))
        if jax.process_index() != 0:
            return paths
        for number in range(count):
            src, out = batch["inputs"][number], tokens[number]
            S = int(np.sum(src != attn_data.PAD_ID))
            # the decoded tokens up to and including EOS
            M = min(len(truncate_at_eos(out, attn_data.EOS_ID)) + 1, len(out))
            path = self._png(step, number)
            viz.plot_alignment(
                weights[number, :M, :S],
                _tokens(self.tokenizer, src[:S]),
                _tokens(self.tokenizer, out[:M]),
                title=f"step {step}: cross-attention of the decoded output",
                path=path,
            )
            paths.append(path)
        return paths

    def _plot_self_attention(self, step, batch) -> list[str]:
        """Last-layer self-attention, averaged over heads, of the first examples."""
        if jax.process_index() != 0:
            return []
        count = min(self.config.eval.num_attention_maps, len(batch["valid"]))
        first = {key: value[:count] for key, value in batch.items()}
        maps = np.asarray(self.attention_maps(self.state.arrays, first))
        paths = []
        for number in range(count):
            labels = None
            if "inputs" in first:
                ids = first["inputs"][number]
                T = int(np.sum(ids != attn_data.PAD_ID)) or len(ids)
                labels = _tokens(self.tokenizer, ids[:T])
            else:
                T = maps.shape[1]
            path = self._png(step, number)
            viz.plot_attention(
                maps[number, :T, :T],
                query_tokens=labels,
                key_tokens=labels,
                title=f"step {step}: last-layer self-attention (mean over heads)",
                path=path,
            )
            paths.append(path)
        return paths


def train_and_evaluate(config: Mapping[str, Any], workdir: str) -> RunResult:
    """Train `config`'s model on its dataset, evaluating and checkpointing into `workdir`.

    Resumes from the newest readable checkpoint in `workdir/checkpoints` when there is one.

    Args:
      config: an `ml_collections.ConfigDict` from `experiments/configs/*.py` (see
        `experiments/configs/dates.py` for every field).
      workdir: the run's directory (created when missing).

    Returns:
      The `RunResult`.

    Raises:
      ValueError: a one-line message for a bad config value.
      attn.data.DatasetNotFoundError: a catalog dataset that is not prepared in
        `config.dataset.data_dir`.
      NonFiniteLossError: the loss became NaN or infinite.
    """
    check_config(config)
    workdir = os.path.abspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    primary = jax.process_index() == 0
    mesh = sharding.make_mesh(dict(config.mesh))
    _check_batch_divides("batch_size", config.batch_size, mesh)
    _check_batch_divides("eval.batch_size", config.eval.batch_size, mesh)
    init_key, train_key, data_key = jax.random.split(jax.random.key(config.seed), 3)
    data_seed = int(jax.random.randint(data_key, (), 0, 2**31 - 1)) + jax.process_index()

    tokenizer_path = os.path.join(workdir, "tokenizer.json")
    tokenizer = (
        attn_data.load_tokenizer(tokenizer_path)
        if os.path.exists(tokenizer_path)
        else (config.dataset.tokenizer or None)
    )
    options = _dataset_options(config)
    train_data = attn_data.load(
        config.dataset.name,
        split=config.dataset.train_split,
        batch_size=config.batch_size // jax.process_count(),
        seed=data_seed,
        tokenizer=tokenizer,
        vocab_size=config.dataset.vocab_size or None,
        **options,
    )
    info = train_data.info
    if info.kind not in DATA_KINDS[config.task]:
        raise ValueError(
            f"config.dataset.name={config.dataset.name!r} is a {info.kind} dataset; a "
            f"{config.task!r} task needs one of kind {DATA_KINDS[config.task]}"
        )
    tokenizer = info.tokenizer
    if primary and tokenizer is not None and not os.path.exists(tokenizer_path):
        tokenizer.save(tokenizer_path)
    eval_data = attn_data.load(
        config.dataset.name,
        split=config.dataset.eval_split,
        batch_size=config.eval.batch_size // jax.process_count(),
        shuffle=False,
        num_epochs=1,
        drop_remainder=False,
        tokenizer=tokenizer,
        **options,
    )
    if primary:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json(indent=2) if hasattr(config, "to_json") else json.dumps(config))

    model_config = _model_config(config, info)
    # D of the inverse-square-root schedule: the model width (an RNN's hidden size).
    width = getattr(model_config, "model_dim", None) or model_config.hidden_dim
    k = config.optimizer.accumulate_steps
    tx = make_optimizer(config.optimizer, total_steps=config.num_train_steps, model_dim=width)
    schedule = make_schedule(
        config.optimizer, total_steps=max(config.num_train_steps // k, 1), model_dim=width
    )
    task = Task(
        config.task,
        config.model.family,
        LossOptions(config.loss.label_smoothing, config.loss.z_loss),
        vocab_size=info.vocab_size or 0,
    )
    state = create_train_state(
        task,
        model_config,
        tx,
        init_key=init_key,
        shardings=lambda tree: sharding.param_shardings(tree, mesh),
    )
    arrays_sharding = jax.tree.map(lambda leaf: leaf.sharding, state.arrays)
    batch_sharding = sharding.batch_sharding(mesh)
    _print(f"{config.model.family} {config.model.variant} on {config.dataset.name}: {model_config}")
    _print(sharding.plan_table(nnx.state(state.merge()[0], nnx.Param), mesh))

    checkpointer = Checkpointer(
        os.path.join(workdir, "checkpoints"),
        max_to_keep=config.keep_checkpoints,
        save_interval_steps=config.checkpoint_every_steps,
    )
    train_iter = train_data.iterator()
    step = 0
    restored = checkpointer.restore_latest({"state": state.arrays, "rng": train_key, "data": None})
    if restored is not None:
        step, saved = restored
        state.arrays = saved["state"]
        if not np.array_equal(jax.random.key_data(saved["rng"]), jax.random.key_data(train_key)):
            raise ValueError(
                f"the checkpoint in {workdir} was trained with another config.seed; use a new "
                "--workdir or the seed of that run"
            )
        train_iter.set_state(saved["data"])
        _print(f"resumed from the checkpoint of step {step} in {checkpointer.directory}")

    train_step = make_train_step(
        task, state, arrays_sharding=arrays_sharding, batch_sharding=batch_sharding
    )
    evaluator = _Evaluator(
        config,
        task,
        state,
        eval_data,
        tokenizer,
        batch_sharding,
        jax.random.fold_in(data_key, 1),
        workdir,
    )
    writer = MetricWriter(workdir, enabled=primary, echo=not sys.stderr.isatty())
    bar = progress_bar(config.num_train_steps, step, enabled=primary)
    train_sums = MetricSums()
    eval_results: dict[str, float] = {}
    train_results: dict[str, float] = {}
    total = config.num_train_steps
    finished = True
    interval_start = time.perf_counter()
    interval_steps = 0

    saved = [step]  # the newest step on disk, written or restored by this process

    def save(force: bool) -> None:
        if step != saved[0] and checkpointer.save(
            step,
            {"state": state.arrays, "rng": train_key, "data": train_iter.get_state()},
            force=force,
        ):
            saved[0] = step

    try:
        with PreemptionGuard() as guard:
            while step < total:
                batch = sharding.shard_batch(next(train_iter), batch_sharding)
                state.arrays, metrics = train_step(
                    state.arrays, batch, train_key, jnp.asarray(step, jnp.int32)
                )
                metrics = jax.device_get(metrics)
                step += 1
                interval_steps += 1
                loss_total, loss_count = metrics["loss"]
                check_finite_loss(
                    float(loss_total / max(loss_count, 1.0)),
                    step,
                    last_checkpoint=checkpointer.latest_step,
                    workdir=workdir,
                )
                train_sums.add_all(metrics)
                bar.update(1)
                if step % config.log_every_steps == 0 or step == total:
                    elapsed = time.perf_counter() - interval_start
                    train_results = train_sums.means()
                    train_results["learning_rate"] = float(schedule((step - 1) // k))
                    train_results["steps_per_second"] = interval_steps / max(elapsed, 1e-9)
                    writer.write(step, "train", train_results)
                    bar.set_postfix(loss=f"{train_results['loss']:.4f}")
                    train_sums = MetricSums()
                    interval_start, interval_steps = time.perf_counter(), 0
                if step % config.eval_every_steps == 0 or step == total:
                    eval_results = evaluator(step, writer)
                    bar.set_postfix(
                        loss=f"{train_results.get('loss', math.nan):.4f}",
                        **{
                            name: f"{eval_results[name]:.4f}"
                            for name in ("exact_match", "accuracy")
                            if name in eval_results
                        },
                    )
                save(force=step == total)
                if guard.requested_on_any_process():
                    if step < total:
                        save(force=True)
                        finished = False
                        _print(f"\nstopped by {guard.received or 'a signal'} at step {step}")
                    break
        if not eval_results and step == total:  # resumed from the final checkpoint
            eval_results = evaluator(step, writer)
    finally:
        bar.close()
        checkpointer.close()
        writer.close()
    if primary and finished:
        _print_summary(workdir, step, eval_results)
    return RunResult(step, finished, eval_results, train_results, workdir)


def _print_summary(workdir: str, step: int, eval_results: Mapping[str, float]) -> None:
    shown = ", ".join(f"{name} {value:.4f}" for name, value in sorted(eval_results.items()))
    attention = os.path.join(workdir, "attention")
    pngs = sorted(os.listdir(attention)) if os.path.isdir(attention) else []
    lines = [
        f"finished at step {step}; last evaluation: {shown}",
        f"  checkpoints     {os.path.join(workdir, 'checkpoints')}",
        f"  tensorboard     tensorboard --logdir {os.path.join(workdir, 'tensorboard')}",
        f"  metrics         {os.path.join(workdir, 'metrics.jsonl')}",
    ]
    if pngs:
        lines.append(f"  attention maps  {os.path.join(attention, pngs[-1])} ({len(pngs)} PNGs)")
    print("\n".join(lines), flush=True)


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
}


def _override_placeholders() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(
        {name: ml_collections.config_dict.placeholder(kind) for name, kind in OVERRIDABLE.items()}
    )


def default_config() -> ml_collections.ConfigDict:
    """Every field a run reads, with defaults; experiment configs start from this.

    Fields:
      seed: the one seed of the run (initialisation, per-step randomness, data order).
      task: "seq2seq", "lm", "mlm" or "classification".
      dataset.name: a name of `attn.data.list_datasets()`; dataset.config: "default" or "tiny"
        (generated data); dataset.data_dir: the TFDS directory ("" = TFDS's default);
        dataset.train_split / eval_split; dataset.max_length: 0 (the dataset's default), T, or
        [S, T] for seq2seq; dataset.tokenizer: "" (default), "char" or "sentencepiece";
        dataset.vocab_size: SentencePiece size (0 = default).
      model.family: "Transformer", "Seq2SeqRNN", "TransformerLM", "Bert" or "ViT";
        model.variant: a named variant of the family's config; model.overrides: fields of the
        family's config (the names of `OVERRIDABLE`, None = the variant's value, and any other
        a config file sets).
      batch_size: the global batch B; num_train_steps: train-step calls.
      optimizer: see `attn.training.optimizers.make_optimizer`.
      loss.label_smoothing: ε; loss.z_loss: α.
      compute_dtype: "float32" or "bfloat16" (parameters stay float32).
      mesh: {"data": -1, "fsdp": 1, "tensor": 1}, see `attn.training.sharding.make_mesh`.
      log_every_steps, eval_every_steps, checkpoint_every_steps, keep_checkpoints.
      eval.batch_size; eval.num_batches (0 = the whole split); eval.decode (seq2seq: greedy or
        beam search for exact match); eval.beam_size (1 = greedy); eval.bleu;
        eval.num_attention_maps (PNGs per evaluation).
    """
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.task = "seq2seq"
    config.dataset = ml_collections.ConfigDict(
        dict(
            name="dates",
            config="default",
            data_dir="",
            train_split="train",
            eval_split="validation",
            max_length=0,
            tokenizer="",
            vocab_size=0,
        )
    )
    config.model = ml_collections.ConfigDict(
        dict(family="Transformer", variant="tiny", overrides=_override_placeholders())
    )
    config.batch_size = 64
    config.num_train_steps = 1000
    config.optimizer = ml_collections.ConfigDict(
        dict(
            name="adamw",
            learning_rate=1e-3,
            schedule="warmup_cosine",
            warmup_steps=100,
            end_factor=0.0,
            b1=0.9,
            b2=0.98,
            eps=1e-9,
            weight_decay=0.0,
            grad_clip_norm=1.0,
            accumulate_steps=1,
        )
    )
    config.loss = ml_collections.ConfigDict(dict(label_smoothing=0.0, z_loss=0.0))
    config.compute_dtype = "float32"
    config.mesh = ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    config.log_every_steps = 50
    config.eval_every_steps = 500
    config.checkpoint_every_steps = 500
    config.keep_checkpoints = 3
    config.eval = ml_collections.ConfigDict(
        dict(
            batch_size=100,
            num_batches=0,
            decode=True,
            beam_size=1,
            bleu=False,
            num_attention_maps=2,
        )
    )
    return config
