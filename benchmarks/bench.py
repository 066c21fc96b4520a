"""Speed and sparsity-versus-accuracy of the two demos, measured side by side in one run.

    python benchmarks/bench.py --quick            # about 2 minutes on 2 cores
    python benchmarks/bench.py --out benchmarks/results   # the full run behind the README

Writes DIR/latest.json, DIR/results.md and DIR/sparsity.png. Speed variants are interleaved round by round
so that machine noise hits them alike; each figure is the median over the rounds.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.config import Config, import_tensorflow_quietly  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, seeds and epochs")
    parser.add_argument("--out", default="benchmarks/out", help="folder for the results")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- speed
def plain_loop_ms_per_step(data, config):
    """The TF demo's loop without penalty, counting and summaries: the cost floor."""
    import keras
    import tensorflow as tf

    from common.model import build_model, data_loss, training_batches

    keras.utils.set_random_seed(config.seed)
    model = build_model(data, config.hidden)
    optimizer = keras.optimizers.Adam(config.lr)
    batches, steps_per_epoch = training_batches(data, config.batch_size, config.seed)
    batch_iterator = iter(batches)

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

    return _time_chunks(train_steps, config.epochs * steps_per_epoch, config.eval_every)


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

    from common.counting import count_active_units
    from common.model import build_model, loss_name, make_regularizer

    keras.utils.set_random_seed(config.seed)
    model = build_model(data, config.hidden, make_regularizer(config))
    model.compile(optimizer=keras.optimizers.Adam(config.lr), loss=loss_name(data.task))
    counts = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: count_active_units(model, config.threshold))
    fit = dict(x=data.x_train, y=data.y_train, batch_size=len(data.x_train), verbose=0,
               callbacks=[counts])
    model.fit(epochs=2, **fit)
    started = time.perf_counter()
    model.fit(epochs=config.epochs, **fit)
    return 1000.0 * (time.perf_counter() - started) / config.epochs


