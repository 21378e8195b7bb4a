"""Jitted train and eval steps over the split state of a model and its optimizer.

    g_s = ∇_θ L(θ_s; batch_s, key_s),   θ_{s+1}, m_{s+1} = optimizer(θ_s, m_s, g_s),
    key_s = fold_in(key, s)

The training state is `nnx.split((model, optimizer[, task state]), nnx.RngState, ...)`: a static
graph, the RNG streams (reseeded every step from key_s, so they carry nothing between steps) and
the arrays (parameters, optimizer state, step counters and the task's own training state, such as
the REINFORCE baseline of hard attention) that the train step donates and returns updated, so the
old buffers are reused in place. Per-step randomness (dropout, the "sampling" stream of
scheduled sampling, masked-LM masks) comes only
from `fold_in(key, step)`: a run resumed at step s draws exactly what the uninterrupted run drew.
Compute in bfloat16 is a model config choice (`dtype="bfloat16"`, float32 parameters); the loss
runs in float32 whatever the compute dtype.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from attn.training.tasks import Metrics, Task
from attn.typing import Array

# XLA options for functions that run once or rarely (initialisation, attention maps): no backend
# optimisation, which compiles several times faster on CPU.
RUN_ONCE_OPTIONS = {"xla_backend_optimization_level": 0}


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the run stopped without saving that state."""


@dataclasses.dataclass
class TrainState:
    """The split training state.

    Fields:
      graphdef: the static structure of (model, optimizer[, task state]).
      rng_state: the models' RNG streams (reseeded every step; not checkpointed).
      arrays: parameters, optimizer state, counters and the task state (`Task.train_state`,
        e.g. a `ReinforceBaseline`): what checkpoints hold.
    """

    graphdef: Any
    rng_state: Any
    arrays: Any

    def merge(self) -> tuple[nnx.Module, ...]:
        """(model, optimizer), or (model, optimizer, task state) for tasks that have one."""
        return nnx.merge(self.graphdef, self.rng_state, self.arrays)


def create_train_state(
    task: Task,
    model_config: Any,
    tx: optax.GradientTransformation,
    *,
    init_key: Array,
    shardings: Callable[[Any], Any] | None = None,
) -> TrainState:
    """Build the model from `init_key` and its optimizer in one jitted call, and split them.

    Args:
      task: the task (it knows the model family).
      model_config: the family's config object.
      tx: the optax optimizer.
      init_key: the key of the parameter initialisation.
      shardings: maps the abstract arrays (`jax.ShapeDtypeStruct`s) to their shardings, e.g.
        `lambda tree: param_shardings(tree, mesh)`; the arrays are created in place there.
        None: on the default device.

    Returns:
      The `TrainState`.
    """

    def build(key):
        params_key, dropout_key, sampling_key = jax.random.split(key, 3)
        rngs = nnx.Rngs(params=params_key, dropout=dropout_key, sampling=sampling_key)
        model = task.build_model(model_config, rngs)
        nodes = (model, nnx.Optimizer(model, tx, wrt=nnx.Param))
        task_state = task.train_state(model_config)
        return nodes if task_state is None else (*nodes, task_state)

    def init(key):
        _, rng_state, arrays = nnx.split(build(key), nnx.RngState, ...)
        return rng_state, arrays

    abstract = nnx.eval_shape(lambda: build(init_key))
    graphdef, _, abstract_arrays = nnx.split(abstract, nnx.RngState, ...)
    out_shardings = None if shardings is None else (None, shardings(abstract_arrays))
    init = jax.jit(init, out_shardings=out_shardings).lower(init_key)
    rng_state, arrays = init.compile(compiler_options=RUN_ONCE_OPTIONS)(init_key)
    return TrainState(graphdef, rng_state, arrays)


