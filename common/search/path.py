"""Choosing lambda for the user: a warm-started path of growing strengths, picked on validation.

    python demo_tensorflow.py --path     # dense network, then ~20 lambdas, then the pick

The dense network is trained first (lambda 0, the run's usual budget). Then lambda grows
geometrically, each point continuing from the previous point's weights and optimizer state
for `path_epochs` epochs, as glmnet and LassoNet do. The grid runs from lambda_max / 1000
to lambda_max, where lambda_max is the largest value of ||dL/dW[g]|| / sqrt(group size)
over all groups g, each gradient taken with that group set to zero: above it even the
strongest group is held at zero (the optimality condition of the penalized problem).

Point 0 is the dense network. Each point is pruned and scored on the validation split
(never the test split), with a standard error; `select_point` then picks one. The path
stops early when a layer has no unit left, or when the validation loss has been above twice
the best for two points.
"""

import dataclasses
import math
import sys
import time

import keras
import numpy as np
from keras import ops

from common.search.adaptive import kernel_regularizers
from common.shrink.counting import unit_kernels
from common.data.datasets import higher_is_better, metric_name
from common.training.fitting import drop_compiled_step
from common.training.gradients import gradient_numpy
from common.training.model import row_losses

GRID_RATIO = 1e-3  # lambda_min / lambda_max of the automatic grid
STOP_LOSS_RATIO = 2.0  # stop once the validation loss exceeds this times the best ...
STOP_PATIENCE = 2  # ... for this many points in a row


@dataclasses.dataclass
class PathPoint:
    index: int
    lam: float  # the group Lasso strength (the L1 strength when only L1 is on)
    units: dict  # {"inputs": n, "hidden": [n, ...]}
    total_units: int  # inputs included, as the `neurons` chart
    params: int  # parameters of the pruned network
    val_metric: float
    val_se: float
    val_loss: float
    weights: list = dataclasses.field(repr=False, default=None)  # the trained weights
    steps: int | None = None  # steps trained at this lambda (fewer once settled; the dense
    # stage's for point 0)

    def as_dict(self):
        return {"index": self.index, "lambda": self.lam, "units": self.units,
                "total_units": self.total_units, "params": self.params,
                "val_metric": self.val_metric, "val_se": self.val_se, "val_loss": self.val_loss,
                "steps": self.steps}


def base_strength(group_strength, l1):
    """The strength a path lambda replaces: the group Lasso's, or L1's when it is alone."""
    return group_strength or l1


def attach_scale(model):
    """A variable multiplying every GroupSparse strength of `model`, returned; starts at 0
    (the dense network). Setting it changes the penalty without building a new graph."""
    scale = keras.Variable(0.0, dtype="float32", trainable=False, name="strength_scale")
    for _, regularizer in kernel_regularizers(model):
        regularizer.scale = scale
    return scale


def set_scale(model, scale, value):
    """Set the strength scale. A JAX train step holds a variable outside the model as a
    constant of its compiled code, so there the model's compiled step is dropped and traced
    again with the new value (TensorFlow's graph reads the variable at each step)."""
    scale.assign(value)
    if keras.backend.backend() == "jax":
        drop_compiled_step(model)


def carry_lambda(model, factor):
    """Every GroupSparse strength of `model` times `factor` (the chosen lambda over the base
    strength), the path's scale removed: the model carries the penalty it was chosen with."""
    for _, regularizer in kernel_regularizers(model):
        regularizer.group_strength *= factor
        regularizer.l1 *= factor
        regularizer.l2 *= factor
        regularizer.scale = None


