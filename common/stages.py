"""The training stages of a run: the epochs, the adaptive stage, the path and its folds.

A demo attaches a `PathRun` before training, calls `train` with its own way of training N
epochs (the GradientTape loop; fit), then `finish` for the run.json fields. Without --path
and --adaptive that is the demo's plain training; with --path the dense network is
trained first, then the path (common.path); with --cv the other folds train beside it, each
lambda right after the run's own, all of them in one compiled computation (common.crossval).
"""

import sys

from common.adaptive import kernel_regularizers, scale_layers, set_adaptive_weights
from common.crossval import FoldPaths, cv_records
from common.data import fold_datasets
from common.model import build_model, make_regularizer
from common.path import (attach_scale, base_strength, finish_path, lambda_grid,
                         layer_lambda_max, path_epochs, run_path)


class PathRun:
    """The run's training stages inside a demo: attach it before training (with --path the
    penalty starts at 0), `train` with the demo's own training, then `finish`.

    `train` runs the epochs (in two stages with --adaptive: half plain, half weighted), then
    with --path the path (its dense start weighted with --adaptive, its layers scaled with
    --layer-scaling). Without these flags it is the demo's plain training.
    """

    def __init__(self, config, data, model):
        self.config, self.data, self.model = config, data, model
        self.points, self.ended, self.stages = [], "not started", {}
        self.folds = []  # --cv: (PathPoints, held-out rows) per fold, the run's own first
        self.initial_weights = model.get_weights() if config.cv else None
        self.scale = attach_scale(model) if config.path else None
        num_points = len(config.path_lambdas or ()) or config.path_points
        self.total_epochs = num_points * path_epochs(config) if config.path else 0

    def train(self, train_epochs, on_point=None, on_penalty_change=None, on_chunk=None):
        """`train_epochs(epochs)` trains the model in place and returns False when it
        diverged; `on_penalty_change()` is called when the penalty's constants changed (a
        custom loop traces its step again); `on_chunk()` between two compiled calls of the
        folds (a signal check). Returns False when training diverged."""
        config, epochs = self.config, self.config.epochs
        if config.adaptive is not None and not config.path:
            first = epochs // 2
            if not train_epochs(first):
                return False
            self._weigh_groups(on_penalty_change)
            epochs -= first
        if not train_epochs(epochs):
            return False
        self.run(train_epochs, on_point, on_penalty_change, on_chunk)
        return True

    def _weigh_groups(self, on_penalty_change):
        set_adaptive_weights(self.model, self.config.adaptive)
        self.stages["adaptive_gamma"] = self.config.adaptive
        if on_penalty_change is not None:
            on_penalty_change()

    def run(self, train_epochs, on_point=None, on_penalty_change=None, on_chunk=None):
        """The path from the trained dense network; `train_epochs` as for `train`."""
        if not self.config.path:
            return
        tops = None
        if self.config.adaptive is not None:
            self._weigh_groups(on_penalty_change)
        if self.config.layer_scaling == "lambda-max":
            tops = layer_lambda_max(self.model, self.data.x_train, self.data.y_train,
                                    self.data.task)
            self.stages["layer_lambda_max"] = tops
            scale_layers(self.model, tops)
            if on_penalty_change is not None:
                on_penalty_change()
        lambdas = lambda_grid(self.config, self.model, self.data, tops)
        folds = self.start_folds(on_chunk) if self.config.cv else None
        beside = None
        if folds is not None:  # each lambda on the other folds right after the run's own
            def beside(point):
                return folds.train_point(point.index, point.lam,
                                         point.lam / base_strength(self.config),
                                         path_epochs(self.config))
        self.ended = "interrupted"  # until run_path returns
        self.ended = run_path(self.model, self.data, self.config, self.scale, train_epochs,
                              self.points, lambdas, on_point, beside)
        if folds is not None and self.ended != "diverged":
            self.folds += [(points, len(fold.x_val))
                           for points, fold in zip(folds.points, folds.folds)]

    def start_folds(self, on_chunk=None):
        """--cv: the other folds' dense networks, all in one computation, each from the
        run's own initial weights (common.crossval.FoldPaths); None if one diverged."""
        config = self.config
        self.folds = [(self.points, len(self.data.x_val))]
        others = fold_datasets(self.data, config.cv, config.seed)
        print(f"cross-validation: folds 2 to {config.cv} ({len(others[0].x_train)} rows "
              f"each, scored on {len(others[0].x_val)}) train beside the path, together",
              file=sys.stderr, flush=True)
        # A fresh network of the same settings lends its layers (the run's own may carry
        # per-layer strengths of its own lambda_max scaling).
        template = build_model(self.data, config.hidden, make_regularizer(config))
        folds = FoldPaths(template, others, start_weights=self.initial_weights, lr=config.lr,
                          batch_size=config.batch_size, seed=config.seed,
                          threshold=config.threshold, freeze_zeros=config.freeze_zeros,
                          finetune=config.finetune, patience=config.patience,
                          on_chunk=on_chunk)
        if not folds.train_dense(config.epochs, config.adaptive,
                                 config.layer_scaling == "lambda-max"):
            return None
        return folds

    def finish(self):
        """The run.json fields of the path; the model then holds the selected weights."""
        strengths = [regularizer.group_strength
                     for _, regularizer in kernel_regularizers(self.model)]
        stages = {**self.stages, "layer_group_strengths": strengths} if self.stages else {}
        if not self.config.path:
            return stages
        cv, pooled = {}, None
        if self.config.cv:
            done = len(self.folds)
            cv = {"cv": {"folds": self.config.cv, "folds_done": done,
                         "fold_rows": [rows for _, rows in self.folds]}}
            if done == self.config.cv:
                pooled = cv_records(self.data.task, self.folds)
                cv["cv"]["records"] = pooled
            else:  # interrupted (or the path diverged): its own validation split chooses
                cv["cv"]["note"] = "not every fold finished: chosen on the run's own split"
        return {**stages, **cv, **finish_path(self.model, self.points, self.data, self.config,
                                              self.ended, pooled)}
