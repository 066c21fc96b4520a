"""The lambda path: selection rules, warm starts, the grid, fine-tuned points (the demos: test_path_demos.py)."""

import dataclasses

import keras
import numpy as np
import pytest

from common import count_active_units
from common.training.batches import FINETUNE
from common.run.config import parse_config
from common.data.datasets import load_dataset
from common.training.model import build_model, metric_and_standard_error
from common.search.path import (PathPoint, attach_scale, finish_path, lambda_grid, select_point,
                         set_scale)
from tests.helpers import demo_optimizer, demo_penalties, full_batch_fit, numpy_forward


def record(index, lam, units, metric, se):
    return {"index": index, "lambda": lam, "total_units": units, "val_metric": metric,
            "val_se": se}


# Lower is better (RMSE). Best is index 2 (3.0 ± 0.2): within one SE means <= 3.2.
RMSE_PATH = [record(0, 0.0, 48, 3.30, 0.2), record(1, 1e-4, 40, 3.10, 0.2),
             record(2, 2e-4, 30, 3.00, 0.2), record(3, 4e-4, 20, 3.15, 0.2),
             record(4, 8e-4, 12, 3.25, 0.2), record(5, 16e-4, 5, 4.00, 0.3)]


def test_selection_rules_on_hand_made_numbers():
    assert select_point(RMSE_PATH, "regression", "min") == (2, "min")
    assert select_point(RMSE_PATH, "regression", "1se") == (3, "1se")  # 20 units, 3.15 <= 3.2
    assert select_point(RMSE_PATH, "regression", max_units=25) == (3, "max-units 25")
    assert select_point(RMSE_PATH, "regression", max_units=12) == (4, "max-units 12")
    # No point is that small: the smallest one, rather than nothing, and the rule says so.
    assert select_point(RMSE_PATH, "regression", max_units=3) == (
        5, "max-units 3 (no point has at most 3 units: the smallest network instead)")
    # Tied smallest points (nothing pruned): the best of them, not the first.
    unpruned = [record(0, 0.0, 48, 7.44, 0.5), record(1, 1e-4, 48, 5.28, 0.5),
                record(2, 2e-4, 48, 6.0, 0.5)]
    assert select_point(unpruned, "regression", max_units=3)[0] == 1
    # Accuracy: higher is better. Best 0.95 ± 0.02, so within one SE means >= 0.93.
    accuracy = [record(0, 0.0, 60, 0.95, 0.02), record(1, 1e-3, 40, 0.94, 0.02),
                record(2, 2e-3, 30, 0.925, 0.02)]
    assert select_point(accuracy, "classification", "1se") == (1, "1se")
    assert select_point(accuracy, "classification", "min") == (0, "min")


def test_a_tolerance_keeps_the_fewest_units_no_worse_than_the_dense_network_allows():
    # The dense network (the first record) scored 3.30: 5 % more is 3.465, so 12 units at
    # 3.25 qualify and 5 units at 4.00 do not; 25 % more (4.125) lets 5 units in.
    assert select_point(RMSE_PATH, "regression", tolerance=0.05) == (
        4, "within 0.05 of the dense network")
    assert select_point(RMSE_PATH, "regression", tolerance=0.25)[0] == 5
    # Nothing within 0: the dense network itself, or anything better and smaller (3.0 < 3.3).
    assert select_point(RMSE_PATH, "regression", tolerance=0.0)[0] == 4
    # Accuracy: 2 % below 0.95 is 0.931; 0.94 qualifies, 0.925 does not.
    accuracy = [record(0, 0.0, 60, 0.95, 0.02), record(1, 1e-3, 40, 0.94, 0.02),
                record(2, 2e-3, 30, 0.925, 0.02)]
    assert select_point(accuracy, "classification", tolerance=0.02)[0] == 1
    assert select_point(accuracy, "classification", tolerance=0.03)[0] == 2
    with pytest.raises(ValueError, match="relative loss of at least 0"):
        select_point(RMSE_PATH, "regression", tolerance=-0.01)
    with pytest.raises(ValueError, match="alone"):
        select_point(RMSE_PATH, "regression", max_units=12, tolerance=0.05)


