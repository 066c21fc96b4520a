"""The training stages of a run: the epochs, the adaptive stage, the path and its folds.

A demo attaches a `PathRun` before training, calls `train` with its own way of training N
epochs (the GradientTape loop; fit), then `finish` for the run.json fields. Without --path
and --adaptive that is the demo's plain training. With --path the engine trains instead
(common.search.crossval, common.search.engine): the dense network first, then the path (common.search.path), and
with --cv the other folds beside the run's own, all of them in one compiled computation.
"""

from common.search.adaptive import kernel_regularizers, set_adaptive_weights
from common.search.crossval import choice_records, cv_records
from common.search.path import attach_scale, base_strength, carry_lambda, finish_path, path_epochs
from common.search.choose import PathSettings, cv_label, run_search


class PathRun:
    """The run's training stages inside a demo: attach it before training (with --path the
    penalty starts at 0), `train` with the demo's own training, then `finish`.

    `train` runs the epochs in the demo's loop (in two stages with --adaptive: half plain,
    half weighted); with --path the search trains instead (common.search.choose), dense network
    included. Without these flags it is the demo's plain training.
    """

    def __init__(self, config, data, model, build):
        self.config, self.data, self.model, self.build = config, data, model, build
        self.points, self.ended, self.stages = [], "not started", {}
        self.timing = [0.0, 0]  # the engine's seconds and steps, the calls that traced left out
        self.folds = []  # --cv: (PathPoints, held-out rows) per fold, the run's own first
        self.settings = None  # the path's PathSettings, once it runs
        self.scale = attach_scale(model) if config.path else None
        # Epochs per point, and the strength a path lambda replaces.
        self.point_epochs = path_epochs(config.path_epochs, config.epochs, config.eval_every)
        self.base = base_strength(config.group_strength, config.l1)

    @staticmethod
    def epochs_of(config):
        """The epochs the path's points train, all of them together (0 without --path)."""
        if not config.path:
            return 0
        num_points = len(config.path_lambdas or ()) or config.path_points
        return num_points * path_epochs(config.path_epochs, config.epochs, config.eval_every)

    def train(self, train_epochs, show=None, on_point=None, on_penalty_change=None,
              on_chunk=None):
        """`train_epochs(epochs)` trains the model in place (the demo's own loop) and returns
        False when it diverged; with --path the engine trains instead, dense network
        included, and `show(records)` shows its per-step records of the run's own network
        (rows of data loss, penalty, active units per layer) after each compiled call or
        path point; `on_penalty_change()` is called when the penalty's constants changed (a
        custom loop traces its step again); `on_chunk()` between two compiled calls of the
        engine (a signal check). Returns False when training diverged."""
        config, epochs = self.config, self.config.epochs
        if config.path:
            self.run(show, on_point, on_penalty_change, on_chunk)
            return self.ended != "diverged"
        if config.adaptive is not None:
            first = epochs // 2
            if not train_epochs(first):
                return False
            self._weigh_groups(on_penalty_change)
            epochs -= first
        return train_epochs(epochs)

    def _weigh_groups(self, on_penalty_change):
        set_adaptive_weights(self.model, self.config.adaptive)
        self.stages["adaptive_gamma"] = self.config.adaptive
        if on_penalty_change is not None:
            on_penalty_change()

    def run(self, show=None, on_point=None, on_penalty_change=None, on_chunk=None):
        """The path (common.search.choose.run_search): the run's own network is fold 0, and with
        --cv the other folds train beside it, from the same initial weights, the dense
        networks first, then each lambda on every fold before the next."""
        config = self.config
        self.settings = settings = PathSettings(
            group_strength=config.group_strength, l1=config.l1,
            lambdas=config.path_lambdas, points=config.path_points, folds=config.cv,
            epochs=config.epochs, point_epochs=self.point_epochs, lr=config.lr,
            batch_size=config.batch_size, seed=config.seed, threshold=config.threshold,
            freeze_zeros=config.freeze_zeros, finetune=config.finetune,
            patience=config.patience, adaptive=config.adaptive, settle=config.path_settle)
        template = self.build()  # a fresh network of the same settings lends its layers

        def adaptive_set():
            self.stages["adaptive_gamma"] = config.adaptive
            if on_penalty_change is not None:
                on_penalty_change()

        self.ended = "interrupted"  # until the path returns; a stop keeps the run's own fold
        self.folds = [(self.points, len(self.data.x_val))]
        self.ended, self.folds = run_search(self.model, self.data, template, settings,
                                            self.points, self.timing, show, on_point,
                                            adaptive_set, on_chunk)

    def finish(self):
        """The run.json fields of the path; the model then holds the selected weights, and
        its regularizers the selected strength."""
        strengths = [regularizer.group_strength
                     for _, regularizer in kernel_regularizers(self.model)]
        stages = {**self.stages, "layer_group_strengths": strengths} if self.stages else {}
        if not self.config.path:
            return stages
        cv, pooled, rule = {}, False, self.config.select
        repeats = self.settings.repeats if self.settings is not None else 1
        if self.config.cv:
            done = len(self.folds)
            pooled = done == self.config.cv * repeats
            cv = {"cv": {"folds": self.config.cv, "folds_done": done,
                         "fold_rows": [rows for _, rows in self.folds]}}
            if repeats > 1:
                cv["cv"]["repeats"] = repeats
            if not pooled:  # interrupted (or the path diverged): its own validation split chooses
                cv["cv"]["note"] = "not every fold finished: chosen on the run's own split"
        chosen_from = choice_records(self.data.task, self.folds, rule, pooled, repeats)
        if pooled:  # the folds' pooled records, computed once
            cv["cv"]["records"] = (cv_records(self.data.task, self.folds, repeats)
                                   if rule == "units" else chosen_from)
        chosen = finish_path(self.model, self.points, self.data.task, self.ended,
                             self.point_epochs, rule, self.config.max_units, chosen_from,
                             cv_label(self.config.cv, repeats) if pooled else None)
        if chosen["selected"] is not None and self.scale is not None:
            # The model carries the penalty it was chosen with (saved with --save-model).
            carry_lambda(self.model, chosen["selected"]["lambda"] / self.base)
            self.scale = None  # once: a second call finds the strengths folded in
        return {**stages, **cv, **chosen}
