"""`TransformerLM.stepper()`: the language model's decoding step, for `attn.decoding`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from attn.models.cache_stepper import CacheStepper
from attn.typing import Array

if TYPE_CHECKING:
    from attn.models.lm import TransformerLM


class TransformerLMStepper(CacheStepper):
    """An `attn.decoding.Stepper` over a `TransformerLM` and its key/value caches.

    `start` allocates the caches of the model (`TransformerLM.init_cache`, which rejects a
    `max_length` beyond a learned position table) and prefills the prompt in one call; each
    step then reads one token. The state is the model's `nnx.Cache` state. The model runs in
    evaluation (`deterministic=True`) whatever its mode.
    """

    def __init__(self, model: TransformerLM):
        super().__init__(model, model.config.vocab_size)

    def start(self, prompt, source, source_mask, max_length):
        if source is not None or source_mask is not None:
            raise ValueError(
                "source: TransformerLM is a decoder-only model, source and source_mask must be "
                f"None, got source of shape {None if source is None else source.shape}"
            )
        self.model.init_cache(prompt.shape[0], max_length)
        return self._prefill(prompt)

    def _logits(self, model: TransformerLM, ids: Array) -> Array:
        return model(ids, decode=True, deterministic=True)