def test_a_record_names_the_point_it_keeps_wherever_it_stands():
    """Unit budgets list sizes, not points: the record at position 2 keeps point 1, and the
    path keeps (and reports) that point, with the budget's pooled score."""
    points = [PathPoint(index, 0.1 * index, {"inputs": 3, "hidden": [size]}, 3 + size, 0,
                        metric, 0.1, metric ** 2, weights=[np.full((1,), float(index))])
              for index, (size, metric) in enumerate([(17, 3.0), (9, 3.2), (12, 3.1)])]
    budgets = [record(0, 0.0, 20, 3.0, 0.3), record(1, 0.1, 15, 3.1, 0.3),
               record(1, 0.1, 12, 3.25, 0.3)]
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False)])
    kept = []
    model.set_weights = kept.append  # records what finish_path loads
    chosen = finish_path(model, points, "regression", "done", 10, "units", chosen_from=budgets,
                         folds=5)
    assert chosen["selected"]["index"] == 1 and chosen["selected"]["val_rmse"] == 3.25
    assert chosen["selected"]["rule"] == "units, 5-fold cross-validation"
    assert chosen["unit_budgets"] == budgets and kept[0][0][0] == 1.0


def test_ties_go_to_the_better_metric_then_to_the_larger_lambda():
    tied_units = [record(0, 1e-4, 10, 3.0, 0.5), record(1, 2e-4, 10, 2.9, 0.5),
                  record(2, 4e-4, 10, 2.9, 0.5)]
    assert select_point(tied_units, "regression", "1se")[0] == 2
    assert select_point(tied_units, "regression", "min")[0] == 2
    exactly_at_bound = [record(0, 1e-4, 30, 3.0, 0.25), record(1, 2e-4, 10, 3.25, 0.1)]
    assert select_point(exactly_at_bound, "regression", "1se")[0] == 1


def test_the_path_stops_on_an_empty_layer_or_a_loss_twice_the_best_twice():
    """The stop rule on hand-made points; with --cv it reads the pooled losses it is given,
    not the run's own split's."""
    from common.search.path import PathPoint, stop_reason

    def points(losses, hidden=(5, 3)):
        return [PathPoint(index, 0.0, {"inputs": 4, "hidden": list(hidden)}, 12, 50, 1.0, 0.1,
                          loss) for index, loss in enumerate(losses)]

    assert stop_reason(points([1.0, 0.5, 1.1])) is None  # once above 2 x 0.5
    assert "stayed above 2 x the best" in stop_reason(points([1.0, 0.5, 1.1, 1.2]))
    assert stop_reason(points([1.0, 0.5, 1.1, 0.9, 1.2])) is None  # the run was broken
    assert stop_reason(points([1.0])) is None
    assert stop_reason(points([1.0], hidden=(5, 0))) == "a layer has no unit left"
    noisy_own_split = points([1.0, 0.4, 0.9, 0.95])
    assert stop_reason(noisy_own_split) is not None
    assert stop_reason(noisy_own_split, losses=[1.0, 0.8, 0.85, 0.9]) is None  # pooled


def test_standard_error_of_rmse_and_accuracy_against_numpy():
    data = load_dataset("boston", seed=0)
    rng = np.random.default_rng(0)
    predictions = data.y_test + rng.normal(scale=0.05, size=data.y_test.shape).astype(np.float32)
    rmse, se = metric_and_standard_error(data, data.y_test, predictions)
    squared = ((predictions - data.y_test).astype(np.float64) * (data.target_max - data.target_min)) ** 2
    assert rmse == pytest.approx(np.sqrt(squared.mean()), rel=1e-5)
    # Delta method: SE(RMSE) = SE(MSE) / (2 RMSE).
    assert se == pytest.approx(squared.std(ddof=1) / np.sqrt(squared.size) / (2 * rmse), rel=1e-4)


