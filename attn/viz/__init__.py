"""Pictures of attention: heat maps, head grids, seq2seq alignments, ViT attention rollout, gates.

Every plotting function takes what the models give out: the attention weights, alignments and
channel weights that `attn.layers.collect_intermediates` gathers ({path ending in the sown NAME:
value}), or plain arrays. It draws on a new `matplotlib.figure.Figure` with the Agg canvas
(headless, no pyplot and no global backend switch), saves a PNG when `path` is given and returns
the figure.

    heatmaps   plot_attention (one map), plot_heads (every head of every layer)
    alignment  plot_alignment (a seq2seq alignment, Bahdanau et al. 2015)
    rollout    attention_rollout, plot_rollout_on_image (Abnar & Zuidema 2020)
    gates      plot_gates (LSTM/GRU gates), plot_channel_weights (squeeze-and-excitation)
    captured   stack_layers: the attention weights of every layer as one array
"""

from attn.extras import require

require("viz", "attn.viz")

from attn.viz.alignment import plot_alignment
from attn.viz.captured import stack_layers
from attn.viz.gates import plot_channel_weights, plot_gates
from attn.viz.heatmaps import plot_attention, plot_heads
from attn.viz.rollout import attention_rollout, plot_rollout_on_image

__all__ = [
    "attention_rollout",
    "plot_alignment",
    "plot_attention",
    "plot_channel_weights",
    "plot_gates",
    "plot_heads",
    "plot_rollout_on_image",
    "stack_layers",
]
