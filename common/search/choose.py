"""The lambda path as one search, for the demos' network or your own: `choose_lambda`.

    from common.search.choose import choose_lambda
    found = choose_lambda(build, x, y, folds=5, points=20, epochs=1500, point_epochs=1500)
    found.model, found.pruned, found.report.architecture, found.selected["lambda"]

`build()` returns a fresh, uncompiled chain of Dense layers whose kernels carry GroupSparse
(proximal=True for exact zeros); their strengths are the base a path lambda scales (the
largest one becomes lambda, the others keep their ratio to it). `choose_lambda` carves a
validation split from (x, y), trains the dense network and the path on it and, with
`folds`, on K - 1 more folds beside it (and with `repeats`, R - 1 more cuts into K folds;
common.search.engine, one compiled computation), picks a point by the 1-SE rule (or `rule="min"`,
`"units"`, `max_units`, `tolerance`: see common.search.path.select_point) on the pooled validation
scores and returns the chosen network and its pruned copy. It reads no test split: keep
yours apart and evaluate `found.pruned` on it once, afterwards.

`run_search` is the search itself, which the demos' run skeleton (common.run.stages.PathRun)
calls with its hooks (show the records, keep each point, check for signals); it writes no
files and handles no signals.
"""

import dataclasses
import sys

import numpy as np

from common.search.adaptive import kernel_regularizers, set_adaptive_weights
from common.training.batches import count_epoch_steps
from common.search.crossval import FoldPaths, choice_records, cv_records
from common.data.datasets import Dataset, fold_datasets, repeated_folds
from common.search.engine import XLA_FOLD_STEPS
from common.search.path import base_strength, carry_lambda, finish_path, lambda_grid, run_path


@dataclasses.dataclass
class PathSettings:
    """What a path search trains: the strengths a lambda replaces (`group_strength`, `l1`:
    the largest), the grid (`lambdas`, or `points` up to lambda_max), `folds` (K-fold
    cross-validation; None: the validation split alone), the dense stage's `epochs` and each
    point's `point_epochs`, Adam's `lr`, `batch_size` (None: full batch), `seed`, the unit
    `threshold`, `freeze_zeros`, per-point fine-tuning (`finetune` epochs, early stopping
    after `patience`), `adaptive` (gamma of the adaptive group Lasso, or None) and `settle`
    (a point ends early once its units and objective have settled to this relative change
    over one compiled call, common.search.crossval.point_settled; None: every point trains
    `point_epochs`) and `repeats` (with `folds`: repeated cross-validation, that many cuts
    into `folds` folds, common.data.datasets.repeated_folds; the fold-steps grow as many times)."""
    group_strength: float
    l1: float = 0.0
    lambdas: list | None = None
    points: int = 20
    folds: int | None = None
    epochs: int = 1500
    point_epochs: int = 100
    lr: float = 1e-3
    batch_size: int | None = None
    seed: int = 0
    threshold: float = 1e-3
    freeze_zeros: bool = False
    finetune: int = 0
    patience: int | None = None
    adaptive: float | None = None
    settle: float | None = None
    repeats: int = 1

    def __post_init__(self):
        for name in ("points", "epochs", "point_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1, got {value!r}")
        if self.folds is not None and (isinstance(self.folds, bool) or not isinstance(
                self.folds, (int, np.integer)) or self.folds < 2):
            raise ValueError(f"folds must be None or a whole number of at least 2, got "
                             f"{self.folds!r}")
        if not isinstance(self.finetune, (int, np.integer)) or self.finetune < 0 or (
                self.patience is not None and self.patience < 1):
            raise ValueError(f"finetune must be at least 0 and patience None or at least 1, got "
                             f"finetune={self.finetune!r}, patience={self.patience!r}")
        if self.repeats < 1 or (self.repeats > 1 and not self.folds):
            raise ValueError(f"repeats must be 1, or more with folds (repeated cross-validation), "
                             f"got repeats={self.repeats} with folds={self.folds}")