def small_path_setup(**overrides):
    config = parse_config(["--path", "--epochs", "60", "--path-epochs", "20", "--path-points", "5",
                           "--logdir", "/tmp"] + sum(([f"--{k}", str(v)] for k, v in overrides.items()), []))
    data = load_dataset("boston", seed=0, val_fraction=config.val_fraction)
    keras.utils.set_random_seed(0)
    model = build_model(data, config.hidden, demo_penalties(config))
    model.compile(optimizer=demo_optimizer(config), loss="mse")
    scale = attach_scale(model)
    return config, data, model, scale


@pytest.mark.backends
def test_each_point_starts_from_the_previous_points_weights_and_lambda_grows(monkeypatch):
    """The run's path in the engine: point k's first step starts from point k-1's weights
    (its data loss there is a NumPy forward pass of them), lambda grows from 0, each point's
    counts are its weights' recount, and the demo is shown the dense stage's steps and every
    point's."""
    from common.run.stages import PathRun

    import common.search.choose

    config, data, model, scale = small_path_setup()
    grids = []
    monkeypatch.setattr(common.search.choose, "lambda_grid", lambda *args: grids.append(
        lambda_grid(*args)) or grids[-1])
    run = PathRun(config, data, model, lambda: build_model(data, config.hidden,
                                                            demo_penalties(config)))
    shown = []
    run.train(lambda epochs: pytest.fail("the engine trains the dense network of a path"),
              show=shown.append)
    points = run.points
    (grid,) = grids
    assert len(grid) == 5 and all(b > a > 0 for a, b in zip(grid, grid[1:]))
    assert [point.lam for point in points] == [0.0, *grid][:len(points)]
    dense, *shown = shown  # the dense stage's records (one compiled call), then each point's
    assert len(dense) == config.epochs and dense[0, 2:].sum() == 48
    np.testing.assert_array_equal(model.get_weights()[0], points[-1].weights[0])
    assert len(points) >= 3 and len(shown) == len(points) - 1
    assert all(len(records) == config.path_epochs for records in shown)
    for records, previous in zip(shown, points):
        weights = [np.asarray(weight, np.float64) for weight in previous.weights]
        hidden = np.maximum(data.x_train @ weights[0] + weights[1], 0)
        hidden = np.maximum(hidden @ weights[2] + weights[3], 0)
        expected = np.mean(np.sum((hidden @ weights[4] + weights[5] - data.y_train) ** 2, 1))
        assert records[0, 0] == pytest.approx(expected, rel=1e-4)
    for point in points:  # the recorded counts are those of the recorded weights
        recount = count_active_units([point.weights[0], point.weights[2], point.weights[4]],
                                     config.threshold)
        assert point.units == recount.as_dict() and point.total_units == recount.total
    assert points[-1].total_units < points[0].total_units  # the penalty removed units


@pytest.mark.backends
def test_the_runs_own_dense_network_and_path_in_the_engine_equal_one_keras_fit():
    """The run's own fold trains its dense network in the engine and goes on to point 1 with
    the same Adam (moments and step count): equal to Keras' fit with ProximalOptimizer,
    60 dense epochs then 20 at the point's strength, on one optimizer. The dense stage's
    records are shown after each compiled call."""
    from common.search.crossval import FoldPaths

    config, data, model, scale = small_path_setup()
    search = FoldPaths(model, [data], start_weights=model.get_weights(), lr=config.lr,
                       batch_size=None, seed=0, threshold=config.threshold, xla=False)
    search.trainer.chunk_steps = 25  # three compiled calls for the dense stage
    shown = []
    assert search.train_dense(60, show=shown.append) == []
    assert [len(rows) for rows in shown] == [25, 25, 10]
    search.train_point(1, 5e-3, 5.0, 20)
    first = np.mean((numpy_forward(model.get_weights(), data.x_train) - data.y_train) ** 2)
    assert shown[0][0, 0] == pytest.approx(first, rel=1e-5)  # the first step's data loss
    full_batch_fit(model, data.x_train, data.y_train, 60)
    set_scale(model, scale, 5.0)
    full_batch_fit(model, data.x_train, data.y_train, 20)
    for have, want in zip(search.trainer.weights(0), model.get_weights()):
        np.testing.assert_allclose(have, want, atol=1e-5)


