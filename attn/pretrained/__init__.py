"""Import of Hugging Face checkpoints into `attn` models, without torch.

Each loader takes a Hugging Face-format state dict (name -> numpy array, as `model.state_dict()`
gives after `.numpy()`, or the path of a `.safetensors` file) and the checkpoint's `config.json`
contents, and returns the `attn` model whose outputs equal the Hugging Face model's.
"""

from attn.pretrained.bert import bert_config, load_bert
from attn.pretrained.gpt2 import gpt2_config, load_gpt2
from attn.pretrained.vit import load_vit, vit_config

__all__ = ["bert_config", "gpt2_config", "load_bert", "load_gpt2", "load_vit", "vit_config"]
