"""Model families, each a `flax.nnx` module with a frozen `*Config` and named variants."""

from attn.models.lm import TransformerLM, TransformerLMConfig

__all__ = ["TransformerLM", "TransformerLMConfig"]