@pytest.mark.backends
def test_with_finetune_each_point_is_scored_on_its_fine_tuned_pruned_network(monkeypatch):
    """--finetune on the path (the relaxed path, `--preset compact`): each point's pruned
    network is fine-tuned on the training rows, with the validation split for early
    stopping, before it is scored. A stand-in for the fine-tuning zeroes the network it is
    given, so the validation loss must be that of predicting 0: mean(y_val**2) in NumPy. It
    is called twice, early stopping on alternate validation rows, then on the others."""
    from common.search.crossval import FoldPaths
    from common.search.engine import FoldTrainer

    config, data, model, scale = small_path_setup(finetune=7, patience=5)
    calls = []

    def zeroing_finetune(self, weights, epochs, stream, threshold, patience, on_chunk,
                         stop_rows):
        calls.append(([[value.shape for value in fold] for fold in weights], epochs, threshold,
                      patience, [rows.tolist() for rows in stop_rows]))
        return [[np.zeros_like(value) for value in fold] for fold in weights]

    monkeypatch.setattr(FoldTrainer, "finetune", zeroing_finetune)
    search = FoldPaths(model, [data], start_weights=model.get_weights(), lr=config.lr,
                       batch_size=None, seed=0, threshold=config.threshold, finetune=7,
                       patience=5)
    search.train_point(0, 0.0, 0.0, 20)
    point = search.points[0][0]
    assert point.val_loss == pytest.approx(float(np.mean(np.square(data.y_val))), rel=1e-5)
    shapes, first = [[weight.shape for weight in model.get_weights()]], [
        float(row % 2 == 0) for row in range(len(data.y_val))]
    assert calls == [(shapes, 7, config.threshold, 5, [first]),
                     (shapes, 7, config.threshold, 5, [[1.0 - row for row in first]])]
    # The path's own weights are untouched: only the pruned copy was fine-tuned.
    assert any(np.any(weight != 0) for weight in point.weights)


@pytest.mark.backends
def test_no_validation_row_is_scored_by_a_network_whose_early_stopping_read_it():
    """With early stopping each point's pruned network is fine-tuned twice, stopping on
    alternate validation rows and then on the others, and each row is predicted by the run
    that stopped on the other half. Two folds (81 and 74 validation rows, padded to one
    length): flipping the targets of fold 0's first half leaves that half's predictions
    exactly as they were (their network never read those targets), changes the second
    half's (theirs stopped on the flipped rows), and leaves fold 1 alone. The dense stage
    and both fine-tunings share one compilation."""
    from common.search.crossval import FoldPaths

    config, data, model, scale = small_path_setup()
    start = model.get_weights()
    other = dataclasses.replace(data, x_val=data.x_val[7:], y_val=data.y_val[7:])

    def predictions(y_val):
        folds = [dataclasses.replace(data, y_val=y_val), other]
        search = FoldPaths(model, folds, start_weights=start, lr=1e-2, batch_size=None,
                           seed=0, threshold=config.threshold, finetune=300, patience=20,
                           xla=False)
        search.train_dense(40)
        predicted = search.held_out_predictions([search.trainer.weights(fold)
                                                 for fold in range(2)], 1)
        assert search.trainer.traces == 1
        return predicted

    first = np.arange(len(data.y_val)) % 2 == 0
    flipped = np.where(first[:, None], data.y_val.max() + data.y_val.min() - data.y_val,
                       data.y_val)
    before, after = predictions(data.y_val), predictions(flipped)
    assert len(before[1]) == len(data.y_val) - 7
    np.testing.assert_array_equal(after[0][first], before[0][first])
    assert not np.allclose(after[0][~first], before[0][~first], atol=1e-3)
    np.testing.assert_array_equal(after[1], before[1])