def layer_lambda_max(model, x, y, task):
    """For each kernel, the largest ||dL/dW[g]|| / (sqrt(group size) * a_g) over its rows g,
    each with W[g] = 0: the group strength at which that layer is held empty (a_g: the
    adaptive weight of the group, 1 without). `model` itself is never changed: the rows are
    zeroed in a copy, so a stop at any moment leaves it whole."""
    probe = model.__class__.from_config(model.get_config())  # its layers, not its compile
    probe.set_weights(model.get_weights())
    kernels, probes = unit_kernels(model), unit_kernels(probe)
    total, done, shown = sum(int(kernel.shape[0]) for kernel in kernels), 0, time.monotonic()
    tops = []
    for kernel, probe_kernel in zip(kernels, probes):
        largest = 0.0
        original = ops.convert_to_numpy(kernel)
        group_size = original.shape[1]
        weights = getattr(getattr(kernel, "regularizer", None), "weights", None) \
            or [1.0] * original.shape[0]
        for row in range(original.shape[0]):
            zeroed = original.copy()
            zeroed[row] = 0.0
            probe_kernel.assign(zeroed)
            gradient, = gradient_numpy(
                lambda: ops.mean(row_losses(task, y, probe(x, training=False))), [probe_kernel])
            norm = float(np.linalg.norm(gradient[row]))
            largest = max(largest, norm / (math.sqrt(group_size) * weights[row]))
            done += 1
            if time.monotonic() - shown > 5:  # a wide CSV: one gradient per input
                print(f"lambda_max: {done} of {total} rows probed", file=sys.stderr, flush=True)
                shown = time.monotonic()
        probe_kernel.assign(original)
        tops.append(largest)
    return tops


def lambda_grid(model, data, num_points, group_strength, l1):
    """The path's `num_points` lambdas: a geometric grid below the lambda at which every
    layer is held empty (layer_lambda_max). `group_strength` and `l1`: the run's largest
    strengths (the kernels' own are these times a factor)."""
    # For an L1-only path this is an upper bound: a weight's gradient is below its row's.
    tops = layer_lambda_max(model, data.x_train, data.y_train, data.task)
    # A layer whose strength is c times the base is emptied at path lambda top / c.
    base = base_strength(group_strength, l1)
    factors = [regularizer.group_strength / base if group_strength else 1.0
               for _, regularizer in kernel_regularizers(model)] or [1.0] * len(tops)
    top = max(layer_top / factor for layer_top, factor in zip(tops, factors) if factor > 0)
    return [float(value) for value in np.geomspace(top * GRID_RATIO, top, num_points)]


