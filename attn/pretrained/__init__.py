"""Import of Hugging Face checkpoints into `attn` models, without torch.

Each loader takes a Hugging Face-format state dict (name -> numpy array, as `model.state_dict()`
gives after `.numpy()`, or the path of a `.safetensors` file) and the checkpoint's `config.json`
contents, and returns the `attn` model whose outputs equal the Hugging Face model's.
"""

from attn.pretrained.gpt2 import load_gpt2

__all__ = ["load_gpt2"]
