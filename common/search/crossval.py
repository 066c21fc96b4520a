"""Choosing the path's lambda by K-fold cross-validation (--cv K), not one validation split.

    python demo_tensorflow.py --preset compact --cv 5

One validation split of Boston holds 76 rows, and the 1-SE rule on so few rows is noisy:
the same settings chose 9 units on one seed and 39 on another. With --cv K the training
rows are cut into K folds (the run's own validation split, 1/K of them, is the first), and
the same lambdas are trained on each fold from the same initial weights, each fold scored
on its own held-out rows. Every training row is then scored exactly once at each lambda (R
times with the library's repeated cross-validation, `repeats`), and `cv_records` pools the
folds' scores into one metric per lambda with the same per-row standard error as a single
split, over K times the rows. The 1-SE rule (or --select / --max-units) runs on the pooled
records; the network kept is the run's own at the chosen lambda. The test split is never
read here.

`FoldPaths` trains the path's folds together, whichever demo runs: the run's own network
(fold 0) and the other K - 1, dense stage included, all K in one compiled computation
(common.search.engine), each lambda on every fold before the next, fine-tuning included (no
summaries, no pictures, no strategy). Each fold is still a separate run: its own rows,
Adam, proximal step, adaptive weights and counts. The path's stop rule on the validation
loss reads the pooled losses (one fold's held-out rows are too few to end everyone's path),
and no fold trains a point the pooled records cannot use.
"""

import math

import keras
import numpy as np

from common.shrink.counting import count_active_units
from common.training.batches import DENSE, FINETUNE, POINT, count_epoch_steps
from common.search.engine import FoldTrainer, finite
from common.training.model import metric_and_standard_error, row_losses
from common.search.path import PathPoint
from common.penalty.penalties import adaptive_weights
from common.shrink.pruning import prune_model


