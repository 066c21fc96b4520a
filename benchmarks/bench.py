"""Speed and sparsity-versus-accuracy of the two demos, measured side by side in one run.

    python benchmarks/bench.py --quick            # about 2 minutes on 2 cores
    python benchmarks/bench.py --out benchmarks/results   # the full run behind the README

Writes DIR/results.json (a full run also as DIR/latest.json), DIR/results.md and
DIR/sparsity.png. Speed variants are interleaved round by round so that machine noise hits
them alike; each figure is the median over the rounds.
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

from common.config import PRESETS, Config, import_tensorflow_quietly  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, seeds and epochs")
    parser.add_argument("--smoke", action="store_true",
                        help="every part at a token size, in well under a minute (for the tests)")
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


# Sizes per mode: full (the README's numbers), quick (--quick) and smoke (--smoke).
SIZES = {
    "full": dict(rounds=5, steps=1500, end_to_end_runs=3, scaling_epochs=200, seeds=5,
                 epoch_divisor=1, sweep=None, synthetic_rows=100_000,
                 datasets=("boston", "digits")),
    "quick": dict(rounds=2, steps=500, end_to_end_runs=1, scaling_epochs=50, seeds=1,
                  epoch_divisor=4, sweep=1, synthetic_rows=100_000, datasets=("boston", "digits")),
    "smoke": dict(rounds=1, steps=50, end_to_end_runs=0, scaling_epochs=5, seeds=1,
                  epoch_divisor=50, sweep=1, synthetic_rows=2_000, datasets=("boston",)),
}


def speed(mode, logdir):
    import demo_keras
    import demo_tensorflow
    from common.data import load_dataset

    data = load_dataset("boston")
    rounds, steps = SIZES[mode]["rounds"], SIZES[mode]["steps"]
    samples = {key: [] for key in ["tf_loop_ms_per_step", "plain_loop_ms_per_step",
                                   "keras_fit_ms_per_step", "naive_keras_ms_per_step",
                                   "tf_loop_proximal_ms_per_step"]}
    shipped = ["--epochs", str(steps), "--logdir", str(logdir), "--no-show"]
    for _ in range(rounds):
        samples["tf_loop_ms_per_step"].append(demo_tensorflow.main(shipped)["ms_per_step"])
        samples["plain_loop_ms_per_step"].append(plain_loop_ms_per_step(data, Config(epochs=steps)))
        samples["keras_fit_ms_per_step"].append(demo_keras.main(shipped)["ms_per_step"])
        samples["naive_keras_ms_per_step"].append(
            naive_keras_ms_per_step(data, Config(epochs=max(steps // 5, 5))))
        samples["tf_loop_proximal_ms_per_step"].append(
            demo_tensorflow.main(shipped + ["--solver", "proximal"])["ms_per_step"])
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


# Runs a script as `python script ...` would, then prints the process's peak RSS (VmHWM).
# A child's ru_maxrss would also count the benchmark process it was forked from (Linux
# keeps the high-water mark across exec); VmHWM belongs to the new process image only.
PEAK_RSS_WRAPPER = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    with open("/proc/self/status") as status:
        peak = [line.split()[1] for line in status if line.startswith("VmHWM")][0]
    print("PEAK_RSS_KIB", peak, file=sys.stderr)
"""


