"""RNN encoder-decoders: the bottleneck model and its two attention fixes.

    h = Encoder(Dropout(E_src[x]))                 GRU/LSTM, L layers, uni- or bidirectional
    s_0 = tanh(W_b [→h_S; ←h_1])                   per layer, from the final encoder states
    s_t, features_t = DecoderCell(s_{t-1}, E_tgt[y_{t-1}], h)
    logits_t = W_out Dropout(features_t) + b

`attention="none"` is the bottleneck model of Sutskever et al. (2014) and Cho et al. (2014): the
decoder sees the source only through the final encoder state c (its initial state, and c fed
with every input). `"bahdanau"` attends with the previous decoder state and feeds the context
into the RNN (Bahdanau et al. 2015); `"luong"` attends with the current state through a dot,
general or concat score (or the scaled dot of Vaswani et al. 2017) and reads out
h̃_t = tanh(W_c [c_t; s_t]), with input feeding (Luong et al. 2015). See `attn.layers.rnn_decoder`
for the cells.

Training options: teacher forcing with a ratio, scheduled sampling with the inverse-sigmoid decay
p_i = k / (k + exp(i / k)) of the teacher-forcing probability over training steps i (Bengio et
al. 2015), where a step that is not teacher forced reads the model's own previous prediction
(argmax); the reversed source of Sutskever et al. (2014); hard attention (`estimator=`). Decoding:
`stepper()` gives `attn.decoding` its step (`Seq2SeqRNNStepper`), so `attn.decoding.greedy` and
`beam_search` run on the model.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import nnx

from attn.kernels import hard
from attn.kernels.validation import check_dropout_rate, check_positive, check_token_ids
from attn.layers.recurrent import CELLS, RNN, check_padding_mask
from attn.layers.rnn_attention import DOT_SCORES, LUONG_SCORES
from attn.layers.rnn_decoder import DECODER_CELLS
from attn.models.seq2seq_inputs import inverse_sigmoid_decay, reverse_padded
from attn.models.seq2seq_rnn_stepper import Seq2SeqRNNStepper
from attn.models.variants import NamedVariants, dtype_of
from attn.typing import Array, ArrayLike, PRNGKey

_SMALL = dict(vocab_size=64, embed_dim=32, hidden_dim=64)


@dataclasses.dataclass(frozen=True)
class Seq2SeqRNNConfig(NamedVariants):
    """Configuration of `Seq2SeqRNN`; `Seq2SeqRNNConfig.named("luong")` for a small Luong model.

    Fields:
      vocab_size: source vocabulary size (and target, unless `target_vocab_size`).
      target_vocab_size: target vocabulary size V, when it differs from the source one.
      cell: "gru" or "lstm", for encoder and decoder.
      num_layers: L layers in the encoder and in the decoder.
      embed_dim: E, width of the source and target embeddings.
      hidden_dim: H, width of each encoder direction's state.
      decoder_hidden_dim: width of the decoder state; default: the encoder output width
        (2H when bidirectional, else H), as the Luong dot and scaled_dot scores need.
      bidirectional: a bidirectional encoder; the annotations are [→h_j; ←h_j].
      attention: "none" (bottleneck), "bahdanau" or "luong".
      score: the Luong score, "dot", "scaled_dot", "general" or "concat" (ignored by the
        others); see `attn.layers.LuongAttention`.
      attention_dim: A, the hidden width of the additive / concat score; default: decoder width.
      input_feeding: Luong's input feeding of h̃_{t-1}.
      teacher_forcing_ratio: probability that a training step reads the true previous token
        rather than the model's own prediction; 1.0 = teacher forcing.
      scheduled_sampling_k: k >= 1 of the inverse-sigmoid decay; when set, the teacher-forcing
        probability at training step i is k / (k + exp(i / k)) (and the ratio is ignored).
      reverse_source: reverse the real tokens of every source sequence (Sutskever et al. 2014).
      dropout_rate: on the source embeddings, between encoder layers, and on the decoder features.
      estimator: None (soft attention) or a hard-attention estimator of
        `attn.kernels.hard.ESTIMATORS` ("straight_through_argmax", ..., "reinforce").
      gumbel_temperature: τ of the Gumbel estimators.
      dtype: compute dtype name (None: that of the parameters); param_dtype: parameter dtype name.
    """

    vocab_size: int = 64
    target_vocab_size: int | None = None
    cell: str = "lstm"
    num_layers: int = 1
    embed_dim: int = 32
    hidden_dim: int = 64
    decoder_hidden_dim: int | None = None
    bidirectional: bool = False
    attention: str = "luong"
    score: str = "general"
    attention_dim: int | None = None
    input_feeding: bool = True
    teacher_forcing_ratio: float = 1.0
    scheduled_sampling_k: float | None = None
    reverse_source: bool = False
    dropout_rate: float = 0.0
    estimator: str | None = None
    gumbel_temperature: float = 1.0
    dtype: str | None = None
    param_dtype: str = "float32"

    VARIANTS: ClassVar[dict[str, dict]] = {
        # Sutskever et al. 2014: deep LSTM, no attention, reversed source.
        "bottleneck": dict(
            cell="lstm", num_layers=2, attention="none", reverse_source=True, **_SMALL
        ),
        # Bahdanau et al. 2015: bidirectional GRU encoder, additive attention.
        "bahdanau": dict(
            cell="gru",
            num_layers=1,
            bidirectional=True,
            attention="bahdanau",
            decoder_hidden_dim=64,
            **_SMALL,
        ),
        # Luong et al. 2015: stacked LSTM, general score, input feeding.
        "luong": dict(
            cell="lstm",
            num_layers=2,
            attention="luong",
            score="general",
            input_feeding=True,
            **_SMALL,
        ),
    }

    def __post_init__(self):
        owner = "Seq2SeqRNNConfig"
        for name in ("vocab_size", "num_layers", "embed_dim", "hidden_dim", "gumbel_temperature"):
            check_positive(owner, name, getattr(self, name))
        for name in ("target_vocab_size", "decoder_hidden_dim", "attention_dim"):
            if getattr(self, name) is not None:
                check_positive(owner, name, getattr(self, name))
        check_dropout_rate(owner, "dropout_rate", self.dropout_rate)
        if self.cell not in CELLS:
            raise ValueError(
                f"{owner}: unknown cell {self.cell!r}; expected one of {sorted(CELLS)}"
            )
        if self.attention not in DECODER_CELLS:
            raise ValueError(
                f"{owner}: unknown attention {self.attention!r}; expected one of "
                f"{sorted(DECODER_CELLS)}"
            )
        if self.score not in LUONG_SCORES:
            raise ValueError(
                f"{owner}: unknown score {self.score!r}; expected one of {sorted(LUONG_SCORES)}"
            )
        if self.estimator is not None:
            hard.check_estimator(owner, "estimator", self.estimator)
            if self.attention == "none":
                raise ValueError(
                    f"{owner}: estimator={self.estimator!r} needs attention ('bahdanau' or "
                    "'luong'), got attention='none'"
                )
        if (
            self.attention == "luong"
            and self.score in DOT_SCORES
            and (self.decoder_dim != self.encoder_output_dim)
        ):
            raise ValueError(
                f"{owner}: the {self.score} score needs decoder_hidden_dim == the encoder output "
                f"width {self.encoder_output_dim}, got {self.decoder_dim}"
            )
        if not 0.0 <= self.teacher_forcing_ratio <= 1.0:
            raise ValueError(
                f"{owner}: teacher_forcing_ratio must be in [0, 1], got "
                f"{self.teacher_forcing_ratio!r}"
            )
        if self.scheduled_sampling_k is not None and not self.scheduled_sampling_k >= 1.0:
            raise ValueError(
                f"{owner}: scheduled_sampling_k must be >= 1 (or None), got "
                f"{self.scheduled_sampling_k!r}"
            )

    @property
    def output_vocab_size(self) -> int:
        """V, the target vocabulary: the last axis of the logits."""
        return self.vocab_size if self.target_vocab_size is None else self.target_vocab_size

    @property
    def encoder_output_dim(self) -> int:
        """Hm, the width of the encoder annotations: 2H when bidirectional, else H."""
        return self.hidden_dim * (2 if self.bidirectional else 1)

    @property
    def decoder_dim(self) -> int:
        """The width of the decoder state (`decoder_hidden_dim`, default Hm)."""
        return self.decoder_hidden_dim or self.encoder_output_dim


class Seq2SeqRNN(nnx.Module):
    """GRU/LSTM encoder-decoder: `Seq2SeqRNN(src[B, S], tgt_in[B, T], src_mask) -> logits[B, T, V]`.

    Submodules: `source_embedding`, `target_embedding` (`nnx.Embed`), `encoder` (`RNN`), `bridge`
    (`nnx.Linear` [Hm, Hd], s_0 = tanh(bridge(final encoder state)) per layer), `cell_bridge`
    (LSTM only: c_0 = cell_bridge(final encoder memory cell)), `decoder` (a decoder cell of
    `attn.layers.rnn_decoder`), `output_proj` (`nnx.Linear` [F, V]) and `dropout`. Random
    draws in training (teacher-forcing coins, hard-attention samples) come from `key=` or, when
    it is None, from the module's `sampling` stream (`rngs.sampling`, default `rngs.default`).

    Looking inside: with `sow_weights` on, every call sows "alignment" [B, T, S] (the attention
    over the source positions in their original order, zero at padding; not for
    attention="none"), "gates" {name: [B, T, Hd]} (the gate activations of the top decoder layer)
    and, for `estimator="reinforce"` in training, "log_prob" [B, T] (log p of the sampled source
    positions, for `attn.kernels.hard_training.reinforce_loss`); the encoder (`RNN`) sows its own
    gates. Read them with `attn.layers.collect_intermediates`.

    Training and evaluation: the `deterministic` attribute is the model's mode, False (training)
    when built, as for `nnx.Dropout`; `.eval()` / `.train()` and `nnx.view(model,
    deterministic=...)` set it, and a call's `deterministic=` overrides it. In training a call
    applies dropout, the teacher-forcing ratio or scheduled sampling and the hard-attention
    estimator; in evaluation it is teacher forced, without dropout, with argmax hard attention.
    The mode of a call (its argument, else the model's) governs the whole pass, submodules
    included.
    """

    def __init__(self, config: Seq2SeqRNNConfig, *, sow_weights: bool = False, rngs: nnx.Rngs):
        self.config = config
        self.sow_weights = sow_weights
        self.deterministic = False
        dtype, param_dtype = dtype_of(config.dtype), dtype_of(config.param_dtype)
        common = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        E, Hm, Hd = config.embed_dim, config.encoder_output_dim, config.decoder_dim
        self.source_embedding = nnx.Embed(config.vocab_size, E, **common)
        self.target_embedding = nnx.Embed(config.output_vocab_size, E, **common)
        self.encoder = RNN(
            E,
            config.hidden_dim,
            cell=config.cell,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            dropout_rate=config.dropout_rate,
            **common,
        )
        self.bridge = nnx.Linear(Hm, Hd, **common)
        self.cell_bridge = nnx.data(nnx.Linear(Hm, Hd, **common) if config.cell == "lstm" else None)
        cell_args = dict(num_layers=config.num_layers, **common)
        if config.attention != "none":
            cell_args.update(
                attention_dim=config.attention_dim,
                estimator=config.estimator,
                temperature=config.gumbel_temperature,
            )
        if config.attention == "luong":
            cell_args.update(score=config.score, input_feeding=config.input_feeding)
        decoder = DECODER_CELLS[config.attention](config.cell, E, Hd, Hm, **cell_args)
        self.decoder = decoder
        self.output_proj = nnx.Linear(decoder.features_dim, config.output_vocab_size, **common)
        self.dropout = nnx.Dropout(config.dropout_rate, rngs=rngs)
        self.sampling = rngs["sampling"].fork()

    def set_view(self, sow_weights: bool | None = None, deterministic: bool | None = None) -> None:
        """Used by `nnx.view(model, sow_weights=..., deterministic=...)` to switch sowing or the
        mode."""
        if sow_weights is not None:
            self.sow_weights = sow_weights
        if deterministic is not None:
            self.deterministic = deterministic

    # ------------------------------------------------------------------ encoder

    def encode(
        self,
        src: ArrayLike,
        src_mask: ArrayLike | None = None,
        *,
        deterministic: bool | None = None,
    ) -> tuple[dict[str, Array], dict[str, Array]]:
        """Run the encoder and prepare the decoder.

        Args:
          src: int [B, S] source ids (right-padded).
          src_mask: [B, S], 1/True = real token; None = no padding.
          deterministic: no dropout when True, dropout when False; None: the mode that
            `.train()` / `.eval()` set.

        Returns:
          (memory, carry): the memory dict of the decoder cells ("annotations" [B, S, Hm] over
          the positions the encoder read, "mask" [B, S], "summary" [B, Hm] = the final state of
          the top layer, "order" int [B, S] = the source position of each annotation) and the
          decoder's initial carry.
        """
        src = check_token_ids("Seq2SeqRNN", "src", src, self.config.vocab_size, "S")
        B, S = src.shape
        mask = check_padding_mask("Seq2SeqRNN", "src_mask", src_mask, B, S)
        deterministic = self.deterministic if deterministic is None else deterministic
        order = jnp.broadcast_to(jnp.arange(S, dtype=jnp.int32), (B, S))
        if self.config.reverse_source:
            src, order = reverse_padded(src, mask)
        x = self.dropout(self.source_embedding(src), deterministic=deterministic)
        annotations, final = self.encoder(x, mask, deterministic=deterministic)
        L, D = self.config.num_layers, self.encoder.num_directions

        def per_layer(states: Array) -> Array:
            # [L·D, B, H] -> [L, D, B, H] -> [B, L, D, H] -> [B, L, D·H]
            states = states.reshape(L, D, B, -1).transpose(2, 0, 1, 3)
            return states.reshape(B, L, -1)

        final_h = final[0] if self.config.cell == "lstm" else final
        hidden = per_layer(final_h)
        cell = None
        if self.cell_bridge is not None:
            cell = self.cell_bridge(per_layer(final[1]))
        carry = self.decoder.initial_carry(jnp.tanh(self.bridge(hidden)), cell)
        memory = {
            "annotations": annotations,
            "mask": mask,
            "summary": hidden[:, -1],
            "order": order,
        }
        return memory, carry

    # ------------------------------------------------------------------ full model

    def __call__(
        self,
        src: ArrayLike,
        tgt_in: ArrayLike,
        src_mask: ArrayLike | None = None,
        *,
        deterministic: bool | None = None,
        key: PRNGKey | None = None,
        step: int | ArrayLike | None = None,
    ) -> Array:
        """Next-token logits of the target given the source.

        Evaluation is teacher forced: step t reads tgt_in[:, t]. Training applies dropout and,
        where configured, reads the model's own previous prediction instead with probability
        1 - p (p = `teacher_forcing_ratio`, or the scheduled-sampling decay at `step`); with
        p = 1 it is exactly the teacher-forced pass.

        Args:
          src: int [B, S] source ids (right-padded).
          tgt_in: int [B, T] target ids shifted right (tgt_in[:, 0] is the start token; position
            t predicts token t + 1).
          src_mask: [B, S], 1/True = real source token; None = no padding.
          deterministic: evaluation when True, training when False; None: the model's mode
            (`.eval()` / `.train()`).
          key: a `jax.random` key for the training-time draws; None: the `sampling` stream.
          step: the training step i of scheduled sampling (required with
            `scheduled_sampling_k` in training; may be traced).

        Returns:
          logits [B, T, V] (see the class docstring for what is sown).
        """
        config = self.config
        tgt_in = check_token_ids("Seq2SeqRNN", "tgt_in", tgt_in, config.output_vocab_size, "T")
        src = jnp.asarray(src)
        if src.ndim == 2 and tgt_in.shape[0] != src.shape[0]:
            raise ValueError(
                f"Seq2SeqRNN: tgt_in must have the batch of src, [B, T] with B={src.shape[0]}, "
                f"got shape {tgt_in.shape}"
            )
        deterministic = self.deterministic if deterministic is None else deterministic
        memory, carry = self.encode(src, src_mask, deterministic=deterministic)
        teacher = self._teacher_probability(deterministic, step)
        hard_key = (
            not deterministic and config.estimator is not None and hard.needs_key(config.estimator)
        )
        if (teacher is not None or hard_key) and key is None:
            key = self.sampling()
        T = tgt_in.shape[1]
        step_keys = None
        if hard_key:
            step_keys = jax.random.split(jax.random.fold_in(key, 0), T)
        if teacher is None:
            steps = self._decode_teacher_forced(carry, memory, tgt_in, step_keys, deterministic)
        else:
            coins = jax.random.uniform(jax.random.fold_in(key, 1), tgt_in.shape) < teacher
            coins = coins.at[:, 0].set(True)  # the start token is always given
            steps = self._decode_mixed(carry, memory, tgt_in, coins, step_keys, deterministic)
        logits = self.output_proj(self.dropout(steps.features, deterministic=deterministic))
        if self.sow_weights:  # after the scans: a sow inside `jax.lax.scan` would leak tracers
            if steps.weights is not None:
                alignment = self._source_order(steps.weights, memory["order"])
                self.sow(nnx.Intermediate, "alignment", alignment)
            self.sow(nnx.Intermediate, "gates", steps.gates)
            if steps.log_prob is not None:
                self.sow(nnx.Intermediate, "log_prob", steps.log_prob)
        return logits

    def _teacher_probability(self, deterministic: bool, step) -> Array | float | None:
        """The teacher-forcing probability p, or None for a fully teacher-forced pass."""
        config = self.config
        if deterministic:
            return None
        if config.scheduled_sampling_k is not None:
            if step is None:
                raise ValueError(
                    "Seq2SeqRNN: scheduled sampling (scheduled_sampling_k="
                    f"{config.scheduled_sampling_k}) needs the training step, step=i, got None"
                )
            return inverse_sigmoid_decay(step, config.scheduled_sampling_k)
        if config.teacher_forcing_ratio == 1.0:
            return None
        return config.teacher_forcing_ratio

    def _decode_teacher_forced(self, carry, memory, tgt_in, step_keys, deterministic):
        """Scan the decoder over the embedded targets: DecoderStep fields over time [B, T, ...]."""
        embedded = jnp.swapaxes(self.target_embedding(tgt_in), 0, 1)  # [T, B, E]

        def body(carry, inputs):
            embedded_t, key_t = inputs
            return self.decoder(carry, embedded_t, memory, key=key_t, deterministic=deterministic)

        _, steps = jax.lax.scan(body, carry, (embedded, step_keys))
        return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), steps)  # [T, B, ...] -> [B, T, ...]

    def _decode_mixed(self, carry, memory, tgt_in, coins, step_keys, deterministic):
        """Scan the decoder, reading tgt_in[:, t] where coins[:, t], else the previous argmax."""

        def body(state, inputs):
            carry, previous = state
            given, coin, key_t = inputs
            token = jnp.where(coin, given, previous)
            carry, out = self.decoder(
                carry, self.target_embedding(token), memory, key=key_t, deterministic=deterministic
            )
            prediction = jnp.argmax(self.output_proj(out.features), axis=-1).astype(given.dtype)
            return (carry, prediction), out

        start = (carry, tgt_in[:, 0])
        xs = (jnp.swapaxes(tgt_in, 0, 1), jnp.swapaxes(coins, 0, 1), step_keys)
        _, steps = jax.lax.scan(body, start, xs)
        return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), steps)

    @staticmethod
    def _source_order(weights: Array, order: Array) -> Array:
        """Weights [B, T, S] over the positions the encoder read -> over the original source
        positions (`order` int [B, S])."""
        return jnp.take_along_axis(weights, order[:, None, :], axis=-1)  # order: [B, 1, S]

    # ------------------------------------------------------------------ decoding

    def stepper(self) -> Seq2SeqRNNStepper:
        """The decoding step of this model for `attn.decoding` (`greedy`, `sample`,
        `beam_search`): encode the source, then one target token per step."""
        return Seq2SeqRNNStepper(self)