def run_search(model, data, template, settings, points, timing, show=None, on_point=None,
               on_adaptive=None, on_chunk=None):
    """The path on `data` (a Dataset with its validation split) from `model`'s weights:
    the dense networks of every fold (the run's own is fold 0), then each lambda on every
    fold before the next, in one compiled computation (common.search.crossval.FoldPaths).
    `template` is a fresh network of the same settings that lends its layers. The run's
    own PathPoints are appended to `points` as they are kept (a stop keeps the finished
    ones), the engine's (seconds, steps) added to `timing`, and `model` holds the last
    network trained (the chosen one is set by finish_path). Hooks: `show(records)` after
    each compiled call of the dense stage and each point, with the model at their end;
    `on_point(point)`; `on_adaptive()` once the adaptive weights are set on `model`;
    `on_chunk()` between compiled calls. Returns (why the path ended, the folds as
    (PathPoints, held-out rows), the run's own first)."""
    others = fold_datasets(data, settings.folds, settings.seed) if settings.folds else []
    if others:
        print(f"cross-validation: folds 2 to {settings.folds} ({len(others[0].x_train)} rows "
              f"each, scored on {len(others[0].x_val)}) train beside the run's own, "
              "together", file=sys.stderr, flush=True)
        for repeat in range(1, settings.repeats):
            others += repeated_folds(data, settings.folds, settings.seed, repeat)
        if settings.repeats > 1:
            print(f"repeated: {settings.repeats - 1} more cuts into {settings.folds} folds "
                  "train beside them", file=sys.stderr, flush=True)
    start_weights = model.get_weights()
    num_points = len(settings.lambdas or ()) or settings.points
    steps = count_epoch_steps(len(data.x_train), settings.batch_size)
    base = base_strength(settings.group_strength, settings.l1)

    def start(folds):
        tuning = settings.finetune * (2 if settings.patience else 1)  # cross-fitted: twice
        fold_steps = len(folds) * steps * (settings.epochs + (num_points + 1) * (
            settings.point_epochs + tuning))
        search = FoldPaths(
            template, folds, start_weights=start_weights, lr=settings.lr,
            batch_size=settings.batch_size, seed=settings.seed, threshold=settings.threshold,
            freeze_zeros=settings.freeze_zeros, finetune=settings.finetune,
            patience=settings.patience, settle=settings.settle, on_chunk=on_chunk,
            xla=fold_steps >= XLA_FOLD_STEPS)
        search.trainer.timing = timing
        return search

    search = start([data, *others])

    def dense_shown(records):  # the caller shows the network the model holds
        model.set_weights(search.trainer.weights(0))
        if show is not None:
            show(records)

    try:
        broken = search.train_dense(settings.epochs, settings.adaptive, show=dense_shown)
    finally:  # the run's own dense network, however far it got
        model.set_weights(search.trainer.weights(0))
    if 0 in broken:  # the run's own dense network diverged (the records shown say so)
        return "diverged", [(points, len(data.x_val))]
    if broken:  # another fold's dense network diverged: the run's own split chooses
        print(f"cross-validation fold {broken[0] + 1} of {len(others) + 1}'s dense network "
              "diverged: the run's own validation split chooses", file=sys.stderr)
        others, trained = [], search.trainer
        search = start([data])
        search.trainer.set_weights(0, trained.weights(0))
        search.trainer.set_optimizer_state(0, *trained.optimizer_state(0))
        search.train_dense(settings.epochs, settings.adaptive, trained=(0,))
    if settings.adaptive is not None:
        set_adaptive_weights(model, settings.adaptive)
        if on_adaptive is not None:
            on_adaptive()
    lambdas = list(settings.lambdas or lambda_grid(
        model, data, settings.points, settings.group_strength, settings.l1))
    folds = [(points, len(data.x_val))]
    parts = [(fold_points, len(fold.x_val))
             for fold_points, fold in zip(search.points[1:], others)]

    def train_point(index, lam):
        reason = search.train_point(index, lam, lam / base, settings.point_epochs)
        if len(search.points[0]) <= index:  # not measured: a fold's loss overflowed
            if reason == "diverged":  # the run's own: the points before it stand
                reason = f"the loss became not finite at lambda {lam:.3g}"
                print(f"\nthe path stops: {reason}; the choice is among the {index} "
                      "points before it", file=sys.stderr)
            return None, reason
        point = search.points[0][index]
        model.set_weights(point.weights)  # the caller shows the point's network
        return point, reason

    def shown(point):  # once the path keeps the point: a Ctrl-C here loses nothing
        if point.index > 0 and show is not None:
            show(search.records[0])
        if on_point is not None:
            on_point(point)

    def pooled_losses():
        if not others:
            return None
        return [record["val_loss"]
                for record in cv_records(data.task, [*folds, *parts], settings.repeats)]

    ended = run_path(points, lambdas, train_point, shown, pooled_losses)
    return ended, folds + parts