def end_to_end(mode, logdir):
    """Wall time and peak memory (VmHWM) of the default runs, as a user starts them."""
    runs = SIZES[mode]["end_to_end_runs"]
    if not runs:
        return {}
    result = {}
    for script in ["demo_tensorflow.py", "demo_keras.py"]:
        walls, peaks = [], []
        for _ in range(runs):
            started = time.perf_counter()
            process = subprocess.run([sys.executable, "-c", PEAK_RSS_WRAPPER, script,
                                      "--logdir", str(logdir), "--no-show"], cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
            walls.append(time.perf_counter() - started)
            if process.returncode != 0:
                raise RuntimeError(f"{script} failed: {process.stderr[-2000:]}")
            peak = [line.split()[1] for line in process.stderr.splitlines()
                    if line.startswith("PEAK_RSS_KIB")][0]
            peaks.append(int(peak) / 1024)
        result[script] = {"wall_seconds_median": statistics.median(walls),
                          "peak_rss_mib_median": statistics.median(peaks), "runs": runs}
    return result


def scaling(mode, logdir):
    """TF demo training ms per step against rows and layer width (full batch)."""
    import numpy as np

    import demo_tensorflow

    epochs = str(SIZES[mode]["scaling_epochs"])
    synthetic_rows = SIZES[mode]["synthetic_rows"]
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


# ---------------------------------------------------------------- sparsity
def penalty_config(penalty, strength):
    return {"none": dict(group=0, l1=0, l2=0), "l2": dict(group=0, l1=0, l2=strength),
            "l1": dict(group=0, l1=strength, l2=0), "gl": dict(group=strength, l1=0, l2=0),
            "sgl": dict(group=strength, l1=strength, l2=0)}[penalty]


def train_and_prune(data, config):
    """Train with fit() (lean: no monitoring), prune, evaluate the pruned model on test."""
    import keras

    from common.model import (build_model, evaluate, loss_name, make_optimizer,
                              make_regularizer, training_batches)
    from common.pruning import prune_model
    from common.report import finetune

    keras.utils.set_random_seed(config.seed)
    regularizer = make_regularizer(config)
    model = build_model(data, config.hidden, regularizer)
    batches, steps_per_epoch = training_batches(data, config.batch_size, config.seed)
    chunk = max(size for size in range(1, 51) if config.epochs % size == 0) * steps_per_epoch
    model.compile(optimizer=make_optimizer(config, regularizer), loss=loss_name(data.task),
                  steps_per_execution=chunk)
    model.fit(batches, epochs=config.epochs * steps_per_epoch // chunk, steps_per_epoch=chunk,
              verbose=0, shuffle=False)
    pruned, report = prune_model(model, config.threshold, data.feature_names)
    if config.finetune:
        finetune(pruned, data, data.x_train[:, report.kept_inputs], config)
    metrics = evaluate(pruned, data, x=data.x_test[:, report.kept_inputs])
    return metrics, report


SETUPS = {
    # The original demo: 13-20-15-1, 1500 full-batch steps.
    "boston": dict(hidden=(20, 15), epochs=1500, batch_size=None, metric="rmse",
                   fixed=1e-3, sweep=[1e-3, 3e-3, 1e-2], proximal_sweep=[1e-3, 3e-3, 5e-3]),
    # The paper's DIGITS setup: 64-40-20-10, batches of 300, 200 epochs, lambda 10^-3.5.
    "digits": dict(hidden=(40, 20), epochs=200, batch_size=300, metric="accuracy",
                   fixed=10**-3.5, sweep=[10**-3.5, 1e-3, 3e-3],
                   proximal_sweep=[10**-3.5, 1e-3, 2e-3]),
}


def sparsity_cases(setup, sweep_size):
    """(penalty, lambda, solver, preset) for every row of one data set."""
    sweep = setup["sweep"][:sweep_size]
    proximal_sweep = setup["proximal_sweep"][:sweep_size]
    cases = [("none", 0.0, "subgradient", None), ("l2", setup["fixed"], "subgradient", None),
             ("l1", setup["fixed"], "subgradient", None)]
    cases += [(penalty, strength, "subgradient", None)
              for penalty in ("gl", "sgl") for strength in sweep]
    cases += [(penalty, strength, "proximal", None)
              for penalty in ("gl", "sgl") for strength in proximal_sweep]
    return cases + [("compact", None, "proximal", "compact")]


def case_config(name, setup, epochs, seed, penalty, strength, solver, preset):
    base = dict(dataset=name, hidden=setup["hidden"], epochs=epochs,
                batch_size=setup["batch_size"], seed=seed)
    if preset:
        settings = PRESETS[preset][name]
        finetune = max(settings["finetune"] * epochs // setup["epochs"], 1)
        return Config(**base, preset=preset, **{**settings, "finetune": finetune})
    return Config(**base, solver=solver, **penalty_config(penalty, strength))


def sparsity(mode):
    from common.data import load_dataset

    size = SIZES[mode]
    seeds = list(range(size["seeds"]))
    rows = []
    for name in size["datasets"]:
        setup = SETUPS[name]
        epochs = max(setup["epochs"] // size["epoch_divisor"], 2)
        datasets = {seed: load_dataset(name, seed=seed) for seed in seeds}
        for penalty, strength, solver, preset in sparsity_cases(setup, size["sweep"]):
            runs = []
            for seed in seeds:
                config = case_config(name, setup, epochs, seed, penalty, strength, solver,
                                     preset)
                metrics, report = train_and_prune(datasets[seed], config)
                runs.append((metrics[setup["metric"]], report))
            values = [value for value, _ in runs]
            if preset:
                penalty = "sgl" if config.l1 else "gl"
            rows.append({
                "dataset": name, "penalty": penalty,
                "lambda": config.group or config.l1 or config.l2,
                "solver": config.solver, "preset": preset, "freeze_zeros": config.freeze_zeros,
                "l1": config.l1, "finetune_epochs": config.finetune,
                "seeds": len(seeds), "epochs": epochs, "metric": setup["metric"],
                "metric_mean": statistics.mean(values),
                "metric_sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                "inputs_kept_mean": statistics.mean(r.architecture_after[0] for _, r in runs),
                "inputs_total": runs[0][1].architecture_before[0],
                "hidden_kept_mean": statistics.mean(sum(r.architecture_after[1:-1])
                                                    for _, r in runs),
                "hidden_total": sum(runs[0][1].architecture_before[1:-1]),
                "params_after_mean": statistics.mean(r.params_after for _, r in runs)})
            row = rows[-1]
            print(f"  {name:7s} {penalty:7s} {row['lambda']:.5f} {row['solver']:11s}: "
                  f"{row['metric']} {row['metric_mean']:.4f}, inputs "
                  f"{row['inputs_kept_mean']:.1f}, hidden {row['hidden_kept_mean']:.1f}",
                  flush=True)
    return rows


def targets(rows):
    """The paper's claim made concrete: whether some row reaches each target, and the
    rows that come closest from either side."""
    def label(row):
        return f"{row['penalty']} {row['solver']} lambda {row['lambda']:.2e}"

    digits = [row for row in rows if row["dataset"] == "digits"]
    boston = [row for row in rows if row["dataset"] == "boston"]
    result = {}
    if digits:
        l2 = [row for row in digits if row["penalty"] == "l2"][0]["metric_mean"]
        sgl = [row for row in digits if row["l1"] > 0 and row["penalty"] != "l1"]
        small = [row for row in sgl if row["hidden_kept_mean"] <= 0.4 * row["hidden_total"]
                 and row["inputs_kept_mean"] <= 0.7 * row["inputs_total"]]
        accurate = [row for row in sgl if row["metric_mean"] >= l2 - 0.02]
        result["digits"] = {
            "target": "sgl keeps <= 40% hidden and <= 70% inputs at accuracy >= L2 - 0.02",
            "l2_accuracy": l2, "met": any(row in accurate for row in small),
            "smallest_within_2_points": min(
                ((label(row), row["hidden_kept_mean"] / row["hidden_total"],
                  row["inputs_kept_mean"] / row["inputs_total"], row["metric_mean"])
                 for row in accurate), key=lambda item: item[1], default=None),
            "most_accurate_that_small": max(
                ((label(row), row["metric_mean"]) for row in small),
                key=lambda item: item[1], default=None)}
    if boston:
        none = [row for row in boston if row["penalty"] == "none"][0]["metric_mean"]
        small = [row for row in boston if row["inputs_kept_mean"] + row["hidden_kept_mean"] <= 16]
        accurate = [row for row in boston if row["metric_mean"] <= 1.10 * none]
        result["boston"] = {
            "target": "<= 16 of 48 units at test RMSE <= 1.10 x unregularized",
            "unregularized_rmse": none, "met": any(row in accurate for row in small),
            "most_accurate_that_small": min(
                ((label(row), row["inputs_kept_mean"] + row["hidden_kept_mean"],
                  row["metric_mean"] / none) for row in small),
                key=lambda item: item[2], default=None),
            "smallest_within_10_percent": min(
                ((label(row), row["inputs_kept_mean"] + row["hidden_kept_mean"],
                  row["metric_mean"] / none) for row in accurate),
                key=lambda item: item[1], default=None)}
    return result


# ---------------------------------------------------------------- report
def markdown(results):
    speed_result = results["speed"]
    lines = ["| speed (Boston, default setup) | ms per step |", "|---|---|"]
    for key in ["tf_loop_ms_per_step", "plain_loop_ms_per_step", "keras_fit_ms_per_step",
                "naive_keras_ms_per_step", "tf_loop_proximal_ms_per_step"]:
        lines.append(f"| {key} | {speed_result[key]:.3f} |")
    for key, value in speed_result["ratios"].items():
        lines.append(f"| {key} | {value:.2f} |")
    lines += ["", "| dataset | penalty | lambda | solver | metric (mean ± sd) | inputs kept | "
              "hidden kept | params after |", "|---|---|---|---|---|---|---|---|"]
    for row in results["sparsity"]:
        solver = row["solver"] + (" + frozen zeros" if row["freeze_zeros"] else "") + (
            " (--preset compact)" if row["preset"] else "") + (
            f" + {row['finetune_epochs']} epochs fine-tuning" if row["finetune_epochs"] else "")
        strength = f"{row['lambda']:.2e}"
        if row["penalty"] == "sgl" and row.get("l1") not in (None, row["lambda"]):
            strength += f" (l1 {row['l1']:.2e})"
        lines.append(
            f"| {row['dataset']} | {row['penalty']} | {strength} | {solver} | "
            f"{row['metric']} "
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
    series = [("none", "subgradient", "o-"), ("l2", "subgradient", "o-"),
              ("l1", "subgradient", "o-"), ("gl", "subgradient", "o-"),
              ("sgl", "subgradient", "o-"), ("gl", "proximal", "s--"), ("sgl", "proximal", "s--")]
    for axis, dataset in zip(axes, SETUPS):
        rows = [row for row in results["sparsity"] if row["dataset"] == dataset]
        if not rows:
            axis.set_visible(False)
            continue
        for penalty, solver, style in series:
            chosen = [row for row in rows if row["penalty"] == penalty
                      and row["solver"] == solver and not row["preset"]]
            axis.plot([row["params_after_mean"] for row in chosen],
                      [row["metric_mean"] for row in chosen], style,
                      label=penalty if solver == "subgradient" else f"{penalty} proximal")
        compact = [row for row in rows if row["preset"]]
        axis.plot([row["params_after_mean"] for row in compact],
                  [row["metric_mean"] for row in compact], "k*", markersize=14,
                  label="--preset compact")
        axis.set_xscale("log")
        axis.set_xlabel("parameters after pruning (mean over seeds)")
        axis.set_ylabel(f"test {SETUPS[dataset]['metric']} after pruning")
        axis.set_title(dataset)
        axis.legend(fontsize="small")
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    args = parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    import_tensorflow_quietly()
    import keras
    import tensorflow as tf

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as logdir:
        results = {"mode": mode,
                   "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                               "python": platform.python_version()},
                   "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
                   "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                       timespec="seconds")}
        print("speed ...", flush=True)
        results["speed"] = speed(mode, logdir)
        print("end to end ...", flush=True)
        results["end_to_end"] = end_to_end(mode, logdir)
        print("scaling ...", flush=True)
        results["scaling"] = scaling(mode, logdir)
        print("sparsity ...", flush=True)
        results["sparsity"] = sparsity(mode)
    results["targets"] = targets(results["sparsity"])
    results["wall_seconds"] = time.perf_counter() - started
    text = json.dumps(results, indent=2) + "\n"
    (out / "results.json").write_text(text)
    if mode == "full":  # the run behind the README, committed as benchmarks/results/latest.json
        (out / "latest.json").write_text(text)
    (out / "results.md").write_text(markdown(results))
    plot(results, out / "sparsity.png")
    print(markdown(results))
    print(json.dumps({"ratios": results["speed"]["ratios"], "targets": results["targets"],
                      "wall_seconds": results["wall_seconds"]}, indent=2))
    return results


if __name__ == "__main__":
    main()
