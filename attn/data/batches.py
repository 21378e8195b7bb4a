"""Batch transforms the training step applies: decoder inputs (teacher forcing) and BERT masking.

Both are written in `jax.numpy`, so they run on host numpy batches and inside `jax.jit` alike.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from attn.data.tokenizers import BOS_ID, MASK_ID, NUM_SPECIAL_IDS
from attn.typing import Array, ArrayLike, PRNGKey


def shift_right(targets: ArrayLike, bos_id: int = BOS_ID) -> Array:
    """Decoder input for teacher forcing: y_in = [BOS, y_1, …, y_{T-1}] (Vaswani et al., 2017, §3).

    Args:
      targets: int[B, T], the target ids (ending with EOS, padded with 0).
      bos_id: the id placed at position 0.

    Returns:
      int[B, T], same dtype as `targets`.
    """
    targets = jnp.asarray(targets)
    if targets.ndim != 2:
        raise ValueError(f"targets must be [B, T], got shape {targets.shape}")
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        raise TypeError(f"targets must hold integer ids, got dtype {targets.dtype}")
    start = jnp.full((targets.shape[0], 1), bos_id, dtype=targets.dtype)
    return jnp.concatenate([start, targets[:, :-1]], axis=1)


def mask_tokens(
    inputs: ArrayLike,
    key: PRNGKey,
    *,
    vocab_size: int,
    mask_id: int = MASK_ID,
    rate: float = 0.15,
    num_special_ids: int = NUM_SPECIAL_IDS,
) -> dict[str, Array]:
    """BERT masking (Devlin et al., 2019, §3.1): pick each real token with probability `rate`;
    of the picked, 80 % become [MASK], 10 % a random token, 10 % stay; predict the originals.

    Ids below `num_special_ids` (pad, bos, eos, unk, mask) are never picked.

    Args:
      inputs: int[B, T], token ids.
      key: PRNG key (e.g. `jax.random.fold_in(data_key, step)` for reproducible masking).
      vocab_size: V; random replacements are drawn from [num_special_ids, V).
      mask_id: the [MASK] id (4 in both attn tokenizers).
      rate: probability of picking a token, in (0, 1].
      num_special_ids: ids below this are special.

    Returns:
      dict with `inputs` int[B, T] (corrupted), `targets` int[B, T] (the original ids) and
      `weights` float32[B, T] (1 where a token was picked, else 0).
    """
    inputs = jnp.asarray(inputs)
    if inputs.ndim != 2:
        raise ValueError(f"inputs must be [B, T], got shape {inputs.shape}")
    if not jnp.issubdtype(inputs.dtype, jnp.integer):
        raise TypeError(f"inputs must hold integer ids, got dtype {inputs.dtype}")
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"rate must be in (0, 1], got {rate}")
    if vocab_size <= num_special_ids:
        raise ValueError(
            f"vocab_size must exceed num_special_ids={num_special_ids}, got {vocab_size}"
        )
    pick_key, action_key, token_key = jax.random.split(key, 3)
    real = inputs >= num_special_ids
    picked = real & jax.random.bernoulli(pick_key, rate, inputs.shape)
    action = jax.random.uniform(action_key, inputs.shape)
    random_tokens = jax.random.randint(
        token_key, inputs.shape, num_special_ids, vocab_size, dtype=inputs.dtype
    )
    corrupted = jnp.where(action < 0.8, jnp.asarray(mask_id, inputs.dtype), inputs)
    corrupted = jnp.where((action >= 0.8) & (action < 0.9), random_tokens, corrupted)
    return {
        "inputs": jnp.where(picked, corrupted, inputs),
        "targets": inputs,
        "weights": picked.astype(jnp.float32),
    }