@dataclasses.dataclass
class PathChoice:
    """What choose_lambda found: the `records` it chose among (pooled over the folds with
    `folds`; with rule="units", one per network size), the `selected` point (index, lambda,
    rule, validation metric and SE), `path` (every point of the run's own fold), `model` (the
    chosen network; its GroupSparse strengths scaled to the chosen lambda), `pruned` and
    `report` (common.shrink.pruning)."""
    records: list
    selected: dict
    path: list
    ended: str
    model: object
    pruned: object
    report: object
    classes: list | None = None  # classification: the label of each output, as in y


def choose_lambda(build, x, y, task="regression", val_fraction=None, rule="1se",
                  max_units=None, tolerance=None, **settings):
    """The lambda path of the network `build()` makes, on rows (x, y), and the network it
    chooses (see the module's docstring). `val_fraction`: the share of the rows held out
    (None: 1/folds with `folds`, as the demos' --cv, else 0.2). `settings`: PathSettings'
    fields but the strengths, which come from the network's GroupSparse regularizers.
    Returns PathChoice."""
    import keras

    from common.shrink.pruning import prune_model

    if task not in ("regression", "classification"):
        raise ValueError(f"task must be 'regression' or 'classification', got {task!r}")
    model, template = build(), build()
    for layer in model.layers:  # the engine trains Dense kernels and biases, nothing else
        if not isinstance(layer, (keras.layers.Dense, keras.layers.InputLayer)):
            raise ValueError(f"choose_lambda trains and prunes a chain of Dense layers; layer "
                             f"{layer.name!r} is a {type(layer).__name__}, which it cannot")
    last = model.layers[-1]
    if task == "classification" and getattr(last, "activation", None) is not \
            keras.activations.softmax:
        raise ValueError(f"classification reads class probabilities: give the last layer "
                         f"({last.name!r}) activation='softmax'")
    regularizers = [regularizer for _, regularizer in kernel_regularizers(model)]
    if not regularizers:
        raise ValueError("the network has no GroupSparse kernel regularizer for lambda to scale")
    settings = PathSettings(group_strength=max(r.group_strength for r in regularizers),
                            l1=max(r.l1 for r in regularizers), **settings)
    if val_fraction is None:  # the run's own split is one fold: 1/K of the rows, as --cv K
        val_fraction = 1 / settings.folds if settings.folds else 0.2
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1 (the share of rows held out), "
                         f"got {val_fraction!r}")
    x, y, classes = checked_arrays(x, y, task, model.outputs[0].shape[-1])
    if settings.folds and settings.folds > len(x):
        raise ValueError(f"folds={settings.folds} needs at least that many rows; x has "
                         f"{len(x)}")
    data = arrays_dataset(x, y, task, val_fraction, settings.seed)
    points = []
    ended, folds = run_search(model, data, template, settings, points, [0.0, 0])
    pooled = bool(settings.folds) and len(folds) == settings.folds * settings.repeats
    records = choice_records(task, folds, rule, pooled, settings.repeats)
    chosen = finish_path(model, points, task, ended, settings.point_epochs, rule, max_units,
                         records, cv_label(settings.folds, settings.repeats) if pooled else None,
                         tolerance)
    if chosen["selected"] is None:
        raise RuntimeError(f"the path trained no point: {ended}")
    carry_lambda(model, chosen["selected"]["lambda"] / base_strength(settings.group_strength,
                                                                     settings.l1))
    pruned, report = prune_model(model, settings.threshold, data.feature_names)
    return PathChoice(records or chosen["path"], chosen["selected"], chosen["path"], ended,
                      model, pruned, report, classes)


def cv_label(folds, repeats):
    """How the choice names its cross-validation: "5" (5-fold), "2 x 5" (repeated)."""
    return f"{repeats} x {folds}" if repeats > 1 else folds