def speed(quick, logdir):
    import demo_keras
    import demo_tensorflow
    from common.data import load_dataset

    data = load_dataset("boston")
    rounds, steps = (2, 500) if quick else (5, 1500)
    samples = {key: [] for key in ["tf_loop_ms_per_step", "plain_loop_ms_per_step",
                                   "keras_fit_ms_per_step", "naive_keras_ms_per_step"]}
    shipped = ["--epochs", str(steps), "--logdir", str(logdir), "--no-show"]
    for _ in range(rounds):
        samples["tf_loop_ms_per_step"].append(demo_tensorflow.main(shipped)["ms_per_step"])
        samples["plain_loop_ms_per_step"].append(plain_loop_ms_per_step(data, Config(epochs=steps)))
        samples["keras_fit_ms_per_step"].append(demo_keras.main(shipped)["ms_per_step"])
        samples["naive_keras_ms_per_step"].append(
            naive_keras_ms_per_step(data, Config(epochs=steps // 5)))
    result = {key: statistics.median(values) for key, values in samples.items()}
    result["samples"] = samples
    result["ratios"] = {
        "monitoring_overhead_tf_over_plain": result["tf_loop_ms_per_step"]
        / result["plain_loop_ms_per_step"],
        "keras_over_tf": result["keras_fit_ms_per_step"] / result["tf_loop_ms_per_step"],
        "speedup_naive_over_keras": result["naive_keras_ms_per_step"]
        / result["keras_fit_ms_per_step"],
    }
    return result


def end_to_end(quick, logdir):
    """Wall time and peak memory (max RSS) of the default runs, as a user starts them."""
    runs = 1 if quick else 3
    result = {}
    for script in ["demo_tensorflow.py", "demo_keras.py"]:
        walls, peaks = [], []
        for _ in range(runs):
            started = time.perf_counter()
            process = subprocess.Popen([sys.executable, script, "--logdir", str(logdir),
                                        "--no-show"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(process.pid, 0)
            walls.append(time.perf_counter() - started)
            peaks.append(usage.ru_maxrss / 1024)  # KiB on Linux
            if status != 0:
                raise RuntimeError(f"{script} failed with status {status}")
        result[script] = {"wall_seconds_median": statistics.median(walls),
                          "peak_rss_mib_median": statistics.median(peaks), "runs": runs}
    return result


def scaling(quick, logdir):
    """TF demo training ms per step against rows and layer width (full batch)."""
    import numpy as np

    import demo_tensorflow

    epochs = "50" if quick else "200"
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        synthetic = Path(folder) / "synthetic.csv"
        rng = np.random.default_rng(0)
        x = rng.uniform(-1, 1, size=(100_000, 13))
        y = x[:, :4] @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=len(x))
        np.savetxt(synthetic, np.column_stack([x, y]), delimiter=",", fmt="%.6f",
                   header=",".join([f"x{i}" for i in range(13)] + ["y"]), comments="")
        cases = {"boston (379 rows)": [], "digits (1347 rows)": ["--dataset", "digits"],
                 "synthetic (75000 rows)": ["--csv", str(synthetic), "--target", "y"]}
        for name, flags in cases.items():
            run = demo_tensorflow.main(flags + ["--epochs", epochs, "--logdir", str(logdir)])
            rows[name] = run["ms_per_step"]
    widths = {}
    for hidden in [(20, 15), (80, 60), (320, 240)]:
        run = demo_tensorflow.main(["--hidden", *map(str, hidden), "--epochs", epochs,
                                    "--logdir", str(logdir)])
        widths["-".join(map(str, hidden))] = run["ms_per_step"]
    return {"ms_per_step_by_rows": rows, "ms_per_step_by_width": widths}


# ---------------------------------------------------------------- sparsity
def penalty_config(penalty, strength):
    return {"none": dict(group=0, l1=0, l2=0), "l2": dict(group=0, l1=0, l2=strength),
            "l1": dict(group=0, l1=strength, l2=0), "gl": dict(group=strength, l1=0, l2=0),
            "sgl": dict(group=strength, l1=strength, l2=0)}[penalty]


def train_and_prune(data, config):
    """Train with fit() (lean: no monitoring), prune, evaluate the pruned model on test."""
    import keras

    from common.model import build_model, evaluate, loss_name, make_regularizer, training_batches
    from common.pruning import prune_model

    keras.utils.set_random_seed(config.seed)
    model = build_model(data, config.hidden, make_regularizer(config))
    batches, steps_per_epoch = training_batches(data, config.batch_size, config.seed)
    chunk = max(size for size in range(1, 51) if config.epochs % size == 0) * steps_per_epoch
    model.compile(optimizer=keras.optimizers.Adam(config.lr), loss=loss_name(data.task),
                  steps_per_execution=chunk)
    model.fit(batches, epochs=config.epochs * steps_per_epoch // chunk, steps_per_epoch=chunk,
              verbose=0, shuffle=False)
    pruned, report = prune_model(model, config.threshold, data.feature_names)
    metrics = evaluate(pruned, data, x=data.x_test[:, report.kept_inputs])
    return metrics, report


SETUPS = {
    # The original demo: 13-20-15-1, 1500 full-batch steps.
    "boston": dict(hidden=(20, 15), epochs=1500, batch_size=None, metric="rmse",
                   fixed=1e-3, sweep=[1e-3, 3e-3, 1e-2]),
    # The paper's DIGITS setup: 64-40-20-10, batches of 300, 200 epochs, lambda 10^-3.5.
    "digits": dict(hidden=(40, 20), epochs=200, batch_size=300, metric="accuracy",
                   fixed=10**-3.5, sweep=[10**-3.5, 1e-3, 3e-3]),
}


def sparsity(quick):
    from common.data import load_dataset

    seeds = [0] if quick else [0, 1, 2, 3, 4]
    rows = []
    for name, setup in SETUPS.items():
        epochs = setup["epochs"] // (4 if quick else 1)
        sweep = setup["sweep"][:1] if quick else setup["sweep"]
        cases = [("none", 0.0), ("l2", setup["fixed"]), ("l1", setup["fixed"])]
        cases += [(penalty, strength) for penalty in ("gl", "sgl") for strength in sweep]
        datasets = {seed: load_dataset(name, seed=seed) for seed in seeds}
        for penalty, strength in cases:
            runs = []
            for seed in seeds:
                data = datasets[seed]
                config = Config(dataset=name, hidden=setup["hidden"], epochs=epochs,
                                batch_size=setup["batch_size"], seed=seed,
                                **penalty_config(penalty, strength))
                metrics, report = train_and_prune(data, config)
                runs.append((metrics[setup["metric"]], report))
            values = [value for value, _ in runs]
            rows.append({
                "dataset": name, "penalty": penalty, "lambda": strength, "seeds": len(seeds),
                "epochs": epochs, "metric": setup["metric"],
                "metric_mean": statistics.mean(values),
                "metric_sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                "inputs_kept_mean": statistics.mean(r.architecture_after[0] for _, r in runs),
                "inputs_total": runs[0][1].architecture_before[0],
                "hidden_kept_mean": statistics.mean(sum(r.architecture_after[1:-1])
                                                    for _, r in runs),
                "hidden_total": sum(runs[0][1].architecture_before[1:-1]),
                "params_after_mean": statistics.mean(r.params_after for _, r in runs)})
            print(f"  {name:7s} {penalty:4s} {strength:.5f}: {rows[-1]['metric']} "
                  f"{rows[-1]['metric_mean']:.4f}, inputs {rows[-1]['inputs_kept_mean']:.1f}, "
                  f"hidden {rows[-1]['hidden_kept_mean']:.1f}", flush=True)
    return rows


def targets(rows):
    """The paper's claim made concrete; each entry says whether a row reaches it."""
    def best(dataset, penalty):
        return [row for row in rows if row["dataset"] == dataset and row["penalty"] == penalty]

    digits_l2 = best("digits", "l2")[0]["metric_mean"]
    digits_ok = [row for row in best("digits", "sgl")
                 if row["hidden_kept_mean"] <= 0.4 * row["hidden_total"]
                 and row["inputs_kept_mean"] <= 0.7 * row["inputs_total"]
                 and row["metric_mean"] >= digits_l2 - 0.02]
    boston_none = best("boston", "none")[0]["metric_mean"]
    boston_ok = [row for row in rows if row["dataset"] == "boston"
                 and row["inputs_kept_mean"] + row["hidden_kept_mean"] <= 16
                 and row["metric_mean"] <= 1.10 * boston_none]
    return {"digits_sgl_40pc_hidden_70pc_inputs_within_2pts_of_l2": bool(digits_ok),
            "boston_16_units_rmse_within_10pc": bool(boston_ok),
            "digits_l2_accuracy": digits_l2, "boston_unregularized_rmse": boston_none}


# ---------------------------------------------------------------- report
def markdown(results):
    speed_result = results["speed"]
    lines = ["| speed (Boston, default setup) | ms per step |", "|---|---|"]
    for key in ["tf_loop_ms_per_step", "plain_loop_ms_per_step", "keras_fit_ms_per_step",
                "naive_keras_ms_per_step"]:
        lines.append(f"| {key} | {speed_result[key]:.3f} |")
    for key, value in speed_result["ratios"].items():
        lines.append(f"| {key} | {value:.2f} |")
    lines += ["", "| dataset | penalty | lambda | metric (mean ± sd) | inputs kept | "
              "hidden kept | params after |", "|---|---|---|---|---|---|---|"]
    for row in results["sparsity"]:
        lines.append(
            f"| {row['dataset']} | {row['penalty']} | {row['lambda']:.2e} | {row['metric']} "
            f"{row['metric_mean']:.4f} ± {row['metric_sd']:.4f} | "
            f"{row['inputs_kept_mean']:.1f}/{row['inputs_total']} | "
            f"{row['hidden_kept_mean']:.1f}/{row['hidden_total']} | "
            f"{row['params_after_mean']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    for axis, dataset in zip(axes, SETUPS):
        for penalty in ["none", "l2", "l1", "gl", "sgl"]:
            rows = [row for row in results["sparsity"]
                    if row["dataset"] == dataset and row["penalty"] == penalty]
            axis.plot([row["params_after_mean"] for row in rows],
                      [row["metric_mean"] for row in rows], marker="o", label=penalty)
        axis.set_xscale("log")
        axis.set_xlabel("parameters after pruning")
        axis.set_ylabel(f"test {SETUPS[dataset]['metric']}")
        axis.set_title(dataset)
        axis.legend()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    args = parse_args(argv)
    import_tensorflow_quietly()
    import keras
    import tensorflow as tf

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as logdir:
        results = {"quick": args.quick,
                   "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                               "python": platform.python_version()},
                   "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
                   "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                       timespec="seconds")}
        print("speed ...", flush=True)
        results["speed"] = speed(args.quick, logdir)
        print("end to end ...", flush=True)
        results["end_to_end"] = end_to_end(args.quick, logdir)
        print("scaling ...", flush=True)
        results["scaling"] = scaling(args.quick, logdir)
        print("sparsity ...", flush=True)
        results["sparsity"] = sparsity(args.quick)
    results["targets"] = targets(results["sparsity"])
    results["wall_seconds"] = time.perf_counter() - started
    (out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    plot(results, out / "sparsity.png")
    print(markdown(results))
    print(json.dumps({"ratios": results["speed"]["ratios"], "targets": results["targets"],
                      "wall_seconds": results["wall_seconds"]}, indent=2))
    return results


if __name__ == "__main__":
    main()