def test_fine_tuning_holds_the_pruned_rows_at_zero_and_keeps_the_paths_state():
    """FoldTrainer.finetune (each path point's fine-tuning): the rows the pruning removes
    start and stay at zero, the others train on the data loss alone, and the trainer's own
    weights and Adam state are as they were."""
    from common.search.engine import FoldTrainer

    config, data, model, scale = small_path_setup()
    weights = model.get_weights()
    weights[0][[1, 4]] = 1e-5  # two inputs under the 1e-3 threshold: pruned
    tuner = FoldTrainer(model, [(data.x_train, data.y_train, data.x_val, data.y_val)],
                        data.task, 1e-2, None, seed=0)
    tuner.set_weights(0, weights)
    before = [[np.array(keras.ops.convert_to_numpy(value)) for value in part]
              for part in tuner.state()[:3]]
    tuned, = tuner.finetune([weights], 30, (2, 0), threshold=1e-3, patience=None)
    assert np.all(tuned[0][[1, 4]] == 0)
    kept = np.ones(len(weights[0]), bool)
    kept[[1, 4]] = False
    assert np.all(np.abs(tuned[0][kept] - weights[0][kept]).sum(axis=1) > 0)
    after = tuner.state()
    for part in range(3):  # weights (the pruned rows not zeroed), Adam's moments, velocities
        assert len(after[part]) == len(before[part]) == 6  # every weight of the network
        assert all(np.array_equal(keras.ops.convert_to_numpy(a), b)
                   for a, b in zip(after[part], before[part]))
    assert np.all(keras.ops.convert_to_numpy(tuner.params[0][0])[[1, 4]] == 1e-5)


@pytest.mark.slow
@pytest.mark.backends
def test_lambda_max_removes_everything_and_a_thousandth_of_it_almost_nothing():
    """The grid's top end is where even the strongest group stays at zero."""
    config, data, model, scale = small_path_setup()
    full_batch_fit(model, data.x_train, data.y_train, 60)
    top = lambda_grid(model, data, config.path_points, config.group_strength, config.l1)[-1]
    dense = [np.array(weight) for weight in model.get_weights()]
    for lam, expect_empty in [(top * 1.5, True), (top * 1e-3, False)]:
        model.set_weights(dense)
        set_scale(model, scale, lam / config.group_strength)
        full_batch_fit(model, data.x_train, data.y_train, 300)
        counts = count_active_units(model, 0.0)
        if expect_empty:
            assert min(counts.inputs, *counts.hidden) == 0
        else:
            assert counts.total >= 0.9 * 48


def test_a_point_settles_once_units_and_objective_hold_still():
    """point_settled on hand-made records (rows: data loss, penalty, units per layer after
    each step): every fold's units unchanged from the call before's last step on, and each
    fold's mean objective within the tolerance of its mean over the call before."""
    from common.search.crossval import point_settled

    def rows(objective, units=(10, 4, 2), steps=4):
        return np.array([[objective - 0.01, 0.01, *units]] * steps, np.float32)

    units = np.array([10, 4, 2], np.float32)
    still = [rows(1.0), rows(2.0)]
    assert point_settled(still, [(1.0005, units), (2.001, units)], 1e-3)
    assert not point_settled(still, [(1.0005, units), (2.003, units)], 1e-3)  # 1.5e-3
    moving_unit = rows(1.0)
    moving_unit[2, 3] = 3  # a unit of the first hidden layer dropped mid-call
    assert not point_settled([moving_unit, rows(2.0)], [(1.0, units), (2.0, units)], 1e-3)
    # A unit that dropped at the call's first step: only the call before's units show it.
    assert not point_settled(still, [(1.0, units), (2.0, np.array([10, 5, 2]))], 1e-3)
    assert not point_settled([rows(1.0)[:0], rows(2.0)], [(1.0, units), (2.0, units)], 1e-3)
    assert not point_settled([rows(1.0), rows(2.0)], [(1.0, None), (2.0, units)], 1e-3)
    assert not point_settled([rows(float("nan")), rows(2.0)], [(1.0, units), (2.0, units)],
                             1e-3)


