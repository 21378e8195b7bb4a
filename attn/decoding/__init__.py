"""Autoregressive decoding: greedy search, sampling (temperature, top-k, top-p) and beam search.

    y_t = argmax_v p(v | y_<t, x)                                       (greedy)
    y_t ~ p(v | y_<t, x)^(1/τ), restricted to the top k / the top-p nucleus   (Holtzman et al. 2020)
    beam search: keep the K best prefixes by log p(y_<t | x); a hypothesis ending in EOS scores
    log p(y | x) / lp(|y|),  lp(n) = ((5 + n) / 6)^α                    (Wu et al. 2016, GNMT)

Every method drives one small structural interface, `Stepper` (`vocab_size`, `start`, `step`,
`reorder`), inside a single jitted `jax.lax.while_loop` with static shapes (compiled once per
shape and setting). A model takes part through its `stepper()` method (each family of
`attn.models` writes its own next to the model) or by being a `Stepper` itself; this package
imports no model. Decoding is inference: the steppers of `attn.models` run their model in
evaluation (`deterministic=True`: no dropout, argmax hard attention) whatever its
`.train()` / `.eval()` mode.

Files: `stepper.py` (the protocol and the checks of what a stepper returns), `sampling.py`
(greedy and sampling), `logits.py` (temperature, top-k, top-p), `beam.py` (beam search),
`inputs.py` (argument checks), `methods.py` (a method by name).
"""

from attn.decoding.beam import BeamSearchResult, beam_search
from attn.decoding.logits import MASKED, filter_logits
from attn.decoding.methods import DECODING_METHODS, decode
from attn.decoding.sampling import greedy, sample
from attn.decoding.stepper import Stepper, StepperState, as_stepper, gather_rows

__all__ = [
    "DECODING_METHODS",
    "MASKED",
    "BeamSearchResult",
    "Stepper",
    "StepperState",
    "as_stepper",
    "beam_search",
    "decode",
    "filter_logits",
    "gather_rows",
    "greedy",
    "sample",
]
