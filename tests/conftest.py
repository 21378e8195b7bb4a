"""Shared pytest fixtures."""

import jax
import pytest
from hypothesis import settings

# Hypothesis examples compile new shapes: allow slow examples, keep the count modest on 2 cores.
settings.register_profile("attn", deadline=None, max_examples=25, derandomize=True)
settings.load_profile("attn")


@pytest.fixture
def x64():
    """Run a test body with 64-bit floats enabled."""
    with jax.enable_x64(True):
        yield
