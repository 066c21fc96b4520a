"""The Keras side on an accelerator, through JAX: ms per step at the three sizes of
overhead.py, on the default JAX device and on the CPU, plus correctness checks that could
fail only there (exact zeros, recorded counts against a recount, the pruned network).

Runs without TensorFlow (a lent GPU machine has JAX but no TensorFlow, whose wheel is too
large to carry), so it feeds NumPy arrays to fit instead of the demos' tf.data batches:

    KERAS_BACKEND=jax python benchmarks/gpu.py --out results.json   # GPU, then CPU
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# hidden, batch size (None: full batch), data epochs per graph call, timed calls
CASES = {"boston": ((20, 15), None, 25, 8), "digits": ((40, 20), 300, 25, 4),
         "wide": ((320, 240), 1024, 1, 4)}
VARIANTS = ("group_lasso", "proximal", "plain_l1")


def load(case):
    import numpy as np

    from common.data.datasets import load_dataset

    if case != "wide":
        return load_dataset(case)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(100_000, 13)).astype("float32")
    y = (x[:, :4] @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=len(x)))
    data = load_dataset("boston")  # a template: same fields, the synthetic rows instead
    split = 75_000
    y = ((y - y[:split].min()) / (y[:split].max() - y[:split].min())).astype("float32")[:, None]
    return type(data)(**{**data.__dict__, "name": "wide", "x_train": x[:split],
                         "y_train": y[:split], "x_test": x[split:], "y_test": y[split:],
                         "feature_names": [f"x{i}" for i in range(13)]})


def measure(case, variant):
    import keras
    import numpy as np

    from common.shrink.counting import count_active_units
    from common.training.model import build_model, loss_name
    from common.training.monitor import UnitHistory
    from common.penalty.penalties import GroupSparse
    from common.penalty.proximal_optimizer import ProximalOptimizer
    from common.shrink.pruning import prune_model

    hidden, batch, every, calls = CASES[case]
    data = load(case)
    keras.utils.set_random_seed(0)
    rows = len(data.x_train)
    batch = batch or rows
    steps_per_epoch = rows // batch  # whole batches only, so every call has the same steps
    x = np.concatenate([data.x_train[:steps_per_epoch * batch]] * every)
    y = np.concatenate([data.y_train[:steps_per_epoch * batch]] * every)
    chunk = every * steps_per_epoch
    if variant == "plain_l1":
        model = build_model(data, hidden, keras.regularizers.L1(1e-4))
        optimizer, metrics, callbacks, history = keras.optimizers.Adam(1e-3), [], [], None
    else:
        proximal = variant == "proximal"
        model = build_model(data, hidden, GroupSparse(1e-3, proximal=proximal))
        optimizer = keras.optimizers.Adam(1e-3)
        optimizer = ProximalOptimizer(optimizer) if proximal else optimizer
        history = UnitHistory(model, data.task, 0.0 if proximal else 1e-3, steps_per_epoch,
                              capacity=chunk)
        metrics, callbacks = [history.recorder], [history]
    model.compile(optimizer=optimizer, loss=loss_name(data.task), metrics=metrics,
                  steps_per_execution=chunk)
    times = []
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: times.append(time.perf_counter()),
        on_epoch_end=lambda epoch, logs: times.append(time.perf_counter() - times.pop()))
    model.fit(x, y, batch_size=batch, epochs=calls + 1, shuffle=False, verbose=0,
              callbacks=[*callbacks, timer])
    result = {"ms_per_step": 1000.0 * statistics.median(times[1:]) / chunk,
              "steps": (calls + 1) * chunk}
    if history is not None:  # checks that could differ on an accelerator
        threshold = 0.0 if variant == "proximal" else 1e-3
        counts = count_active_units(model, threshold)
        pruned, report = prune_model(model, threshold)
        kept = report.kept_inputs
        predictions = keras.ops.convert_to_numpy(model(data.x_test))
        pruned_predictions = keras.ops.convert_to_numpy(pruned(data.x_test[:, kept]))
        result.update({
            "recorded_units_equal_recount":
                history.records["units"][-1] == [counts.inputs, *counts.hidden],
            "records": len(history.records["epoch"]),
            "units_after": [counts.inputs, *counts.hidden],
            "pruned_max_abs_difference": float(np.max(np.abs(predictions - pruned_predictions))),
            "finite": bool(all(math.isfinite(v) for v in history.records["loss"]))})
        if variant == "proximal":
            first = keras.ops.convert_to_numpy(model.layers[0].kernel)
            dead = ~counts.input_mask
            result["exact_zero_rows"] = bool(np.all(first[dead] == 0.0)) if dead.any() else None
    return result


def run_all():
    import jax
    import keras

    device = jax.devices()[0]
    results = {"device": f"{device.platform}: {getattr(device, 'device_kind', device)}",
               "backend": keras.backend.backend(), "jax": jax.__version__,
               "keras": keras.__version__, "python": platform.python_version(), "cases": {}}
    for case in CASES:
        # Two rounds, the second in reverse order, so warm-up hits no variant alone; the
        # figure is the mean of the rounds, the checks are the second round's.
        runs = {variant: [] for variant in VARIANTS}
        for order in (VARIANTS, VARIANTS[::-1]):
            for variant in order:
                runs[variant].append(measure(case, variant))
        results["cases"][case] = {
            variant: {**measured[-1], "ms_per_step": statistics.mean(
                run["ms_per_step"] for run in measured),
                "ms_per_step_rounds": [run["ms_per_step"] for run in measured]}
            for variant, measured in runs.items()}
        print(case, json.dumps({variant: round(values["ms_per_step"], 4) for variant, values
                                in results["cases"][case].items()}), flush=True)
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_results.json")
    parser.add_argument("--only-here", action="store_true", help="skip the CPU comparison run")
    args = parser.parse_args(argv)
    here = run_all()
    combined = {"default_device": here}
    if not args.only_here and not here["device"].startswith("cpu"):
        cpu_file = Path(args.out).with_suffix(".cpu.json")
        subprocess.run([sys.executable, __file__, "--only-here", "--out", str(cpu_file)],
                       env={**os.environ, "JAX_PLATFORMS": "cpu"}, check=True)
        combined["cpu"] = json.loads(cpu_file.read_text())["default_device"]
        combined["gpu_over_cpu_ms_per_step"] = {
            case: {variant: here["cases"][case][variant]["ms_per_step"]
                   / combined["cpu"]["cases"][case][variant]["ms_per_step"]
                   for variant in VARIANTS} for case in CASES}
    Path(args.out).write_text(json.dumps(combined, indent=2) + "\n")
    print(json.dumps(combined.get("gpu_over_cpu_ms_per_step", {}), indent=2))


if __name__ == "__main__":
    os.environ.setdefault("KERAS_BACKEND", "jax")
    main()