def path_epochs(given, epochs, eval_every):
    """Epochs per point: `given` (--path-epochs), or a fifteenth of the dense budget's
    `epochs`, rounded down to whole chunks of `eval_every` epochs (so the Keras demo's graph
    serves every point)."""
    if given:
        return given
    per_point = max(epochs // 15, 1)
    return per_point // eval_every * eval_every or per_point


def stop_reason(points, losses=None):
    """Why a path whose measured points are `points` ends here, or None to go on: a layer
    with no unit left, or a validation loss above STOP_LOSS_RATIO x the best so far at each
    of the last STOP_PATIENCE points. `losses`: the validation losses that rule reads, one
    per point (the points' own when None; --cv's pooled ones, common.run.stages)."""
    if min(points[-1].units["inputs"], *points[-1].units["hidden"]) == 0:
        return "a layer has no unit left"
    losses = [point.val_loss for point in points] if losses is None else losses
    worse = 0
    for index, loss in enumerate(losses):
        worse = worse + 1 if loss > STOP_LOSS_RATIO * min(losses[:index + 1]) else 0
    if worse >= STOP_PATIENCE:
        return f"the validation loss stayed above {STOP_LOSS_RATIO:g} x the best"
    return None


def run_path(points, lambdas, train_point, on_point=None, pooled_losses=None):
    """Train and measure each lambda in turn (point 0: the dense network as trained),
    appending its PathPoint to `points`, so a caller stopped by Ctrl-C keeps the finished
    ones. `train_point(index, lambda)` returns (the point or None, why the path ends there
    or None); `pooled_losses()` the validation losses the stop rule reads instead of the
    points' own (--cv). Returns why the path ended."""
    for index, lam in enumerate([0.0, *lambdas]):
        point, reason = train_point(index, lam)
        if point is not None:
            points.append(point)
            if on_point is not None:
                on_point(point)
            reason = reason or stop_reason(points, pooled_losses() if pooled_losses else None)
        if reason:
            return reason
    return "every lambda was trained"


def select_point(records, task, rule="1se", max_units=None, tolerance=None):
    """The position of the chosen record in `records` (dicts with total_units, val_metric,
    val_se, lambda; the first is the dense network) and the rule that chose it.

    1se: the fewest units among points whose metric is within one standard error of the
    best point's; units: the same on records of unit budgets (common.search.crossval.budget_records);
    min: the best metric; max_units: the best metric among points with at most that many units
    (the smallest point if none is that small); `tolerance` (a library rule): the fewest units
    among points at most that much (relative) worse than the first record, the dense network:
    an RMSE up to (1 + tolerance) times its, an accuracy down to (1 - tolerance) times its.
    Ties go to the better metric, then to the larger lambda (the simpler model). When no point
    is that small, the rule says so and the best of the smallest points is chosen.
    """
    sign = -1.0 if higher_is_better(task) else 1.0  # minimize sign * metric

    def goodness(record):
        return sign * record["val_metric"]

    order = list(range(len(records)))
    if tolerance is not None:
        if tolerance < 0 or max_units is not None:
            raise ValueError(f"a tolerance is a relative loss of at least 0, alone, not "
                             f"{tolerance} with max_units {max_units}")
        bound = goodness(records[0]) + tolerance * abs(records[0]["val_metric"])
        within = [index for index in order if goodness(records[index]) <= bound + 1e-12]
        return min(within, key=lambda index: (records[index]["total_units"],
                                              goodness(records[index]),
                                              -records[index]["lambda"])), \
            f"within {tolerance:g} of the dense network"
    if max_units is not None:
        rule = f"max-units {max_units}"
        pool = [index for index in order if records[index]["total_units"] <= max_units]
        if not pool:  # none is that small: the smallest networks, and among them the best
            fewest = min(records[index]["total_units"] for index in order)
            pool = [index for index in order if records[index]["total_units"] == fewest]
            rule += f" (no point has at most {max_units} units: the smallest network instead)"
        return min(pool, key=lambda index: (goodness(records[index]),
                                            -records[index]["lambda"])), rule
    best = min(order, key=lambda index: (goodness(records[index]), -records[index]["lambda"]))
    if rule == "min":
        return best, "min"
    bound = goodness(records[best]) + records[best]["val_se"]
    within = [index for index in order if goodness(records[index]) <= bound + 1e-12]
    return min(within, key=lambda index: (records[index]["total_units"],
                                          goodness(records[index]),
                                          -records[index]["lambda"])), rule


def finish_path(model, points, task, ended, epochs_per_point, rule="1se", max_units=None,
                chosen_from=None, folds=None, tolerance=None):
    """Load the selected point's weights into `model`; the run.json fields of the path.
    `rule`, `max_units`, `tolerance`: select_point's; `chosen_from`: the records to choose
    among instead of the points' own (common.search.crossval.choice_records: the pooled records of
    `folds`-fold cross-validation, or unit budgets; each names the point it keeps by
    `index`). `folds` names the cross-validation in the rule: 5, or "2 x 5" repeated."""
    records = [point.as_dict() for point in points]
    if not records:
        return {"path": [], "path_ended": ended, "selected": None}
    scored = chosen_from or records
    position, rule = select_point(scored, task, rule, max_units, tolerance)
    index = scored[position]["index"]
    model.set_weights(points[index].weights)
    metric = metric_name(task)
    budgets = {"unit_budgets": scored} if rule == "units" else {}
    return {"path": records, "path_ended": ended, "path_epochs": epochs_per_point, **budgets,
            "selected": {"index": index, "rule": rule + (f", {folds}-fold cross-validation"
                                                         if folds else ""),
                         "lambda": points[index].lam,
                         "val_" + metric: scored[position]["val_metric"],
                         "val_se": scored[position]["val_se"]}}