class FoldPaths:
    """The folds of a path trained together in one computation (common.search.engine): the run's
    own (fold 0, which keeps each point's weights) and, with --cv, the other K - 1.

    `model` lends its layers and GroupSparse settings and is not changed; `folds` are
    Datasets with their own validation rows. `train_dense` trains the dense networks of the
    folds, the run's own included, from `start_weights` (the run's initial weights);
    `train_point` then trains and measures every fold at the next lambda, as the path has
    always measured a network (pruned, fine-tuned `finetune` epochs with early stopping after
    `patience`, scored on the fold's validation rows, cross-fitted: held_out_predictions).
    `on_chunk()` runs between compiled calls (a signal check). `points` holds each fold's
    PathPoints and `records` each fold's per-step records of the last point."""

    def __init__(self, model, folds, *, start_weights, lr, batch_size, seed, threshold,
                 freeze_zeros=False, finetune=0, patience=None, settle=None, on_chunk=None,
                 xla=True):
        self.folds, self.threshold, self.freeze_zeros = folds, threshold, freeze_zeros
        self.finetune, self.patience, self.settle = finetune, patience, settle
        self.trainer = FoldTrainer(model, [(fold.x_train, fold.y_train, fold.x_val, fold.y_val)
                                           for fold in folds], folds[0].task, lr, batch_size,
                                   seed, threshold, start_weights=start_weights, xla=xla)
        self.scratch = keras.models.clone_model(model)  # counts and prunes a fold's weights
        self.points, self.records = [[] for _ in folds], [None] * len(folds)
        self.on_chunk = (lambda steps, records: on_chunk()) if on_chunk else None

    def train_dense(self, epochs, adaptive=None, trained=(), show=None):
        """The dense network of every fold but those in `trained`, from `start_weights`, then,
        unless one diverged, every fold's adaptive weights (1 / ||w_g||**adaptive).
        `show(records)` gets the run's own fold's records (rows of data loss, penalty and
        units per layer) after each compiled call. Returns the folds that diverged (none: an
        empty list)."""
        trainer = self.trainer
        folds = [fold not in trained for fold in range(len(self.folds))]

        def shown(steps, records):
            if show is not None and folds[0]:
                show(records[0])
            if self.on_chunk is not None:
                self.on_chunk(steps, records)
            return finite(records[:1])  # the run's own network diverged: no need to go on

        records = trainer.train(epochs, (DENSE,), freeze_zeros=self.freeze_zeros,
                                on_chunk=shown, folds=folds) if any(folds) else []
        if folds[0]:
            self.records = records  # point 0's steps
        broken = [fold for fold, rows in enumerate(records) if not finite([rows])]
        if adaptive is not None and not broken:
            for fold in range(len(self.folds)):
                trainer.set_group_weights(fold, [adaptive_weights(kernel, adaptive)
                                                 for kernel in trainer.kernels(fold)])
        return broken

    def train_point(self, index, lam, scale, epochs):
        """Point `index` of the path on every fold: `epochs` epochs at strength scale `scale`
        (none for point 0, the dense network), then measured. Returns None, or why the path
        ends here: "diverged" (the run's own fold) or a fold that diverged. The stop rule on
        the validation loss is the caller's (common.search.path.stop_reason, on pooled losses)."""
        if index > 0:
            self.records = self.trainer.train(epochs, (POINT, index), scale=scale,
                                              freeze_zeros=self.freeze_zeros,
                                              on_chunk=self._point_chunk())
            broken = [fold for fold, records in enumerate(self.records) if not finite([records])]
            if broken:
                return "diverged" if broken[0] == 0 else \
                    f"cross-validation fold {broken[0] + 1} of {len(self.folds)} diverged"
        for fold_points, point in zip(self.points, self._measure(index, lam)):
            fold_points.append(point)
        return None

    def _point_chunk(self):
        """What runs between a point's compiled calls: the caller's check and, with
        `settle`, the end of the point once it has settled (point_settled), at an epoch's end."""
        if not self.settle:
            return self.on_chunk
        epoch = max(count_epoch_steps(rows, self.trainer.batch_size) for rows in self.trainer.rows)
        before = []  # per fold: (mean objective, units) of the previous compiled call

        def on_chunk(steps, records):
            if self.on_chunk is not None and self.on_chunk(steps, records) is False:
                return False
            done = (bool(before) and steps % epoch == 0
                    and point_settled(records, before, self.settle))
            before[:] = [(float(np.mean(rows[:, 0] + rows[:, 1])), rows[-1, 2:]) if len(rows)
                         else (float("nan"), None) for rows in records]
            return not done

        return on_chunk

    def _measure(self, index, lam):
        trainer, scratch = self.trainer, self.scratch
        weights = [trainer.weights(fold) for fold in range(len(self.folds))]
        predicted = self.held_out_predictions(weights, index)
        points = []
        for fold, data in enumerate(self.folds):
            scratch.set_weights(weights[fold])
            counts = count_active_units(scratch, self.threshold)
            _, report = prune_model(scratch, self.threshold, data.feature_names, build=False)
            predictions = predicted[fold]
            metric, se = metric_and_standard_error(data, data.y_val, predictions)
            loss = float(np.mean(keras.ops.convert_to_numpy(
                row_losses(data.task, data.y_val, predictions))))
            steps = len(self.records[fold]) if self.records[fold] is not None else None
            points.append(PathPoint(index, lam, counts.as_dict(), counts.total,
                                    report.params_after, metric, se, loss,
                                    weights[fold] if fold == 0 else None, steps))
        return points

    def held_out_predictions(self, weights, index):
        """Each fold's predictions for its validation rows from its pruned network (`weights`
        per fold), fine-tuned first if `finetune` is set. With early stopping (`patience`) no
        row is predicted by a network whose stopping read it: the rows are split in two
        halves (alternate rows: first_half), the network fine-tuned twice, stopping once on
        each half, and each half predicted by the run that stopped on the other
        (cross-fitting: twice the fine-tuning steps, every validation row still scored)."""
        trainer, folds = self.trainer, self.folds

        def scored(stop_rows=None):  # every fold's pruned network, fine-tuned if asked
            if not self.finetune:
                return [trainer.masked(fold_weights, self.threshold)[0] for fold_weights in weights]
            return trainer.finetune(weights, self.finetune, (FINETUNE, index), self.threshold,
                                    self.patience, self.on_chunk, stop_rows)

        if not (self.finetune and self.patience):
            networks = scored()
            return [trainer.predict(fold, data.x_val, networks[fold])
                    for fold, data in enumerate(folds)]
        first = [first_half(len(data.x_val)) for data in folds]
        stopped_first, stopped_second = scored(first), scored([1.0 - half for half in first])
        predicted = []
        for fold, data in enumerate(folds):
            for_second = trainer.predict(fold, data.x_val, stopped_first[fold])
            for_first = trainer.predict(fold, data.x_val, stopped_second[fold])
            in_first = first[fold].astype(bool).reshape((-1,) + (1,) * (for_first.ndim - 1))
            predicted.append(np.where(in_first, for_first, for_second))
        return predicted


def first_half(rows):
    """The first of a validation split's two halves for cross-fitted scoring: a 0/1 vector
    over its rows, 1 on rows 0, 2, 4, ... (the second half is the rest). A split of one row
    leaves the second half empty: its run stops after `patience` on a constant loss."""
    return (np.arange(rows) % 2 == 0).astype(np.float32)


