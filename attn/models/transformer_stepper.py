"""`Transformer.stepper()`: the encoder-decoder's decoding step, for `attn.decoding`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from attn.models.cache_stepper import CacheStepper
from attn.typing import Array

if TYPE_CHECKING:
    from attn.models.transformer import Transformer


class TransformerStepper(CacheStepper):
    """An `attn.decoding.Stepper` over an encoder-decoder `Transformer` and its caches.

    `start` encodes the source once, allocates the decoder caches (`Transformer.init_cache`,
    which projects the encoder output to every block's cross-attention keys and values) and
    prefills the prompt (the start-of-sequence token or tokens). The state is the model's
    `nnx.Cache` state: self-attention keys and values [B, max_length, K, H], cross-attention
    keys and values [B, S, K, H], the source mask [B, S] and the shared cache index. The model
    runs in evaluation (`deterministic=True`) whatever its mode.
    """

    def __init__(self, model: Transformer):
        super().__init__(model, model.config.output_vocab_size)

    def start(self, prompt, source, source_mask, max_length):
        if source is None:
            raise ValueError(
                "source: an encoder-decoder Transformer needs the source token ids int [B, S], "
                "got None"
            )
        encoded = self.model.encode(source, source_mask, deterministic=True)
        self.model.init_cache(prompt.shape[0], max_length, encoded, source_mask)
        return self._prefill(prompt)

    def _logits(self, model: Transformer, ids: Array) -> Array:
        return model.decode(ids, None, decode=True, deterministic=True)
