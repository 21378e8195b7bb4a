"""Fixtures for the data tests: one TFDS data directory shared by the whole session."""

import pytest


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A TFDS data_dir where tests prepare the "tiny" configs once."""
    return str(tmp_path_factory.mktemp("tensorflow_datasets"))