def point_settled(records, before, tolerance):
    """Whether a path point has settled: in the last compiled call's records (one array per
    fold, rows of data loss, penalty and units per layer after each step) no fold's units
    changed, from the call before's last step on, and each fold's mean objective (data loss +
    penalty) moved by at most `tolerance` times itself: |mean - previous| <= tolerance * |mean|.
    `before`: per fold, (mean objective, units after the last step) of the call before.
    Minibatch losses are noisy step to step; a call's mean over hundreds of steps is not."""
    for rows, (previous, units) in zip(records, before):
        if len(rows) == 0 or units is None or np.any(rows[:, 2:] != units):
            return False
        mean = float(np.mean(rows[:, 0] + rows[:, 1]))
        if not abs(mean - previous) <= tolerance * abs(mean):
            return False
    return True


def pooled(task, scores):
    """One metric and its standard error from the folds' (metric, SE, rows), exactly what
    common.training.model.metric_and_standard_error gives on all their rows together. Accuracy: the
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


def pooled_repeats(task, scores, repeats=1):
    """`pooled` over the folds' (metric, SE, rows) of `repeats` cross-validations (each K
    consecutive folds, every row scored once per repeat): the metric over all of them (the
    repeats' mean for accuracy, their mean squared error's root for RMSE) and the mean of
    the repeats' SEs. A repeat scores the same rows again, so its errors are not independent
    of the first's: the SE is not divided by sqrt(repeats). Averaging steadies the curve the
    1-SE rule reads, whose noisy minimum otherwise sets the band too low."""
    metric, se = pooled(task, scores)
    if repeats == 1:
        return metric, se
    size = len(scores) // repeats
    return metric, float(np.mean([pooled(task, scores[start:start + size])[1]
                                  for start in range(0, len(scores), size)]))


def cv_records(task, folds, repeats=1):
    """The pooled records `select_point` chooses among, one per path index that every fold
    trained: `folds` is a list of (PathPoints, held-out rows), the run's own fold first
    (with `repeats`, each cross-validation's K folds in turn).

    The metric and SE are `pooled_repeats`; units, parameters and the validation loss are
    the folds' means (the loss weighted by rows); lambda is the run's own."""
    total = sum(rows for _, rows in folds)
    length = min(len(points) for points, _ in folds)
    records = []
    for index in range(length):
        points = [(fold_points[index], rows) for fold_points, rows in folds]
        metric, se = pooled_repeats(task, [(point.val_metric, point.val_se, rows)
                                           for point, rows in points], repeats)
        own = folds[0][0][index]
        records.append({
            "index": index, "lambda": own.lam, "val_metric": metric, "val_se": se,
            "total_units": float(np.mean([point.total_units for point, _ in points])),
            "params": float(np.mean([point.params for point, _ in points])),
            "val_loss": float(np.sum([point.val_loss * rows for point, rows in points]) / total),
            "fold_total_units": [point.total_units for point, _ in points],
            "fold_val_metrics": [point.val_metric for point, _ in points],
            "fold_val_ses": [point.val_se for point, _ in points]})
    return records


def budget_records(task, folds, repeats=1):
    """The records `--select units` chooses among: one per unit budget B, a distinct number
    of units among the run's own fold's points (`folds`: (PathPoints, held-out rows) as for
    cv_records; one fold without --cv). At each budget every fold contributes its path's
    first point with at most B units, the point that fold's lambdas reached B at, found by
    its units alone, never by its score; their scores are pooled as cv_records pools a
    lambda's. Folds align by network size, not by lambda index: at one lambda, one fold may
    keep 12 units and another 25. `index` and `lambda` are the run's own point's, the one
    kept if B is chosen; budgets that some fold never reached are left out. `repeats`: as
    for cv_records."""
    length = min(len(points) for points, _ in folds)
    records = []
    for budget in sorted({point.total_units for point in folds[0][0][:length]}, reverse=True):
        reached = [next((point for point in points[:length] if point.total_units <= budget),
                        None) for points, _ in folds]
        if None in reached:
            continue
        metric, se = pooled_repeats(task, [(point.val_metric, point.val_se, rows)
                                           for point, (_, rows) in zip(reached, folds)],
                                    repeats)
        records.append({
            "index": reached[0].index, "lambda": reached[0].lam, "total_units": budget,
            "val_metric": metric, "val_se": se,
            "fold_indices": [point.index for point in reached],
            "fold_total_units": [point.total_units for point in reached],
            "fold_val_metrics": [point.val_metric for point in reached]})
    return records


def choice_records(task, folds, rule, cross_validated, repeats=1):
    """What the path's rule chooses among (common.search.path.finish_path's `chosen_from`): unit
    budgets for rule "units" (budget_records, over every fold if `cross_validated`, else
    the run's own), the folds' pooled records if `cross_validated`, else None (the run's
    own points). `repeats`: the cross-validations `folds` holds, one after the other."""
    if not cross_validated:
        repeats, folds = 1, folds[:1]
    if rule == "units":
        return budget_records(task, folds, repeats)
    return cv_records(task, folds, repeats) if cross_validated else None
