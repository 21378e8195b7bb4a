"""Training: losses, optimizers, metrics, step functions, checkpoints, sharding, the loop.

Modules:
  losses        masked cross-entropy with label smoothing and z-loss, in float32
  optimizers    the optax optimizer factory (AdamW, clipping, accumulation) and schedules
  metrics       accuracy, perplexity, exact match, BLEU (sacrebleu)
  writers       progress bar, TensorBoard event files and the JSON-lines metrics file
  tasks         one class per task kind (seq2seq, lm, mlm, classification): how a model
                consumes a batch
  steps         jitted train and eval steps (donated buffers, bfloat16 compute, non-finite guard)
  checkpoint    orbax checkpoints of the whole training state, with fallback
  preemption    SIGTERM as a flag the loop polls to save and stop
  workdir       the run directory: its lock, the resume check against its config, metadata
  sharding      device mesh, logical-axis rules and the sharding plan
  distributed   multi-host initialisation
  config        `default_config()`, every field of a run, and the checks made before it starts
  evaluate      the evaluator: metrics over the evaluation split and attention-map PNGs
  loop          `train_and_evaluate(config, workdir)`, the one entry point of every experiment
"""

from attn.extras import require

require("train", "attn.training")
