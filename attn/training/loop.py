"""`train_and_evaluate(config, workdir)`: the training loop every experiment and notebook runs.

    init_key, train_key, data_key = split(key(config.seed), 3)
    for s in [start, num_train_steps):   θ, m = train_step(θ, m, batch_s, fold_in(train_key, s))

One seed gives three streams: parameter initialisation, per-step randomness (dropout, masked-LM
masks: `fold_in(train_key, s)`) and the data order (the shuffling seed of the grain loader). A
checkpoint holds the parameters, the optimizer state, the step, the training key and the data
iterator's position, so a run resumed from `workdir` continues bit for bit as the uninterrupted
run would have (on CPU). SIGTERM saves a checkpoint and returns; a NaN or infinite loss stops the
run with the last good checkpoint kept: one whose own parameters are finite and give a finite
loss (the checkpoint of the state that produced the non-finite loss is removed).

What a run leaves in `workdir`:

    checkpoints/<step>/    orbax checkpoints (the newest `keep_checkpoints`)
    tensorboard/           TensorBoard event files (train and eval scalars, attention maps)
    metrics.jsonl          one JSON line per train log and per evaluation
    attention/             attention-map PNGs of a few evaluation examples, at every evaluation
    tokenizer.json         the tokenizer of text tasks (reused when resuming)
    config.json            the configuration of the checkpoints (a resume must match it)
    .lock                  held by the live run (see `attn.training.workdir`)
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from attn import data as attn_data
from attn.training import sharding
from attn.training.checkpoint import Checkpointer
from attn.training.config import (
    check_batch_divides,
    check_config,
    check_dataset,
    dataset_options,
    model_config,
)
from attn.training.evaluate import Evaluator
from attn.training.metrics import MetricSums
from attn.training.optimizers import make_optimizer, make_schedule
from attn.training.preemption import PreemptionGuard
from attn.training.steps import check_finite_loss, create_train_state, make_train_step
from attn.training.tasks import LossOptions, task_class
from attn.training.workdir import Workdir
from attn.training.writers import MetricWriter, progress_bar


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


def _print(*args: Any) -> None:
    if jax.process_index() == 0:
        print(*args, flush=True)


def train_and_evaluate(config: Mapping[str, Any], workdir: str) -> RunResult:
    """Train `config`'s model on its dataset, evaluating and checkpointing into `workdir`.

    Resumes from the newest readable checkpoint in `workdir/checkpoints` when there is one.

    Args:
      config: an `ml_collections.ConfigDict` from `experiments/configs/*.py` (see
        `attn.training.config.default_config` for every field).
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
    primary = jax.process_index() == 0
    with Workdir(workdir, primary=primary) as run_dir:
        run_dir.check_resume_config(config)
        return _train_and_evaluate(config, run_dir)


