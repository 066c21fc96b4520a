"""Choosing the path's lambda by K-fold cross-validation (--cv K), not one validation split.

    python demo_tensorflow.py --preset compact --cv 5

One validation split of Boston holds 76 rows, and the 1-SE rule on so few rows is noisy:
the same settings chose 9 units on one seed and 39 on another. With --cv K the training
rows are cut into K folds (the run's own validation split, 1/K of them, is the first); the
run's path is trained as usual, then the same lambdas again on each other fold, from the
same initial weights, each fold scored on its own held-out rows. Every training row is
then scored exactly once at each lambda, and `cv_records` pools the folds' scores into one
metric per lambda with the same per-row standard error as a single split, over K times the
rows. The 1-SE rule (or --select / --max-units) runs on the pooled records; the network
kept is the run's own at the chosen lambda. The test split is never read here.

The other folds train with Keras' fit whichever demo runs them (no summaries, no pictures,
no strategy): K times the path's time in all.
"""

import dataclasses
import math

import numpy as np


def fold_path(config, data, lambdas):
    """Train the path with `lambdas` on one fold's `data` with Keras' fit, as the Keras demo
    does but quietly; returns its PathPoints (without their weights)."""
    import keras

    from common.batches import count_epoch_steps, epoch_batches
    from common.fitting import fit_in_chunks
    from common.model import build_model, loss_name, make_optimizer, make_regularizer
    from common.path import PathRun

    config = dataclasses.replace(config, path_lambdas=tuple(lambdas), cv=None)
    keras.utils.set_random_seed(config.seed)  # the run's own initial weights
    regularizer = make_regularizer(config)
    model = build_model(data, config.hidden, regularizer)
    compile_args = dict(optimizer=make_optimizer(config, regularizer), loss=loss_name(data.task))
    batches = epoch_batches(data.x_train, data.y_train, config.batch_size, config.seed).repeat()
    steps = count_epoch_steps(len(data.x_train), config.batch_size)
    losses = []
    last_loss = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: losses.append(logs.get("loss", math.nan)))

    def train_epochs(epochs):
        fit_in_chunks(model, batches, epochs, steps, min(config.eval_every, epochs),
                      compile_args, callbacks=[keras.callbacks.TerminateOnNaN(), last_loss])
        return bool(losses) and math.isfinite(losses[-1])

    path = PathRun(config, data, model)
    path.train(train_epochs)
    for point in path.points:
        point.weights = None
    return path.points


def pooled(task, scores):
    """One metric and its standard error from the folds' (metric, SE, rows), exactly what
    common.model.metric_and_standard_error gives on all their rows together. Accuracy: the
    share of hits, SE sqrt(p (1 - p) / n). RMSE: each fold's (RMSE, SE) gives back its
    rows' mean squared error m_k and their variance v_k (SE(MSE) = 2 RMSE SE =
    sqrt(v_k / n_k)), hence their sum of squares (n_k - 1) v_k + n_k m_k^2; the pooled
    rows' MSE and variance follow, and the delta method again."""
    total = sum(rows for _, _, rows in scores)
    if task == "classification":
        accuracy = sum(metric * rows for metric, _, rows in scores) / total
        return accuracy, math.sqrt(accuracy * (1 - accuracy) / total)
    mse = sum(metric ** 2 * rows for metric, _, rows in scores) / total
    squares = sum((rows - 1) * (2 * metric * se) ** 2 * rows + rows * metric ** 4
                  for metric, se, rows in scores)
    variance = max(squares - total * mse ** 2, 0.0) / (total - 1) if total > 1 else 0.0
    rmse = math.sqrt(mse)
    return rmse, math.sqrt(variance / total) / (2 * rmse) if rmse > 0 else 0.0


def cv_records(task, folds):
    """The pooled records `select_point` chooses among, one per path index that every fold
    trained: `folds` is a list of (PathPoints, held-out rows), the run's own fold first.

    The metric and SE are `pooled`; units, parameters and the validation loss are the
    folds' means (the loss weighted by rows); lambda is the run's own."""
    total = sum(rows for _, rows in folds)
    length = min(len(points) for points, _ in folds)
    records = []
    for index in range(length):
        points = [(fold_points[index], rows) for fold_points, rows in folds]
        metric, se = pooled(task, [(point.val_metric, point.val_se, rows)
                                   for point, rows in points])
        own = folds[0][0][index]
        records.append({
            "index": index, "lambda": own.lam, "val_metric": metric, "val_se": se,
            "total_units": float(np.mean([point.total_units for point, _ in points])),
            "params": float(np.mean([point.params for point, _ in points])),
            "val_loss": float(np.sum([point.val_loss * rows for point, rows in points]) / total),
            "fold_total_units": [point.total_units for point, _ in points],
            "fold_val_metrics": [point.val_metric for point, _ in points]})
    return records
