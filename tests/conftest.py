"""Shared test set-up: quiet TensorFlow, no plot windows, the Boston data as a fixture."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["MPLBACKEND"] = "Agg"


def pytest_collection_modifyitems(config, items):
    """Under another Keras backend (KERAS_BACKEND=jax) only the tests marked `backends` run:
    the others are about TensorFlow itself (the TF demo, tf.distribute, TensorBoard)."""
    from common.backend import keras_backend_name

    backend = keras_backend_name()
    if backend == "tensorflow":
        return
    skip = pytest.mark.skip(reason=f"TensorFlow only; Keras runs on {backend} here")
    for item in items:
        if "backends" not in item.keywords or "tensorflow_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def boston():
    from common.data.datasets import load_dataset

    return load_dataset("boston", seed=0)
