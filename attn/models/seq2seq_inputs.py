"""What an RNN encoder-decoder reads: the reversed source and the teacher-forcing schedule.

reverse_padded:         the real tokens of every row in reverse order (Sutskever et al. 2014)
inverse_sigmoid_decay:  p_i = k / (k + exp(i / k)), the probability that training step i reads
                        the true previous token (scheduled sampling, Bengio et al. 2015)
"""

from __future__ import annotations

import jax.numpy as jnp

from attn.typing import Array, ArrayLike


def inverse_sigmoid_decay(step: int | ArrayLike, k: float) -> Array:
    """The teacher-forcing probability of scheduled sampling, p_i = k / (k + exp(i / k))
    (Bengio et al. 2015, "Scheduled Sampling for Sequence Prediction with Recurrent Neural
    Networks").

    Args:
      step: i >= 0, the training step (an int or an int array, may be traced).
      k: k >= 1; larger k decays later (p falls to 1/2 near i = k log k).

    Returns:
      float32 p_i with the shape of `step`, in (0, 1).
    """
    if not k >= 1.0:
        raise ValueError(f"inverse_sigmoid_decay: k must be >= 1, got {k!r}")
    i = jnp.asarray(step, jnp.float32)
    return k / (k + jnp.exp(i / k))


def reverse_padded(ids: ArrayLike, mask: ArrayLike) -> tuple[Array, Array]:
    """Reverse the real tokens of every right-padded row, leaving the padding in place.

        order[b, j] = len_b - 1 - j for j < len_b, else j;   out[b, j] = ids[b, order[b, j]]

    `order` is its own inverse, so it also maps results over reversed positions back.

    Args:
      ids: [B, S] (any dtype).
      mask: bool [B, S], True = real token (right padding).

    Returns:
      (reversed ids [B, S], order int32 [B, S]).
    """
    ids, mask = jnp.asarray(ids), jnp.asarray(mask)
    S = ids.shape[1]
    lengths = jnp.sum(mask, axis=1, dtype=jnp.int32)[:, None]  # [B, 1]
    positions = jnp.arange(S, dtype=jnp.int32)[None, :]
    order = jnp.where(positions < lengths, lengths - 1 - positions, positions)
    return jnp.take_along_axis(ids, order, axis=1), order
