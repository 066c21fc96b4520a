"""Speed: ms per training step of the demos as shipped, against a bare loop and a naive port,
and how the TF loop's step grows with rows and layer width."""

import statistics
import tempfile
import time
from pathlib import Path

from common.run.config import Config


def plain_loop_ms_per_step(data, config):
    """The TF demo's loop without penalty, counting and summaries: the cost floor."""
    import keras
    import tensorflow as tf

    from common.training.batches import training_batches
    from common.training.model import build_model, data_loss

    keras.utils.set_random_seed(config.seed)
    model = build_model(data, config.hidden)
    optimizer = keras.optimizers.Adam(config.lr)
    batches = training_batches(tf.distribute.get_strategy(), data.x_train, data.y_train,
                               config.batch_size, config.seed, with_rows=False)
    batch_iterator = iter(batches.dataset)

    @tf.function
    def train_steps(num_steps):
        loss = tf.constant(0.0)
        for _ in tf.range(num_steps):
            x, y = next(batch_iterator)
            with tf.GradientTape() as tape:
                loss = data_loss(data.task, y, model(x, training=True))
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return _time_chunks(train_steps, config.epochs * batches.steps_per_epoch, config.eval_every)


def _time_chunks(train_steps, total_steps, chunk):
    import tensorflow as tf

    float(train_steps(tf.constant(chunk)))  # trace once, outside the timing
    started = time.perf_counter()
    for _ in range(total_steps // chunk):
        float(train_steps(tf.constant(chunk)))
    return 1000.0 * (time.perf_counter() - started) / (total_steps // chunk * chunk)


def naive_keras_ms_per_step(data, config):
    """The original's recipe ported as is: NumPy arrays, one fit() epoch per step, counting
    in a callback every epoch."""
    import keras

    from common.shrink.counting import count_active_units
    from common.training.model import build_model, loss_name
    from common.penalty import GroupSparse

    keras.utils.set_random_seed(config.seed)
    model = build_model(data, config.hidden, [
        GroupSparse(group, l1=l1, l2=config.l2, proximal=config.solver == "proximal")
        for group, l1 in config.kernel_strengths()])
    model.compile(optimizer=keras.optimizers.Adam(config.lr), loss=loss_name(data.task))
    counts = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: count_active_units(model, config.threshold))
    fit = dict(x=data.x_train, y=data.y_train, batch_size=len(data.x_train), verbose=0,
               callbacks=[counts])
    model.fit(epochs=2, **fit)
    started = time.perf_counter()
    model.fit(epochs=config.epochs, **fit)
    return 1000.0 * (time.perf_counter() - started) / config.epochs


def backends():
    """The Keras backends installed here, TensorFlow first."""
    import importlib.util

    return ["tensorflow"] + [name for name in ("jax", "torch")
                             if importlib.util.find_spec(name) is not None]


def keras_demo_on(backend, flags):
    """ms per step of `python demo_keras.py FLAGS` in a fresh process on `backend`."""
    import json
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as folder:
        completed = subprocess.run(
            [sys.executable, "demo_keras.py", *flags, "--no-show", "--logdir", folder], cwd=root,
            env={**os.environ, "KERAS_BACKEND": backend}, capture_output=True, text=True)
        if completed.returncode != 0:
            raise RuntimeError(f"demo_keras.py on {backend} failed: {completed.stderr[-2000:]}")
        (run_dir,) = Path(folder).iterdir()
        return json.loads((run_dir / "run.json").read_text())["ms_per_step"]


def speed(size, logdir):
    import demo_keras
    import demo_tensorflow
    from common.data.datasets import load_dataset

    data = load_dataset("boston")
    rounds, steps = size["rounds"], size["steps"]
    samples = {key: [] for key in ["tf_loop_ms_per_step", "plain_loop_ms_per_step",
                                   "keras_fit_ms_per_step", "naive_keras_ms_per_step",
                                   "tf_loop_proximal_ms_per_step"]}
    shipped = ["--epochs", str(steps), "--logdir", str(logdir), "--no-show"]
    # Each in a fresh process; the smoke size (the test suite's) only starts TensorFlow's.
    names = backends() if size.get("all_backends", True) else ["tensorflow"]
    on_backends = {backend: [] for backend in names}
    for _ in range(rounds):
        for backend, values in on_backends.items():
            values.append(keras_demo_on(backend, ["--epochs", str(steps)]))
        samples["tf_loop_ms_per_step"].append(demo_tensorflow.main(shipped)["ms_per_step"])
        samples["plain_loop_ms_per_step"].append(plain_loop_ms_per_step(data, Config(epochs=steps)))
        samples["keras_fit_ms_per_step"].append(demo_keras.main(shipped)["ms_per_step"])
        samples["naive_keras_ms_per_step"].append(
            naive_keras_ms_per_step(data, Config(epochs=max(steps // 5, 5))))
        samples["tf_loop_proximal_ms_per_step"].append(
            demo_tensorflow.main(shipped + ["--solver", "proximal"])["ms_per_step"])
    # The TensorBoard pictures (every --eval-every) against none: a small difference, so
    # more rounds, each a pair run back to back, and the median of the pairs' ratios.
    pairs = []
    for _ in range(size["picture_rounds"]):
        with_pictures = demo_tensorflow.main(shipped)["ms_per_step"]
        without = demo_tensorflow.main(shipped + ["--no-pictures"])["ms_per_step"]
        pairs.append((with_pictures, without))
    # The lambda path against one default run: wall time inside main() (no import).
    single = demo_tensorflow.main(["--epochs", str(steps), "--logdir", str(logdir)])
    path = demo_tensorflow.main(["--epochs", str(steps), "--path", "--logdir", str(logdir)])
    result = {key: statistics.median(values) for key, values in samples.items()}
    result["path_over_single"] = path["wall_seconds"] / single["wall_seconds"]
    result["path_points_trained"] = len(path["path"]) - 1
    result["samples"] = {**samples, "pictures_pairs": pairs, "keras_by_backend": on_backends}
    result["keras_fit_ms_per_step_by_backend"] = {
        backend: statistics.median(values) for backend, values in on_backends.items()}
    result["tf_loop_no_pictures_ms_per_step"] = statistics.median(without for _, without in pairs)
    result["ratios"] = {
        "pictures_overhead_tf": statistics.median(a / b for a, b in pairs),
        "monitoring_overhead_tf_over_plain": result["tf_loop_ms_per_step"]
        / result["plain_loop_ms_per_step"],
        "keras_over_tf": result["keras_fit_ms_per_step"] / result["tf_loop_ms_per_step"],
        "speedup_naive_over_keras": result["naive_keras_ms_per_step"]
        / result["keras_fit_ms_per_step"],
    }
    return result


def scaling(size, logdir):
    """TF demo training ms per step against rows and layer width (full batch)."""
    import numpy as np

    import demo_tensorflow

    epochs = str(size["scaling_epochs"])
    synthetic_rows = size["synthetic_rows"]
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        synthetic = Path(folder) / "synthetic.csv"
        rng = np.random.default_rng(0)
        x = rng.uniform(-1, 1, size=(synthetic_rows, 13))
        y = x[:, :4] @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=len(x))
        np.savetxt(synthetic, np.column_stack([x, y]), delimiter=",", fmt="%.6f",
                   header=",".join([f"x{i}" for i in range(13)] + ["y"]), comments="")
        cases = {"boston (379 rows)": [], "digits (1347 rows)": ["--dataset", "digits"],
                 f"synthetic ({synthetic_rows * 3 // 4} rows)": ["--csv", str(synthetic),
                                                                 "--target", "y"]}
        for name, flags in cases.items():
            run = demo_tensorflow.main(flags + ["--epochs", epochs, "--logdir", str(logdir)])
            rows[name] = run["ms_per_step"]
    widths = {}
    for hidden in [(20, 15), (80, 60), (320, 240)]:
        run = demo_tensorflow.main(["--hidden", *map(str, hidden), "--epochs", epochs,
                                    "--logdir", str(logdir)])
        widths["-".join(map(str, hidden))] = run["ms_per_step"]
    return {"ms_per_step_by_rows": rows, "ms_per_step_by_width": widths}
