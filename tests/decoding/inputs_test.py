"""Bad arguments of `attn.decoding`'s methods: each a ValueError naming the argument, the
expected shape or range and what was given."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from attn import decoding
from tests.decoding.peaked_models import T0, B, M, V, ids, source_batch


def _bad_inputs(lm, transformer):
    prompt = ids(0, (B, T0))
    source, source_mask = source_batch()
    bos = jnp.ones((B, 1), jnp.int32)
    greedy, sample, beam = decoding.greedy, decoding.sample, decoding.beam_search
    key = jax.random.key(0)
    return [
        (
            lambda: greedy(lm, prompt, max_new_tokens=13),
            r"(?s)cache length=17 exceeds max_length=16 of the learned position table.*"
            r"max_new_tokens = 4 \+ 13 = 17",
        ),
        (lambda: greedy(lm, prompt, max_new_tokens=0), "max_new_tokens must be an int >= 1"),
        (lambda: greedy(lm, prompt[0], max_new_tokens=M), r"prompt must be .*\[B, T0\].*\(4,\)"),
        (lambda: greedy(lm, prompt[:, :0], max_new_tokens=M), r"T0 >= 1.*\(3, 0\)"),
        (lambda: greedy(lm, prompt + V, max_new_tokens=M), r"prompt ids must lie in \[0, V=23\)"),
        (lambda: greedy(lm, prompt, max_new_tokens=M, eos_id=V), r"eos_id .*\[0, V=23\).*23"),
        (lambda: greedy(lm, prompt, max_new_tokens=M, pad_id=-1), r"pad_id .*\[0, V=23\).*-1"),
        (lambda: greedy(lm, prompt, max_new_tokens=M, source=source), "decoder-only.*source"),
        (lambda: greedy(transformer, bos, max_new_tokens=M), "source: .*got None"),
        (
            lambda: greedy(transformer, bos[:2], source=source, max_new_tokens=M),
            r"source must have the batch of the prompt, \[B, S\] with B=2, got shape \(3, 7\)",
        ),
        (
            lambda: greedy(
                transformer, bos, source=source, source_mask=source_mask[:, :5], max_new_tokens=M
            ),
            r"source_mask must have shape \[3, 7\].*\(3, 5\)",
        ),
        (lambda: beam(lm, prompt, beam_size=V + 1, max_new_tokens=M), r"beam_size .*\[1, V=23\]"),
        (lambda: beam(lm, prompt, beam_size=0, max_new_tokens=M), r"beam_size .*got 0"),
        (
            lambda: beam(lm, prompt, beam_size=2, max_new_tokens=M, length_penalty=-1.0),
            "length_penalty .*>= 0, got -1.0",
        ),
        (lambda: sample(lm, prompt, key=key, max_new_tokens=M, top_p=0.0), r"top_p .*\(0, 1\]"),
        (lambda: sample(lm, prompt, key=key, max_new_tokens=M, top_p=1.5), r"top_p .*got 1.5"),
        (lambda: sample(lm, prompt, key=key, max_new_tokens=M, top_k=0), r"top_k .*\[1, V=23\]"),
        (lambda: sample(lm, prompt, key=key, max_new_tokens=M, temperature=0), "temperature .*> 0"),
        (lambda: sample(lm, prompt, key=key, max_new_tokens=M, temperature=-1.0), "got -1.0"),
        (lambda: sample(lm, prompt, key=3, max_new_tokens=M), "key must be one JAX random key"),
    ]


def test_bad_input_raises_a_clear_error(lm, transformer):
    for call, message in _bad_inputs(lm, transformer):
        with pytest.raises(ValueError, match=message):
            call()
