"""Shared test set-up: quiet TensorFlow, no plot windows, the repository root importable."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["MPLBACKEND"] = "Agg"
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402


def pytest_configure(config):
    # Keras 3 converts tensors with np.array(x, copy=False), which NumPy 2 reports once per
    # call; it is Keras' own conversion, not this project's code.
    config.addinivalue_line("filterwarnings",
                            "ignore:__array__ implementation doesn't accept a copy keyword")


@pytest.fixture
def boston():
    from common.data import load_dataset

    return load_dataset("boston", seed=0)


def run_script(*args, cwd=ROOT, timeout=300):
    """Run a Python script of the repository in a fresh process; returns CompletedProcess."""
    import subprocess

    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
