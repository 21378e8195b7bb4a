"""The models that the decoding tests share (built once per session, never modified: the
decoding functions work on copies merged inside `jax.jit`)."""

import pytest

from attn.models import Transformer, TransformerLM
from tests.decoding.peaked_models import SMALL_SEED, SMALL_V, make_lm, make_transformer


@pytest.fixture(scope="session")
def lm() -> TransformerLM:
    return make_lm()


@pytest.fixture(scope="session")
def transformer() -> Transformer:
    return make_transformer()


@pytest.fixture(scope="session")
def small_lm() -> TransformerLM:
    return make_lm(seed=SMALL_SEED, vocab_size=SMALL_V, max_length=8)