@pytest.mark.backends
def test_a_settled_point_ends_at_the_first_call_that_settled(monkeypatch):
    """With `settle` a point's training ends after the first compiled call whose records
    settled in every fold (recomputed here from a full run's records in NumPy: no unit
    changed since the call before's last step, each fold's mean objective within the
    tolerance of the call before's); without it the point trains all its epochs. The
    settled point's records are the full run's, and its fine-tuning is not cut short."""
    from common.search.crossval import FoldPaths
    from common.data.datasets import fold_datasets
    from common.search.engine import FoldTrainer

    config, data, model, _ = small_path_setup()
    folds = [data, fold_datasets(data, 3, 0)[0]]  # two folds of other rows
    stages = []
    train = FoldTrainer.train

    def watched(self, epochs, stream, **settings):
        records = train(self, epochs, stream, **settings)
        stages.append((stream[0], epochs, len(records[0])))
        return records

    monkeypatch.setattr(FoldTrainer, "train", watched)

    def point(settle):
        search = FoldPaths(model, folds, start_weights=model.get_weights(), lr=1e-2,
                           batch_size=None, seed=0, threshold=config.threshold,
                           finetune=30, settle=settle, xla=False)
        search.trainer.chunk_steps = 20
        search.train_dense(300)
        search.train_point(1, 3e-3, 3.0, 400)
        return search.records

    full = point(None)
    assert [len(rows) for rows in full] == [400, 400]
    means = [(rows[:, 0] + rows[:, 1]).reshape(20, 20).mean(axis=1) for rows in full]
    changes = {}  # call end -> the largest relative change over the folds, units held
    for call in range(1, 20):
        calls = [rows[20 * call - 1:20 * (call + 1), 2:] for rows in full]
        if all(np.all(part == part[0]) for part in calls):
            changes[20 * (call + 1)] = max(abs(mean[call] - mean[call - 1]) / abs(mean[call])
                                           for mean in means)
    assert len(changes) >= 3, "the units never held still: the test needs a longer point"
    ordered = sorted(set(changes.values()))  # a tolerance between two calls' changes
    tolerance = float(ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2
    first = min(end for end, change in changes.items() if change <= tolerance)
    short = point(tolerance)
    assert [len(rows) for rows in short] == [first, first] and first < 400
    for have, want in zip(short, full):
        np.testing.assert_allclose(have, want[:first], rtol=1e-6)
    finetuning = [stage for stage in stages if stage[0] == FINETUNE]
    assert finetuning and all(steps == epochs == 30 for _, epochs, steps in finetuning)


def test_a_stop_asked_between_calls_ends_a_settling_point_too():
    """The caller's on_chunk returning False ends the point, settled or not."""
    from common.search.crossval import FoldPaths

    config, data, model, _ = small_path_setup()
    search = FoldPaths(model, [data], start_weights=model.get_weights(), lr=1e-2,
                       batch_size=None, seed=0, threshold=config.threshold, settle=1e-9,
                       xla=False)
    search.on_chunk = lambda steps, records: steps < 40
    search.trainer.chunk_steps = 20
    search.train_point(1, 3e-3, 3.0, 400)
    assert len(search.records[0]) == 40
