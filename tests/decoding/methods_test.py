"""`attn.decoding.decode`: a method by name; every method compiles once per shape."""

from __future__ import annotations

import collections

import jax
import numpy as np
import pytest

from attn import decoding
from attn.models.lm_stepper import TransformerLMStepper
from tests.decoding.peaked_models import T0, B, M, ids, make_lm


def test_decode_calls_the_method_of_that_name(lm):
    prompt = ids(0, (B, T0))
    np.testing.assert_array_equal(
        decoding.decode(lm, prompt, method="greedy", max_new_tokens=M),
        decoding.greedy(lm, prompt, max_new_tokens=M),
    )
    result = decoding.decode(lm, prompt, method="beam_search", beam_size=2, max_new_tokens=M)
    assert isinstance(result, decoding.BeamSearchResult)
    with pytest.raises(ValueError, match="method must be one of .*'topk'"):
        decoding.decode(lm, prompt, method="topk")


def test_each_method_compiles_once_per_shape(monkeypatch):
    """New prompts, new weights of the same structure and new values of the settings that are
    arguments (temperature, top-k, top-p, EOS and pad ids, length penalty) reuse the compiled
    loop: each method traces at most once (not at all when other tests compiled it first)."""
    traces = collections.Counter()
    start = TransformerLMStepper.start

    def counting_start(self, prompt, *args):
        traces[prompt.shape[0]] += 1  # the beam search's start sees B rows too: count by caller
        return start(self, prompt, *args)

    monkeypatch.setattr(TransformerLMStepper, "start", counting_start)
    for seed in range(3):
        model, prompt = make_lm(seed), ids(seed, (B, T0))
        before = sum(traces.values())
        decoding.greedy(model, prompt, max_new_tokens=M, eos_id=seed + 2, pad_id=seed)
        decoding.sample(
            model,
            prompt,
            key=jax.random.key(seed),
            max_new_tokens=M,
            temperature=1 + seed,
            top_k=2 + seed,
            top_p=0.5 + 0.1 * seed,
        )
        decoding.beam_search(
            model, prompt, beam_size=4, max_new_tokens=M, eos_id=seed, length_penalty=seed
        )
        if seed:
            assert sum(traces.values()) == before, f"seed {seed}: traced again"
    assert sum(traces.values()) <= 3
