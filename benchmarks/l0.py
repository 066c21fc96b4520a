"""L0 gates on units (benchmarks.gates, Louizos et al. 2018) against the group Lasso preset, on
Boston, chosen as the preset chooses: 5-fold cross-validation, the 1-SE rule, test read once.

    python benchmarks/l0.py                 # seeds 0-4: about 8 minutes on 2 cores
    python benchmarks/l0.py --seeds 1 --no-save

The network of the demos, 13-20-15-1, with a UnitGates layer before each Dense layer (the
inputs and both hidden layers gated). For each lambda of a geometric grid every fold trains
from the same initial weights: Adam on the weights (lr 1e-3) and on the gates' log_alpha
(lr 1e-2, so a gate can close within the budget), full batch, STEPS steps of
    mean squared error + lambda * expected number of open gates,
then the gates are folded into the Dense kernels (benchmarks.gates.fold_gates), the units
counted, and the pruned network (common.shrink.pruning) scored on the fold's validation rows. The
folds' scores are pooled per lambda (common.search.crossval.pooled) and the 1-SE rule picks
(common.search.path.select_point); the run's own fold's pruned network at that lambda has its test
RMSE read once, then paired with the same seed's unregularized TF demo run. Written to
latest.json under "variants" → "boston" → "l0 gates".
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.backend import import_tensorflow_quietly  # noqa: E402
from search import run_demo  # noqa: E402  (this folder: run as a script)

# 0 (the dense network, point 0 as on the path), then where units go: at 1e-4 a few, at 1e-2
# all but two or three (seed 0's own split).
LAMBDAS = [0.0, *[float(value) for value in np.geomspace(1e-4, 1e-2, 13)]]
STEPS = 3000
HIDDEN = (20, 15)


def fold_trainer(fold, seed):
    """A gated network for one fold and `train(lam)`: from the same initial weights each time,
    STEPS full-batch steps in one graph call; returns the plain (folded) network."""
    import keras
    import tensorflow as tf

    from benchmarks.gates import UnitGates, fold_gates, gates_l0

    keras.utils.set_random_seed(seed)
    layers = [keras.Input((fold.x_train.shape[1],))]
    for position, width in enumerate([*HIDDEN, 1]):  # each gate layer its own noise stream
        layers += [UnitGates(seed=1000 * seed + position),
                   keras.layers.Dense(width, "relu" if position < len(HIDDEN) else None)]
    model = keras.Sequential(layers)
    gates = [layer.log_alpha for layer in model.layers if isinstance(layer, UnitGates)]
    weights = [variable for variable in model.trainable_variables
               if all(variable is not gate for gate in gates)]
    start = [variable.numpy() for variable in model.variables]
    adam, gate_adam = keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-2)
    adam.build(weights)
    gate_adam.build(gates)
    lam = tf.Variable(0.0)
    x, y = tf.constant(fold.x_train), tf.constant(fold.y_train)

    @tf.function
    def steps():
        for _ in tf.range(STEPS):
            with tf.GradientTape() as tape:
                data_loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
                loss = data_loss + lam * gates_l0(model)  # the L0 penalty enters here
            gradients = tape.gradient(loss, weights + gates)
            adam.apply(gradients[:len(weights)], weights)
            gate_adam.apply(gradients[len(weights):], gates)

    def train(value):
        for variable, initial in zip(model.variables, start):
            variable.assign(initial)
        for variable in adam.variables + gate_adam.variables:  # Adam's state, not its rate
            if not variable.path.endswith("learning_rate"):
                variable.assign(tf.zeros_like(variable))
        lam.assign(value)
        steps()
        return fold_gates(model)

    return train


def pruned_score(plain, data, x, y):
    """The pruned network (rows at or under the threshold removed, as counted) and its
    (RMSE, SE) on rows (x, y)."""
    from common.training.model import metric_and_standard_error
    from common.shrink.pruning import prune_model

    pruned, report = prune_model(plain, 1e-3, data.feature_names)
    predictions = pruned.predict(x[:, report.kept_inputs], verbose=0)
    return report, metric_and_standard_error(data, y, predictions)


def seed_row(seed, plain_rmse):
    from common.shrink.counting import count_active_units
    from common.search.crossval import pooled
    from common.data.datasets import fold_datasets, load_dataset
    from common.search.path import select_point

    started = time.perf_counter()
    data = load_dataset("boston", seed, val_fraction=0.2)
    folds = [data, *fold_datasets(data, 5, seed)]
    scores = [[] for _ in LAMBDAS]  # per lambda, per fold: (rmse, se, rows, units)
    own = []
    for number, fold in enumerate(folds):
        train = fold_trainer(fold, seed)
        for index, lam in enumerate(LAMBDAS):
            plain = train(lam)
            units = count_active_units(plain, 1e-3).total
            _, (rmse, se) = pruned_score(plain, fold, fold.x_val, fold.y_val)
            scores[index].append((rmse, se, len(fold.x_val), units))
            if number == 0:
                own.append(plain)
    records = []
    for index, lam in enumerate(LAMBDAS):
        metric, se = pooled("regression", [score[:3] for score in scores[index]])
        records.append({"index": index, "lambda": lam, "val_metric": metric, "val_se": se,
                        "total_units": float(np.mean([score[3] for score in scores[index]]))})
    chosen, _ = select_point(records, "regression", "1se")
    report, (test_rmse, _) = pruned_score(own[chosen], data, data.x_test, data.y_test)
    units = count_active_units(own[chosen], 1e-3)
    row = {"seed": seed, "seconds": round(time.perf_counter() - started, 1),
           "architecture": report.architecture, "units": units.total,
           "cv_units": records[chosen]["total_units"], "lambda": LAMBDAS[chosen],
           "cv_rmse": records[chosen]["val_metric"],
           "cv_over_dense": records[chosen]["val_metric"] / records[0]["val_metric"],
           "test_rmse": test_rmse, "ratio_to_unregularized": test_rmse / plain_rmse,
           "pooled": [[record["index"], record["total_units"], round(record["val_metric"], 5),
                       round(record["val_se"], 5)] for record in records]}
    print(json.dumps({key: value for key, value in row.items() if key != "pooled"}), flush=True)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as logdir:
        plain = {seed: run_demo(["--group", "0", "--seed", str(seed)], logdir)[1]["test"]["rmse"]
                 for seed in range(args.seeds)}
    import_tensorflow_quietly()
    rows = [seed_row(seed, plain[seed]) for seed in range(args.seeds)]
    result = {"date": time.strftime("%Y-%m-%d"), "steps": STEPS, "lambdas": LAMBDAS,
              "rows": rows,
              "mean_units": statistics.mean(row["units"] for row in rows),
              "mean_cv_units": statistics.mean(row["cv_units"] for row in rows),
              "mean_cv_over_dense": statistics.mean(row["cv_over_dense"] for row in rows),
              "mean_ratio_to_unregularized": statistics.mean(row["ratio_to_unregularized"]
                                                             for row in rows)}
    print(json.dumps({key: value for key, value in result.items() if key != "rows"}), flush=True)
    if not args.no_save:
        latest = ROOT / "benchmarks" / "results" / "latest.json"
        stored = json.loads(latest.read_text())
        stored.setdefault("variants", {}).setdefault("boston", {})["l0 gates"] = result
        latest.write_text(json.dumps(stored, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
