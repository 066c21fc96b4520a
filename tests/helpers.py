"""What several test modules use: the repository root, scripts in a fresh process, event files."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from common.data.datasets import Dataset

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


def full_batch_fit(model, x, y, steps):
    """`steps` full-batch optimizer steps in one fit() epoch: the rows repeated in order, one
    copy per batch. The same steps as fit(epochs=steps, batch_size=len(x)) (a full batch's mean
    gradient does not depend on the rows' order) without fit's per-epoch cost (~0.1 s)."""
    import numpy as np

    model.fit(np.concatenate([x] * steps), np.concatenate([y] * steps), batch_size=len(x),
              epochs=1, shuffle=False, verbose=0)


def group_prox_reference(v, step, group, weights=None):
    """The oracle for the group prox in the metric diag(1/step), row by row in float64: zero
    when ||D v_g|| <= c_g = group * weight_g * sqrt(n), else the radius r solving
    sum_i (d_i v_i / (d_i r + c_g))**2 = 1, by bisection. Shares no code with common."""
    import math

    import numpy as np

    v = np.asarray(v, np.float64)
    inverse = 1.0 / np.broadcast_to(np.asarray(step, np.float64), v.shape)
    weights = np.ones(v.shape[0]) if weights is None else np.asarray(weights, np.float64)
    out = np.zeros_like(v)
    for row in range(v.shape[0]):
        c = group * weights[row] * math.sqrt(v.shape[1])
        scaled = inverse[row] * v[row]
        if np.linalg.norm(scaled) <= c:
            continue
        low, high = 0.0, np.linalg.norm(v[row])
        for _ in range(200):
            radius = (low + high) / 2
            if np.sum((scaled / (inverse[row] * radius + c)) ** 2) > 1:
                low = radius
            else:
                high = radius
        out[row] = scaled * radius / (inverse[row] * radius + c)
    return out


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
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util.tensor_util import make_ndarray

    accumulator = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    events = {}
    for tag in accumulator.Tags()["tensors"]:
        values = [(event.step, make_ndarray(event.tensor_proto).reshape(-1))
                  for event in accumulator.Tensors(tag)]
        if all(value.size == 1 for _, value in values):
            events[tag] = [(step, value[0]) for step, value in values]
    return events


def read_scalars(run_dir):
    return {tag: values for tag, values in read_events(run_dir).items()
            if not isinstance(values[0][1], bytes)}  # text summaries hold bytes


class Watched:
    """A demo started in a fresh process whose output lines are collected as they come, so a
    test can wait for an event (a marker line) before it acts, never for a fixed time."""

    def __init__(self, *args, cwd=ROOT, env=None):
        import os
        import threading

        self.process = subprocess.Popen(
            [sys.executable, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, **(env or {})})
        self.lines = {"stdout": [], "stderr": []}
        self.changed = threading.Condition()
        self.readers = [threading.Thread(target=self._read, args=(name,), daemon=True)
                        for name in self.lines]
        for reader in self.readers:
            reader.start()

    def _read(self, name):
        for line in getattr(self.process, name):
            with self.changed:
                self.lines[name].append(line)
                self.changed.notify_all()
        with self.changed:
            self.lines[name].append(None)  # the end of the stream
            self.changed.notify_all()

    def wait_for(self, marker, stream="stderr", budget=600):
        """Until a line of `stream` contains `marker`; fails if the process ends first. The
        budget is only a backstop against a hung process, far above any normal wait."""
        import time

        deadline = time.monotonic() + budget
        with self.changed:
            while True:
                lines = self.lines[stream]
                if any(line is not None and marker in line for line in lines):
                    return
                if lines and lines[-1] is None:
                    raise AssertionError(f"{marker!r} never came; stderr ends:\n"
                                         f"{self.text('stderr')[-3000:]}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"no {marker!r} within {budget} s")
                self.changed.wait(timeout=1)

    def text(self, stream):
        return "".join(line for line in self.lines[stream] if line is not None)

    def finish(self, budget=600):
        """Wait for the process to end; returns (returncode, stdout, stderr)."""
        try:
            self.process.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for reader in self.readers:
            reader.join()
        return self.process.returncode, self.text("stdout"), self.text("stderr")


def raw_inputs(data, x, kept):
    """A split's scaled inputs `x` back in the CSV's units, the kept columns: what a saved
    pruned.keras takes."""
    import numpy as np

    return (x * data.input_spread + data.input_center)[:, kept].astype(np.float32)


class WatchedDataset(Dataset):
    """A Dataset that logs every read of its test rows."""

    events = None

    def __getattribute__(self, name):
        if name in ("x_test", "y_test"):
            object.__getattribute__(self, "events").append("test read")
        return object.__getattribute__(self, name)


def numpy_forward(weights, x):
    """The network's output in float64 NumPy (ReLU hidden layers, linear output)."""
    out = np.asarray(x, np.float64)
    for layer in range(0, len(weights), 2):
        out = out @ np.asarray(weights[layer], np.float64) + weights[layer + 1]
        if layer + 2 < len(weights):
            out = np.maximum(out, 0.0)
    return out


def demo_penalties(config):
    """The GroupSparse of each kernel that the demos build from `config`."""
    from common.penalty import GroupSparse

    return [GroupSparse(group, l1=l1, l2=config.l2, proximal=config.solver == "proximal")
            for group, l1 in config.kernel_strengths()]


def demo_optimizer(config):
    """The demos' optimizer for `config`: Adam, wrapped for the proximal solver."""
    import keras

    from common.penalty import ProximalOptimizer

    optimizer = keras.optimizers.Adam(config.lr)
    if config.solver == "proximal":
        optimizer = ProximalOptimizer(optimizer, freeze_zeros=config.freeze_zeros)
    return optimizer