def checked_arrays(x, y, task, num_outputs):
    """Rows (x, y) as choose_lambda trains on them, checked as scikit-learn's check_X_y
    checks: (x float32 [n, features], y, classes). Regression targets become [n, outputs];
    class labels 0 .. outputs-1 stay as they are (`classes` [0, 1, ...]), other labels of any
    kind become 0 .. C-1 in sorted order (`classes` their labels); None for regression. A ValueError says, in one sentence, what does not fit."""
    try:
        x = np.asarray(x, np.float64)
    except (TypeError, ValueError):
        raise ValueError("x must hold numbers only") from None
    if x.ndim != 2 or not x.size:
        raise ValueError(f"x must be 2-D (rows, features) with rows and columns, got shape "
                         f"{x.shape}")
    bad = np.argwhere(~np.isfinite(x) | (np.abs(x) > np.finfo(np.float32).max))
    if len(bad):
        row, column = bad[0]
        raise ValueError(f"x[{row}, {column}] is {x[row, column]}: every value must be a "
                         "finite number that fits float32")
    try:
        y = np.asarray(y)
    except ValueError:
        raise ValueError("y must be one target row per row of x, all of one length") from None
    if y.ndim == 0 or len(y) != len(x):
        raise ValueError(f"x has {len(x)} rows and y has {len(y) if y.ndim else 0}: one "
                         "target row per row of x")
    if task == "classification":
        if y.ndim != 1 and not (y.ndim == 2 and y.shape[1] == 1):
            raise ValueError(f"class labels must be one per row, got y of shape {y.shape}")
        y = y.reshape(-1)
        if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
            raise ValueError(f"y's row {int(np.argmin(np.isfinite(y)))} is not a finite label")
        if y.dtype.kind in "iu" or (y.dtype.kind == "f" and np.all(y == np.round(y))):
            labels = y.astype(np.int64)
            if labels.min() >= 0 and labels.max() < num_outputs:  # output k is label k
                return x.astype(np.float32), labels.astype(np.int32), list(range(num_outputs))
        try:
            classes, codes = np.unique(y, return_inverse=True)
        except TypeError:
            raise ValueError("class labels must be comparable values of one kind (numbers or "
                             "strings)") from None
        if len(classes) > num_outputs:
            shown = ", ".join(map(repr, classes.tolist()[:10]))
            raise ValueError(f"y holds {len(classes)} classes ({shown}"
                             f"{', ...' if len(classes) > 10 else ''}), more than the "
                             f"network's {num_outputs} outputs: one output per class")
        return x.astype(np.float32), codes.astype(np.int32), classes.tolist()
    try:
        y = np.asarray(y, np.float64)
    except (TypeError, ValueError):
        raise ValueError("regression targets y must be numbers") from None
    y = y.reshape(-1, 1) if y.ndim == 1 else y
    if y.ndim != 2 or y.shape[1] != num_outputs:
        raise ValueError(f"y must be {len(x)} rows of as many targets as the network has "
                         f"outputs ({num_outputs}), got shape {y.shape}")
    if not np.all(np.isfinite(y) & (np.abs(y) <= np.finfo(np.float32).max)):
        row = int(np.argwhere(~np.isfinite(y) | (np.abs(y) > np.finfo(np.float32).max))[0][0])
        raise ValueError(f"y's row {row} is not a finite number that fits float32")
    return x.astype(np.float32), y.astype(np.float32), None


def arrays_dataset(x, y, task, val_fraction, seed):
    """Rows (x, y) as a Dataset: a random `val_fraction` of them (at least one row) becomes
    the validation split; no test split (x_test holds no rows). Regression targets as
    (n, 1) float32, classes as int32 labels 0 .. C-1."""
    x = np.asarray(x, np.float32)
    if task == "classification":
        y = np.asarray(y).reshape(-1).astype(np.int32)
        classes = int(y.max()) + 1
    else:
        y, classes = np.asarray(y, np.float32).reshape(len(x), -1), None
    order = np.random.default_rng(seed).permutation(len(x))
    held = max(1, int(round(len(x) * val_fraction)))
    val, train = order[:held], order[held:]
    return Dataset("arrays", task, x[train], x[:0], y[train], y[:0],
                   [f"x{column}" for column in range(x.shape[1])], classes,
                   x_val=x[val], y_val=y[val])
