"""What several test modules use: the repository root, scripts in a fresh process, event files."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args, cwd=ROOT, timeout=300, env=None):
    """Run a Python script of the repository in a fresh process; returns CompletedProcess."""
    import os

    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def steps_per_call(steps):
    """`steps` per graph call, or 1 on PyTorch, where Keras refuses steps_per_execution > 1."""
    import keras

    return 1 if keras.backend.backend() == "torch" else steps


def float64():
    """A context in which float64 arrays stay float64 (JAX truncates them to float32 unless
    x64 is on); nothing to do on the other backends."""
    import contextlib

    import keras

    @contextlib.contextmanager
    def jax_x64():
        import jax

        jax.config.update("jax_enable_x64", True)
        try:
            yield
        finally:
            jax.config.update("jax_enable_x64", False)

    return jax_x64() if keras.backend.backend() == "jax" else contextlib.nullcontext()


def read_events(run_dir):
    """Every tensor summary of the run, by tag: [(step, value), ...] (text stays bytes)."""
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator

    accumulator = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    events = {}
    for tag in accumulator.Tags()["tensors"]:
        values = [(event.step, tf.make_ndarray(event.tensor_proto).reshape(-1))
                  for event in accumulator.Tensors(tag)]
        if all(value.size == 1 for _, value in values):
            events[tag] = [(step, value[0]) for step, value in values]
    return events


def read_scalars(run_dir):
    return {tag: values for tag, values in read_events(run_dir).items()
            if not isinstance(values[0][1], bytes)}  # text summaries hold bytes
