"""Evaluation of a training run: metrics over the evaluation split and attention-map PNGs.

    loss = Σ w ℓ / Σ w over the split,  perplexity = exp(loss),
    exact match = the fraction of decoded outputs equal to their targets up to EOS (seq2seq)

Every process runs the same number of batches (the loader pads the last one with rows marked
invalid), each feeding its own rows of the global batch: the metric sums of the jitted step are
over the global batch already, and the host-side metrics (exact match, BLEU) and the maps read
the global batch and outputs gathered from every process, so N processes report the numbers of
one.

Seq2seq runs also plot the cross-attention of the decoded outputs over the source (Bahdanau et
al. 2015, Fig. 3); the other tasks plot the last layer's self-attention, averaged over heads.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.experimental import multihost_utils

from attn import data as attn_data
from attn import viz
from attn.training import sharding
from attn.training.metrics import MetricSums, bleu, exact_match, perplexity, truncate_at_eos
from attn.training.steps import make_attention_maps, make_eval_step
from attn.training.tasks import Seq2SeqTask
from attn.training.writers import MetricWriter


def _gathered(tree):
    """Host numpy copies of the global arrays of `tree`, on every process (a collective: all
    processes must call it)."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def _tokens(tokenizer: attn_data.Tokenizer | None, ids: np.ndarray) -> list[str]:
    """One label per id for the axes of an attention map."""
    if tokenizer is None:
        return [str(int(i)) for i in ids]
    names = {attn_data.BOS_ID: "<s>", attn_data.EOS_ID: "</s>", attn_data.PAD_ID: "<pad>"}
    labels = [names.get(int(i)) or tokenizer.decode([int(i)]) for i in ids]
    return [label if label.strip() else "␣" for label in labels]


class Evaluator:
    """Evaluation over (the first `config.eval.num_batches` batches of) the evaluation split:
    the mean loss, accuracy and perplexity; for seq2seq also exact match (and BLEU) of the
    decoded outputs; attention-map PNGs of the first examples.

    Args:
      config: the run's config (its `eval` fields).
      task: the `Task`.
      state: the `TrainState`; evaluation reads `state.arrays` at each call.
      dataset: the evaluation split (`attn.data.load`, one epoch).
      tokenizer: the text tokenizer (labels of the maps, BLEU), or None.
      batch_sharding: where each batch leaf goes.
      key: the evaluation key (masked-LM masks, folded with the batch index).
      workdir: the run's directory; the PNGs go to `workdir/attention`.
    """

    def __init__(self, config, task, state, dataset, tokenizer, batch_sharding, key, workdir):
        self.config = config
        self.task = task
        self.state = state
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.batch_sharding = batch_sharding
        self.key = key
        self.eval_step = make_eval_step(task, state)
        self.attention_maps = make_attention_maps(task, state)
        self.attention_dir = os.path.join(workdir, "attention")

    def __call__(self, step: int, writer: MetricWriter) -> dict[str, float]:
        config, task = self.config.eval, self.task
        sums = MetricSums()
        hypotheses, references = [], []
        pngs: list[str] = []
        model = None
        for index, batch in enumerate(self.dataset.iterator()):
            if config.num_batches and index >= config.num_batches:
                break
            placed = sharding.shard_batch(batch, self.batch_sharding)
            metrics = self.eval_step(self.state.arrays, placed, jax.random.fold_in(self.key, index))
            sums.add_all(jax.device_get(metrics))
            if isinstance(task, Seq2SeqTask) and config.decode:
                model = model or self.state.merge()[0]
                batch = _gathered(placed)  # the global batch
                targets = batch["targets"]
                plot = index == 0 and config.num_attention_maps > 0
                tokens, weights = task.predict(
                    model,
                    placed,
                    max_new_tokens=targets.shape[1],
                    beam_size=config.beam_size,
                    return_weights=plot,
                )
                tokens, weights = _gathered((tokens, weights))
                valid = batch["valid"]
                matches, _ = exact_match(
                    tokens[valid], targets[valid], eos_id=attn_data.EOS_ID, pad_id=0
                )
                sums.add("exact_match", matches, valid.sum())
                if config.bleu and self.tokenizer is not None:
                    hypotheses += self.tokenizer.decode_batch(tokens[valid])
                    references += self.tokenizer.decode_batch(targets[valid])
                if plot:
                    pngs = self._plot_alignments(step, batch, tokens, weights)
            elif index == 0 and config.num_attention_maps:
                pngs = self._plot_self_attention(step, _gathered(placed))
        results = sums.means()
        if "loss" in results:
            results["perplexity"] = perplexity(results["loss"])
        if hypotheses:
            results["bleu"] = bleu(hypotheses, references)
        writer.write(step, "eval", results)
        for number, path in enumerate(pngs):
            writer.write_image(step, f"attention/{number}", path)
        return results

    def _png(self, step: int, number: int) -> str:
        os.makedirs(self.attention_dir, exist_ok=True)
        return os.path.join(self.attention_dir, f"step_{step:07d}_example_{number}.png")

    def _plot_alignments(self, step, batch, tokens, weights) -> list[str]:
        """Cross-attention of the decoded tokens over the source (Bahdanau et al. 2015, Fig. 3)."""
        paths = []
        count = min(self.config.eval.num_attention_maps, len(tokens))
        if jax.process_index() != 0:
            return paths
        for number in range(count):
            src, out = batch["inputs"][number], tokens[number]
            S = int(np.sum(src != attn_data.PAD_ID))
            # the decoded tokens up to and including EOS
            M = min(len(truncate_at_eos(out, attn_data.EOS_ID)) + 1, len(out))
            path = self._png(step, number)
            viz.plot_alignment(
                weights[number, :M, :S],
                _tokens(self.tokenizer, src[:S]),
                _tokens(self.tokenizer, out[:M]),
                title=f"step {step}: cross-attention of the decoded output",
                path=path,
            )
            paths.append(path)
        return paths

    def _plot_self_attention(self, step, batch) -> list[str]:
        """Last-layer self-attention, averaged over heads, of the first examples of the global
        `batch` (computed on every process, as the parameters live on all; plotted by one)."""
        count = min(self.config.eval.num_attention_maps, len(batch["valid"]))
        first = {key: value[:count] for key, value in batch.items()}
        maps = np.asarray(self.attention_maps(self.state.arrays, first))
        if jax.process_index() != 0:
            return []
        paths = []
        for number in range(count):
            labels = None
            if "inputs" in first:
                ids = first["inputs"][number]
                T = int(np.sum(ids != attn_data.PAD_ID)) or len(ids)
                labels = _tokens(self.tokenizer, ids[:T])
            else:
                T = maps.shape[1]
            path = self._png(step, number)
            viz.plot_attention(
                maps[number, :T, :T],
                query_tokens=labels,
                key_tokens=labels,
                title=f"step {step}: last-layer self-attention (mean over heads)",
                path=path,
            )
            paths.append(path)
        return paths
