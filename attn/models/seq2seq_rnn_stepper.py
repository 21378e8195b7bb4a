"""`Seq2SeqRNN.stepper()`: the RNN encoder-decoder's decoding step, for `attn.decoding`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from attn.kernels.validation import check_token_ids
from attn.typing import Array, ArrayLike

if TYPE_CHECKING:
    from attn.models.seq2seq_rnn import Seq2SeqRNN


class Seq2SeqRNNStepper:
    """An `attn.decoding.Stepper` over a `Seq2SeqRNN` and its recurrent state.

    The state is {"carry": the decoder carry, "memory": the encoder annotations [B, S, Hm],
    mask [B, S], summary [B, Hm] and source order [B, S]} (see `Seq2SeqRNN.encode`), every leaf
    with the batch on axis 0. An RNN has no length limit, so `max_length` is not checked. The
    model runs in evaluation (`deterministic=True`: no dropout, argmax hard attention) whatever
    its mode.

    Attributes:
      model: the `Seq2SeqRNN`.
      vocab_size: V, the target vocabulary.
    """

    def __init__(self, model: Seq2SeqRNN):
        self.model = model
        self.vocab_size = model.config.output_vocab_size

    def start(
        self,
        prompt: ArrayLike,
        source: ArrayLike | None,
        source_mask: ArrayLike | None,
        max_length: int,
    ) -> tuple[Array, dict]:
        """Encode the source and read the prompt.

        Args:
          prompt: int [B, T0], T0 >= 1, the start token(s) of the target.
          source: int [B, S] source ids.
          source_mask: [B, S], 1/True = real token; None = no padding.
          max_length: the longest target (unused: an RNN has no limit).

        Returns:
          (logits [B, V] of the token after the prompt, state).
        """
        if source is None:
            raise ValueError(
                "source: Seq2SeqRNN is an encoder-decoder and needs the source ids int [B, S], "
                "got None"
            )
        prompt = check_token_ids("Seq2SeqRNN", "prompt", prompt, self.vocab_size, "T0")
        if prompt.shape[1] < 1:
            raise ValueError(f"Seq2SeqRNN.start: prompt must hold >= 1 token, got {prompt.shape}")
        memory, carry = self.model.encode(source, source_mask, deterministic=True)
        state = {"carry": carry, "memory": memory}
        for t in range(prompt.shape[1]):
            logits, state = self.step(state, prompt[:, t])
        return logits, state

    def step(self, state: dict, tokens: ArrayLike) -> tuple[Array, dict]:
        """One target token per row, int [B] -> (logits [B, V] of the next one, state)."""
        tokens = jnp.asarray(tokens)
        memory = state["memory"]
        B = memory["mask"].shape[0]
        if tokens.shape != (B,) or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(
                f"Seq2SeqRNN.step: tokens must be integer ids [B] with B={B}, got {tokens.dtype} "
                f"array of shape {tokens.shape}"
            )
        model = self.model
        carry, out = model.decoder(
            state["carry"], model.target_embedding(tokens), memory, deterministic=True
        )
        return model.output_proj(out.features), {"carry": carry, "memory": memory}

    @staticmethod
    def reorder(state: dict, indices: ArrayLike) -> dict:
        """Row i of the new state is row indices[i] of `state` (int [B'])."""
        return jax.tree.map(lambda x: jnp.take(x, jnp.asarray(indices), axis=0), state)