def make_train_step(
    task: Task,
    state: TrainState,
    *,
    arrays_sharding: Any = None,
    batch_sharding: Any = None,
) -> Callable[[Any, dict, Array, Array], tuple[Any, Metrics]]:
    """The jitted train step `(arrays, batch, key, step) -> (new arrays, metric sums)`.

    `arrays` is donated: do not read it after the call. The metric sums hold (total, count)
    pairs for "loss" and "accuracy" plus "grad_norm" (the global gradient norm, count 1) and
    "finite_parameters" (1 when every updated parameter is finite, else 0; count 1): the loss
    of step s is computed from the parameters before update s, so only this flag says whether
    the state after it can be trusted.

    Args:
      task: the task.
      state: the split state (its graph and RNG streams are closed over).
      arrays_sharding: shardings of `state.arrays` (in and out); None: as placed.
      batch_sharding: sharding of every batch leaf; None: as placed.

    Returns:
      The jitted function; `key` is the run's training key and `step` an int32 scalar.
    """
    graphdef, rng_state = state.graphdef, state.rng_state

    def step_fn(arrays, rng_state, batch, key, step):
        model, optimizer, *task_state = nnx.merge(graphdef, rng_state, arrays)
        dropout_key, sampling_key, task_key = jax.random.split(jax.random.fold_in(key, step), 3)
        nnx.reseed(model, dropout=dropout_key, sampling=sampling_key)
        baseline = task_state[0].value[...] if task_state else None

        def loss_fn(model):
            return task.train_loss(model, batch, task_key, step=step, baseline=baseline)

        (_, metrics), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        optimizer.update(model, grads)
        if task_state:  # the REINFORCE baseline after this batch
            task_state[0].value[...] = metrics["reinforce_baseline"][0]
        one = jnp.ones((), jnp.float32)
        metrics["grad_norm"] = (optax.tree.norm(grads), one)
        finite = [jnp.all(jnp.isfinite(p)) for p in jax.tree.leaves(nnx.state(model, nnx.Param))]
        metrics["finite_parameters"] = (jnp.all(jnp.stack(finite)).astype(jnp.float32), one)
        _, _, new_arrays = nnx.split((model, optimizer, *task_state), nnx.RngState, ...)
        return new_arrays, metrics

    shardings = {}
    if arrays_sharding is not None:
        shardings = dict(
            in_shardings=(arrays_sharding, None, batch_sharding, None, None),
            out_shardings=(arrays_sharding, None),
        )
    jitted = jax.jit(step_fn, donate_argnums=0, **shardings)

    def train_step(arrays, batch, key, step):
        return jitted(arrays, rng_state, batch, key, step)

    return train_step


def make_eval_step(task: Task, state: TrainState) -> Callable[[Any, dict, Array], Metrics]:
    """The jitted eval step `(arrays, batch, key) -> metric sums` (no dropout, plain loss)."""
    graphdef, rng_state = state.graphdef, state.rng_state

    @jax.jit
    def step_fn(arrays, rng_state, batch, key):
        model, *_ = nnx.merge(graphdef, rng_state, arrays)
        return task.eval_metrics(model, batch, key)

    def eval_step(arrays, batch, key):
        return step_fn(arrays, rng_state, batch, key)

    return eval_step


def make_attention_maps(task: Task, state: TrainState) -> Callable[[Any, dict], Array]:
    """`(arrays, batch) -> task.attention_maps(model, batch)`, jitted (compiled without backend
    optimisation: it runs on a few examples per evaluation)."""
    graphdef, rng_state = state.graphdef, state.rng_state

    def maps_fn(arrays, rng_state, batch):
        model, *_ = nnx.merge(graphdef, rng_state, arrays)
        return task.attention_maps(model, batch)

    compiled = {}

    def attention_maps(arrays, batch):
        shapes = tuple((k, v.shape) for k, v in sorted(batch.items()))
        if shapes not in compiled:
            lowered = jax.jit(maps_fn).lower(arrays, rng_state, batch)
            compiled[shapes] = lowered.compile(compiler_options=RUN_ONCE_OPTIONS)
        return compiled[shapes](arrays, rng_state, batch)

    return attention_maps


def check_finite_loss(
    loss: float,
    step: int,
    *,
    last_checkpoint: int | None,
    workdir: str,
    parameters_finite: bool = True,
) -> None:
    """Stop the run when the loss is NaN or infinite, or the updated parameters are.

    Args:
      loss: the mean training loss of the step (of the parameters before its update).
      step: the step that produced it (1-based: the number of updates made).
      last_checkpoint: the newest good step kept on disk (one whose own parameters give a finite
        loss); None when there is none.
      workdir: the run's directory.
      parameters_finite: whether every parameter after the update of `step` is finite.

    Raises:
      NonFiniteLossError: with the step, the value, where the last good checkpoint is and what
        to change.
    """
    if math.isfinite(loss) and parameters_finite:
        return
    kept = (
        f"the last good checkpoint (step {last_checkpoint}) is kept in {workdir}"
        if last_checkpoint is not None
        else f"no good checkpoint was saved in {workdir}"
    )
    what = (
        f"training loss is {loss} at step {step}"
        if not math.isfinite(loss)
        else f"the parameters are not finite after step {step} (loss {loss})"
    )
    raise NonFiniteLossError(
        f"{what}; stopped without saving this state, {kept}. "
        "Lower config.optimizer.learning_rate, set config.optimizer.grad_clip_norm, or use "
        "float32 compute (config.compute_dtype='float32')"
    )