def _train_and_evaluate(config: Mapping[str, Any], run_dir: Workdir) -> RunResult:
    workdir, primary = run_dir.path, run_dir.primary
    checkpointer = Checkpointer(
        run_dir.file("checkpoints"),
        max_to_keep=config.keep_checkpoints,
        save_interval_steps=config.checkpoint_every_steps,
    )
    mesh = sharding.make_mesh(dict(config.mesh))
    check_batch_divides("batch_size", config.batch_size, mesh)
    check_batch_divides("eval.batch_size", config.eval.batch_size, mesh)
    init_key, train_key, data_key = jax.random.split(jax.random.key(config.seed), 3)
    # Replicated over the mesh, a global array that every process's checkpoint can write.
    train_key = jax.random.wrap_key_data(
        jax.make_array_from_process_local_data(
            NamedSharding(mesh, PartitionSpec()), np.asarray(jax.random.key_data(train_key))
        ),
        impl=jax.random.key_impl(train_key),
    )
    train_data, eval_data = _load_data(config, run_dir, data_key)
    info = train_data.info
    tokenizer = info.tokenizer
    family_config = model_config(config, info)
    # D of the inverse-square-root schedule: the model width (an RNN's hidden size).
    width = getattr(family_config, "model_dim", None) or family_config.hidden_dim
    accumulate_steps = config.optimizer.accumulate_steps
    tx = make_optimizer(config.optimizer, total_steps=config.num_train_steps, model_dim=width)
    schedule = make_schedule(
        config.optimizer,
        total_steps=max(config.num_train_steps // accumulate_steps, 1),
        model_dim=width,
    )
    task = task_class(config.task)(
        config.model.family,
        LossOptions(
            config.loss.label_smoothing,
            config.loss.z_loss,
            config.loss.reinforce_baseline_decay,
        ),
        vocab_size=info.vocab_size or 0,
    )
    state = create_train_state(
        task,
        family_config,
        tx,
        init_key=init_key,
        shardings=lambda tree: sharding.param_shardings(tree, mesh),
    )
    arrays_sharding = jax.tree.map(lambda leaf: leaf.sharding, state.arrays)
    batch_sharding = sharding.batch_sharding(mesh)
    _print(
        f"{config.model.family} {config.model.variant} on {config.dataset.name}: {family_config}"
    )
    _print(sharding.plan_table(nnx.state(state.merge()[0], nnx.Param), mesh))

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
        if step > config.num_train_steps:
            raise ValueError(
                f"config.num_train_steps={config.num_train_steps} is below step {step} of the "
                f"checkpoint in {checkpointer.directory}; use at least {step}, or a new --workdir"
            )
        _print(f"resumed from the checkpoint of step {step} in {checkpointer.directory}")

    train_step = make_train_step(
        task, state, arrays_sharding=arrays_sharding, batch_sharding=batch_sharding
    )
    evaluator = Evaluator(
        config,
        task,
        state,
        eval_data,
        tokenizer,
        batch_sharding,
        jax.random.fold_in(data_key, 1),
        workdir,
    )
    total = config.num_train_steps
    run_dir.cut_metrics(step, reevaluate=step == total)
    run_dir.write_metadata(config, tokenizer)  # the run has started
    writer = MetricWriter(workdir, enabled=primary, echo=not sys.stderr.isatty())
    bar = progress_bar(config.num_train_steps, step, enabled=primary)
    train_sums = MetricSums()
    eval_results: dict[str, float] = {}
    train_results: dict[str, float] = {}
    finished = True
    interval_start = time.perf_counter()
    interval_steps = 0

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
                parameters_finite = bool(metrics.pop("finite_parameters")[0] > 0)
                loss_total, loss_count = metrics["loss"]
                loss = float(loss_total / max(loss_count, 1.0))
                if not math.isfinite(loss):
                    # The loss of this step is that of the state before it: a checkpoint of
                    # that state would resume into the same non-finite loss.
                    checkpointer.wait()
                    if checkpointer.latest_step == step - 1:
                        checkpointer.delete(step - 1)
                check_finite_loss(
                    loss,
                    step,
                    last_checkpoint=checkpointer.latest_step,
                    workdir=workdir,
                    parameters_finite=parameters_finite,
                )
                train_sums.add_all(metrics)
                bar.update(1)
                if step % config.log_every_steps == 0 or step == total:
                    elapsed = time.perf_counter() - interval_start
                    train_results = train_sums.means()
                    train_results["learning_rate"] = float(schedule((step - 1) // accumulate_steps))
                    train_results["steps_per_second"] = interval_steps / max(elapsed, 1e-9)
                    writer.write(step, "train", train_results)
                    bar.set_postfix(loss=f"{train_results['loss']:.4f}")
                    train_sums = MetricSums()
                    interval_start, interval_steps = time.perf_counter(), 0
                stopping = guard.requested_on_any_process()
                # Due every checkpoint_every_steps, and forced at the end and on a stop; before
                # the evaluation, so that an evaluation error loses no training.
                checkpointer.save(
                    step,
                    {"state": state.arrays, "rng": train_key, "data": train_iter.get_state()},
                    force=step == total or stopping,
                )
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
                if stopping:
                    if step < total:
                        finished = False
                        signal_name = guard.received.name if guard.received else "a signal"
                        _print(f"\nstopped by {signal_name} at step {step}")
                    break
        if not eval_results and step == total:  # resumed from the final checkpoint
            eval_results = evaluator(step, writer)
    finally:
        bar.close()
        # After an error, closing must not replace it with its own (a full disk fails them all).
        failing = sys.exc_info()[1] is not None
        for close in (checkpointer.close, writer.close):
            try:
                close()
            except OSError:
                if not failing:
                    raise
    if primary and finished:
        _print_summary(workdir, step, eval_results)
    return RunResult(step, finished, eval_results, train_results, workdir)


def _load_data(config: Mapping[str, Any], run_dir: Workdir, data_key: Any) -> tuple:
    """(training split, evaluation split) of `attn.data.load`, checked against the task; the
    tokenizer of the run being resumed, or a new one fitted to the training split."""
    # One seed on every process: the same global batches, of which each process reads its rows.
    data_seed = int(jax.random.randint(data_key, (), 0, 2**31 - 1))
    shards = grain.sharding.ShardByJaxProcess()
    tokenizer_path = run_dir.tokenizer_to_reuse()
    tokenizer = (
        attn_data.load_tokenizer(tokenizer_path)
        if tokenizer_path is not None
        else (config.dataset.tokenizer or None)
    )
    options = dataset_options(config)
    train_data = attn_data.load(
        config.dataset.name,
        split=config.dataset.train_split,
        batch_size=config.batch_size,
        seed=data_seed,
        shard_options=shards,
        tokenizer=tokenizer,
        vocab_size=config.dataset.vocab_size or None,
        **options,
    )
    check_dataset(config, train_data.info)
    eval_data = attn_data.load(
        config.dataset.name,
        split=config.dataset.eval_split,
        batch_size=config.eval.batch_size,
        shard_options=shards,
        shuffle=False,
        num_epochs=1,
        drop_remainder=False,
        tokenizer=train_data.info.tokenizer,
        **options,
    )
    return train_data, eval_data


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
