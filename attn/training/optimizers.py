"""Learning-rate schedules and the optax optimizer factory.

Schedules (s counts optimizer updates from 1):
  "inverse_sqrt"   lr(s) = scale · D^-0.5 · min(s^-0.5, s · w^-1.5)   (Vaswani et al. 2017, eq. 3:
                   linear warmup over w steps, then decay with the inverse square root)
  "warmup_cosine"  lr(s) linear from 0 to the peak over w steps, then a cosine to
                   peak · end_factor at the last step (Loshchilov & Hutter 2017, "SGDR")
  "constant"       lr(s) = peak

Optimizer: AdamW (Loshchilov & Hutter 2019; weight decay on matrices only, not on biases or
LayerNorm scales), after clipping the global gradient norm (Pascanu et al. 2013), optionally
accumulating gradients over `accumulate_steps` micro-batches (`optax.MultiSteps`: one update
every `accumulate_steps` calls).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("inverse_sqrt", "warmup_cosine", "constant")


def inverse_sqrt_schedule(model_dim: int, warmup_steps: int, scale: float = 1.0) -> optax.Schedule:
    """lr(s) = scale · D^-0.5 · min(s^-0.5, s · w^-1.5) with s = count + 1 (Vaswani et al. 2017).

    Args:
      model_dim: D, the model width (512 in the paper's base model).
      warmup_steps: w > 0 (4000 in the paper); the peak scale · (D w)^-0.5 is reached at s = w.
      scale: a factor on the whole schedule (1 in the paper).

    Returns:
      An optax schedule: optimizer update count (0-based) -> learning rate.
    """
    if model_dim <= 0:
        raise ValueError(f"inverse_sqrt_schedule: model_dim must be > 0, got {model_dim}")
    if warmup_steps <= 0:
        raise ValueError(f"inverse_sqrt_schedule: warmup_steps must be > 0, got {warmup_steps}")
    if scale <= 0:
        raise ValueError(f"inverse_sqrt_schedule: scale must be > 0, got {scale}")

    def schedule(count):
        s = jnp.asarray(count, jnp.float32) + 1.0
        return scale * model_dim**-0.5 * jnp.minimum(s**-0.5, s * warmup_steps**-1.5)

    return schedule


def warmup_cosine_schedule(
    peak_value: float, warmup_steps: int, total_steps: int, end_factor: float = 0.0
) -> optax.Schedule:
    """Linear warmup from 0 to `peak_value` over `warmup_steps`, then a cosine decay to
    `peak_value · end_factor` at `total_steps`.

    Args:
      peak_value: the largest learning rate, > 0.
      warmup_steps: w >= 0.
      total_steps: the last step, > w.
      end_factor: the final learning rate as a fraction of the peak, in [0, 1].

    Returns:
      An optax schedule.
    """
    if peak_value <= 0:
        raise ValueError(f"warmup_cosine_schedule: peak_value must be > 0, got {peak_value}")
    if warmup_steps < 0 or total_steps <= warmup_steps:
        raise ValueError(
            "warmup_cosine_schedule: need 0 <= warmup_steps < total_steps, got warmup_steps="
            f"{warmup_steps}, total_steps={total_steps}"
        )
    if not 0.0 <= end_factor <= 1.0:
        raise ValueError(f"warmup_cosine_schedule: end_factor must be in [0, 1], got {end_factor}")
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak_value,
        warmup_steps=warmup_steps,
        decay_steps=total_steps,
        end_value=peak_value * end_factor,
    )


def make_schedule(config: Mapping[str, Any], *, total_steps: int, model_dim: int) -> optax.Schedule:
    """The schedule named by `config.schedule` (see the module docstring).

    Args:
      config: the `optimizer` section: `schedule`, `learning_rate` (the peak, or the scale of
        "inverse_sqrt"), `warmup_steps`, and `end_factor` for "warmup_cosine".
      total_steps: optimizer updates in the whole run.
      model_dim: D, for "inverse_sqrt".

    Returns:
      An optax schedule.
    """
    name = config["schedule"]
    lr = config["learning_rate"]
    if not lr > 0:
        raise ValueError(f"config.optimizer.learning_rate must be > 0, got {lr}")
    if name == "inverse_sqrt":
        return inverse_sqrt_schedule(model_dim, config["warmup_steps"], scale=lr)
    if name == "warmup_cosine":
        warmup = min(config["warmup_steps"], max(total_steps - 1, 0))
        return warmup_cosine_schedule(
            lr, warmup, max(total_steps, warmup + 1), config.get("end_factor", 0.0)
        )
    if name == "constant":
        return optax.constant_schedule(lr)
    raise ValueError(f"config.optimizer.schedule must be one of {SCHEDULES}, got {name!r}")


def decay_mask(params):
    """True for the leaves weight decay applies to: matrices and embeddings (ndim >= 2)."""
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def make_optimizer(
    config: Mapping[str, Any], *, total_steps: int, model_dim: int
) -> optax.GradientTransformation:
    """clip_by_global_norm → AdamW(schedule), wrapped in `optax.MultiSteps` when accumulating.

    Args:
      config: the `optimizer` section: `name` ("adamw" or "adam"), `learning_rate`, `schedule`,
        `warmup_steps`, `b1`, `b2`, `eps`, `weight_decay`, `grad_clip_norm` (0 or None: no
        clipping), `accumulate_steps` (>= 1 micro-batches per update).
      total_steps: train-step calls in the whole run (micro-batches when accumulating).
      model_dim: D, for the "inverse_sqrt" schedule.

    Returns:
      An optax `GradientTransformation`.
    """
    name = config.get("name", "adamw")
    if name not in ("adamw", "adam"):
        raise ValueError(f"config.optimizer.name must be 'adamw' or 'adam', got {name!r}")
    accumulate_steps = config.get("accumulate_steps", 1)
    if not isinstance(accumulate_steps, int) or accumulate_steps < 1:
        raise ValueError(
            f"config.optimizer.accumulate_steps must be an integer >= 1, got {accumulate_steps!r}"
        )
    weight_decay = config.get("weight_decay", 0.0)
    if weight_decay < 0:
        raise ValueError(f"config.optimizer.weight_decay must be >= 0, got {weight_decay}")
    clip = config.get("grad_clip_norm", 0.0) or 0.0
    if clip < 0:
        raise ValueError(f"config.optimizer.grad_clip_norm must be >= 0, got {clip}")
    schedule = make_schedule(
        config, total_steps=max(total_steps // accumulate_steps, 1), model_dim=model_dim
    )
    adam_args = dict(
        b1=config.get("b1", 0.9), b2=config.get("b2", 0.98), eps=config.get("eps", 1e-9)
    )
    if name == "adamw":
        adam = optax.adamw(schedule, weight_decay=weight_decay, mask=decay_mask, **adam_args)
    else:
        adam = optax.adam(schedule, **adam_args)
    tx = optax.chain(optax.clip_by_global_norm(clip), adam) if clip else adam
    return optax.MultiSteps(tx, every_k_schedule=accumulate_steps) if accumulate_steps > 1 else tx
