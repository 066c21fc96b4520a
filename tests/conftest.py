"""Shared test set-up: quiet TensorFlow, no plot windows, the Boston data as a fixture."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["MPLBACKEND"] = "Agg"


@pytest.fixture
def boston():
    from common.data import load_dataset

    return load_dataset("boston", seed=0)
