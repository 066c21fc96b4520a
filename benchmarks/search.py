"""How long the honest choice takes: `--preset compact` end to end, and one fold-step.

    python benchmarks/search.py                  # Boston, seeds 0-4: about 10 minutes on 2 cores
    python benchmarks/search.py --digits         # and DIGITS' preset, seed 0
    python benchmarks/search.py --seeds 1 --no-save   # a look, without touching latest.json

Three measurements, in one run on one machine:
- wall time of `python demo_tensorflow.py --preset compact --seed S` as a user waits (process
  start to exit), against a default `python demo_tensorflow.py` measured in the same run;
- what the preset chose (units, the pooled 1-SE pick, the test RMSE read once afterwards),
  paired with the same seed's unregularized network (the sparsity benchmark's baseline);
- one path fold-step of common.search.engine (K = 5 Boston folds, proximal solver, records
  included) against one step of the TF demo's `--solver proximal` loop, side by side.
Writes the result into benchmarks/results/latest.json under "search".
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIGITS = ["--dataset", "digits", "--hidden", "40", "20", "--batch-size", "300", "--epochs", "200"]


def run_demo(flags, logdir, command=("demo_tensorflow.py",), env=None):
    """One TF demo run in a fresh process: (wall seconds as a user waits, its run.json).
    `command`: what Python runs, the flags after it; `env`: added to the environment."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *command, *flags, "--logdir", logdir],
                          cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{flags} exited {done.returncode}: {done.stderr[-2000:]}")
    newest = max(Path(logdir).iterdir(), key=lambda path: path.stat().st_mtime)
    return wall, json.loads((newest / "run.json").read_text())


def preset_rows(seeds, data_flags, logdir):
    """The preset and the unregularized network of each seed; the default run's wall."""
    rows = []
    for seed in seeds:
        wall, summary = run_demo([*data_flags, "--preset", "compact", "--seed", str(seed)],
                                 logdir)
        _, plain = run_demo([*data_flags, "--group", "0", "--seed", str(seed)], logdir)
        metric = "accuracy" if summary["dataset"]["task"] == "classification" else "rmse"
        units = summary["units_after"]
        rows.append({
            "seed": seed, "wall_seconds": round(wall, 1),
            "run_wall_seconds": round(summary["wall_seconds"], 1),
            "points_trained": len(summary["path"]), "path_ended": summary["path_ended"],
            # Optimizer steps of the run's own fold (every fold trains as many), and the
            # engine's milliseconds per step of all folds together.
            "steps": summary["steps"], "engine_ms_per_step": summary["ms_per_step"],
            "point_steps": [point.get("steps") for point in summary["path"]],
            "pooled_points": len(summary["cv"].get("records", [])),
            "selected_lambda": summary["selected"]["lambda"],
            "cv_mean_units": summary["cv"]["records"][summary["selected"]["index"]]["total_units"]
            if "records" in summary["cv"] else None,
            "units": units["inputs"] + sum(units["hidden"]),
            "architecture": summary["pruned"]["architecture"],
            "test_" + metric: summary["test"][metric],
            "unregularized_test_" + metric: plain["test"][metric],
            "ratio_to_unregularized": summary["test"][metric] / plain["test"][metric]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def fold_step(rounds=3, steps=2500):
    """Milliseconds per fold-step of the engine (5 Boston folds, proximal, at a lambda that
    removes units) and per step of the TF demo's proximal loop, alternating, medians."""
    from common.backend import import_tensorflow_quietly
    from common.run.config import parse_config

    import_tensorflow_quietly()
    import demo_tensorflow
    from common.data.datasets import fold_datasets, load_dataset
    from common.search.engine import FoldTrainer
    from common.training.model import build_model
    from common.penalty import GroupSparse

    config = parse_config(["--solver", "proximal"])
    data = load_dataset("boston", 0, val_fraction=0.2)
    folds = [data, *fold_datasets(data, 5, 0)]
    model = build_model(data, config.hidden, [
        GroupSparse(group, l1=l1, l2=config.l2, proximal=config.solver == "proximal")
        for group, l1 in config.kernel_strengths()])
    trainer = FoldTrainer(model, [(fold.x_train, fold.y_train, fold.x_val, fold.y_val)
                                  for fold in folds], "regression", 1e-3, None, 0)
    started = time.perf_counter()
    trainer.train(trainer.chunk_steps, (0,), scale=0.3)  # the compile
    compile_seconds = time.perf_counter() - started
    engine, loop = [], []
    with tempfile.TemporaryDirectory() as logdir:
        for _ in range(rounds):
            started = time.perf_counter()
            trainer.train(steps, (1,), scale=0.3)
            engine.append(1000 * (time.perf_counter() - started) / (steps * len(folds)))
            summary = demo_tensorflow.main(["--solver", "proximal", "--epochs", str(steps),
                                            "--no-pictures", "--logdir", logdir])
            loop.append(summary["ms_per_step"])
    return {"folds": len(folds), "steps_per_round": steps, "rounds": rounds,
            "engine_ms_per_fold_step": statistics.median(engine),
            "tf_demo_proximal_ms_per_step": statistics.median(loop),
            "ratio": statistics.median(engine) / statistics.median(loop),
            "engine_compile_seconds": round(compile_seconds, 1), "traces": trainer.traces}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="Boston seeds 0 .. N-1")
    parser.add_argument("--digits", action="store_true", help="also DIGITS' preset, seed 0")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    results = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as logdir:
        defaults = [run_demo([], logdir)[0] for _ in range(3)]
        results["default_run_wall_seconds"] = round(statistics.median(defaults), 1)
        results["boston"] = preset_rows(range(args.seeds), [], logdir)
        if args.digits:
            results["digits"] = preset_rows([0], DIGITS, logdir)
    walls = [row["wall_seconds"] for row in results["boston"]]
    results["boston_preset_median_wall_seconds"] = statistics.median(walls)
    results["preset_over_default"] = statistics.median(walls) / results["default_run_wall_seconds"]
    results["boston_mean_units"] = statistics.mean(row["units"] for row in results["boston"])
    results["boston_mean_ratio"] = statistics.mean(row["ratio_to_unregularized"]
                                                   for row in results["boston"])
    results["fold_step"] = fold_step()
    print(json.dumps(results, indent=2))
    if not args.no_save:
        latest = ROOT / "benchmarks" / "results" / "latest.json"
        stored = json.loads(latest.read_text())
        stored["search"] = results
        latest.write_text(json.dumps(stored, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
