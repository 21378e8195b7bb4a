"""`attn.decoding.filter_logits`: temperature, top-k and the top-p nucleus against NumPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from attn import decoding
from tests.decoding.peaked_models import V
from tests.decoding.references import numpy_filter

_jit_filter = jax.jit(decoding.filter_logits)  # eagerly, every operation compiles on its own


@pytest.mark.parametrize(
    "temperature, top_k, top_p",
    [(1.0, 3, None), (0.7, None, 0.6), (1.5, 5, 0.8), (1.0, 1, 1.0), (1.0, None, 0.01)],
)
def test_filter_logits_keeps_exactly_the_allowed_tokens(temperature, top_k, top_p):
    logits = jnp.asarray(np.random.default_rng(0).normal(0, 2, (16, V)), jnp.float32)
    filtered = np.asarray(_jit_filter(logits, temperature, top_k, top_p))
    allowed = numpy_filter(logits, temperature, top_k, 1.0 if top_p is None else top_p)
    np.testing.assert_array_equal(filtered > decoding.MASKED / 2, allowed)
    scaled = np.asarray(logits) / temperature
    np.testing.assert_allclose(filtered[allowed], scaled[allowed], rtol=1e-6)
