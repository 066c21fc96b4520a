"""--cv: the folds, the pooled scores against NumPy on all their rows, and both demos."""

import json

import numpy as np
import pytest

import demo_keras
import demo_tensorflow
from common.run.config import parse_config
from common.search.crossval import budget_records, pooled, pooled_repeats
from common.data.datasets import DataError, fold_datasets, load_dataset, repeated_folds
from common.search.path import PathPoint, select_point
from tests.helpers import read_scalars

pytestmark = pytest.mark.backends


def numpy_rmse_and_se(squared):
    """RMSE of rows with these squared errors and its delta-method SE, in float64."""
    squared = np.asarray(squared, np.float64)
    rmse = np.sqrt(squared.mean())
    return rmse, squared.std(ddof=1) / np.sqrt(len(squared)) / (2 * rmse)


def test_pooled_folds_are_one_split_of_all_their_rows():
    rng = np.random.default_rng(0)
    # Folds of different sizes and error levels, as the folds of a path differ.
    folds = [rng.gamma(2.0, scale, size) ** 2 for scale, size in
             [(1.0, 76), (3.0, 75), (0.5, 76), (2.0, 40)]]
    scores = [(*numpy_rmse_and_se(squared), len(squared)) for squared in folds]
    rmse, se = pooled("regression", scores)
    expected = numpy_rmse_and_se(np.concatenate(folds))
    assert rmse == pytest.approx(expected[0], rel=1e-12)
    assert se == pytest.approx(expected[1], rel=1e-9)
    hits = [rng.random(size) < p for p, size in [(0.9, 270), (0.97, 269), (0.8, 100)]]
    accuracy, se = pooled("classification", [(h.mean(), None, len(h)) for h in hits])
    everything = np.concatenate(hits)
    assert accuracy == pytest.approx(everything.mean(), rel=1e-12)
    assert se == pytest.approx(np.sqrt(everything.mean() * (1 - everything.mean())
                                       / len(everything)), rel=1e-12)


def rows_of(x):
    return {row.tobytes() for row in np.asarray(x)}


@pytest.mark.parametrize("name, folds", [("boston", 5), ("digits", 4), ("boston", 2)])
def test_folds_cut_the_training_rows_into_disjoint_held_out_parts(name, folds):
    data = load_dataset(name, seed=3, val_fraction=1 / folds)
    others = fold_datasets(data, folds, seed=3)
    assert len(others) == folds - 1
    everything = rows_of(np.concatenate([data.x_train, data.x_val]))
    held_out = [rows_of(data.x_val)] + [rows_of(fold.x_val) for fold in others]
    assert sum(len(part) for part in held_out) == len(everything)  # disjoint ...
    assert set().union(*held_out) == everything  # ... and together every training row
    sizes = [len(data.x_val)] + [len(fold.x_val) for fold in others]
    assert max(sizes) - min(sizes) <= 1
    for fold in others:
        assert rows_of(fold.x_train) == everything - rows_of(fold.x_val)
        assert fold.x_test is None and fold.y_test is None  # the test split is not theirs
        assert len(fold.x_train) == len(fold.y_train) and len(fold.x_val) == len(fold.y_val)
        if data.task == "classification":  # stratified: every class in every fold
            assert set(np.unique(fold.y_val)) == set(np.unique(data.y_train))


def test_folds_too_small_are_one_sentence():
    data = load_dataset("boston", seed=0, val_fraction=0.05)
    tiny = data.__class__(**{**data.__dict__, "x_train": data.x_train[:30],
                             "y_train": data.y_train[:30]})
    with pytest.raises(DataError, match="--cv 5 leaves 8 rows in a fold; a validation split needs at least 10"):
        fold_datasets(tiny, 5, seed=0)


def hand_points(units, metrics, se=0.1):
    return [PathPoint(index, 0.01 * index, {}, total, 0, metric, se, metric ** 2)
            for index, (total, metric) in enumerate(zip(units, metrics))]


def test_unit_budgets_align_the_folds_by_size_not_by_lambda():
    own = hand_points([40, 30, 20, 10], [3.0, 3.1, 3.2, 4.0])
    other = hand_points([40, 35, 22, 18], [3.0, 3.0, 3.3, 3.5])
    records = budget_records("regression", [(own, 100), (other, 100)])
    # Budgets are the run's own sizes; 10 is left out: the other fold never got that small.
    assert [record["total_units"] for record in records] == [40, 30, 20]
    # Each fold's first point at or under the budget (22 <= 30, 18 <= 20).
    assert [record["fold_indices"] for record in records] == [[0, 0], [1, 2], [2, 3]]
    assert [record["index"] for record in records] == [0, 1, 2]
    assert [record["lambda"] for record in records] == [0.0, 0.01, 0.02]
    for record in records:  # equal rows: the pooled RMSE is the root of the mean square
        assert record["val_metric"] == pytest.approx(
            np.sqrt(np.mean(np.square(record["fold_val_metrics"]))), rel=1e-12)
    # The 1-SE rule on budgets: the best is 40 units at 3.0; 30 units (sqrt((3.1^2 + 3.3^2)
    # / 2) = 3.20) is out with the folds' SE 0.1 (pooled over 200 rows: 0.07) and in with
    # 0.4 (pooled: 0.28); 20 units (3.35) is out with both.
    assert select_point(records, "regression", "units") == (0, "units")
    assert records[0]["val_se"] == pytest.approx(0.1 / np.sqrt(2), rel=0.02)
    wide = budget_records("regression", [(hand_points([40, 30, 20, 10], [3.0, 3.1, 3.2, 4.0],
                                                      0.4), 100),
                                         (hand_points([40, 35, 22, 18], [3.0, 3.0, 3.3, 3.5],
                                                      0.4), 100)])
    assert select_point(wide, "regression", "units") == (1, "units")


def test_a_unit_budget_whose_size_returns_later_keeps_the_first_point_there():
    """Units can grow back along a path (a unit revived); a budget takes the first point at
    or under it, wherever later points go, and a fold of one point is a path too."""
    own = hand_points([20, 12, 15, 12], [3.0, 3.2, 3.1, 3.05])
    records = budget_records("regression", [(own, 80)])
    assert [(record["total_units"], record["index"]) for record in records] == [
        (20, 0), (15, 1), (12, 1)]
    assert records[-1]["val_metric"] == pytest.approx(3.2) and records[0]["val_se"] > 0


def test_repeated_pooling_is_all_rows_metric_with_one_repeats_standard_error():
    """Two cuts of the same 300 rows into 3 folds: the metric is that of all 600 scores (for
    RMSE the root of their mean squared error), the SE the mean of each cut's own SE over its
    300 rows, in NumPy, not the smaller SE of 600 independent rows."""
    rng = np.random.default_rng(1)
    squared = rng.gamma(2.0, 1.5, 300) ** 2
    cuts = [np.array_split(rng.permutation(squared), 3) for _ in range(2)]
    cuts[1] = [part * 1.3 for part in cuts[1]]  # the second cut's networks err more
    scores = [(*numpy_rmse_and_se(part), len(part)) for cut in cuts for part in cut]
    rmse, se = pooled_repeats("regression", scores, repeats=2)
    everything = np.concatenate([np.concatenate(cut) for cut in cuts])
    assert rmse == pytest.approx(np.sqrt(everything.mean()), rel=1e-12)
    assert se == pytest.approx(np.mean([numpy_rmse_and_se(np.concatenate(cut))[1]
                                        for cut in cuts]), rel=1e-9)
    assert se > numpy_rmse_and_se(everything)[1] * 1.2  # not 600 independent rows
    assert pooled_repeats("regression", scores[:3]) == pooled("regression", scores[:3])
    hits = [rng.random(size) < 0.9 for size in (100, 100, 101, 100, 100, 101)]
    accuracy, se = pooled_repeats("classification", [(h.mean(), None, len(h)) for h in hits], 2)
    assert accuracy == pytest.approx(np.concatenate(hits).mean(), rel=1e-12)
    first, second = np.concatenate(hits[:3]), np.concatenate(hits[3:])
    assert se == pytest.approx(np.mean([np.sqrt(h.mean() * (1 - h.mean()) / len(h))
                                        for h in (first, second)]), rel=1e-12)


@pytest.mark.parametrize("name", ["boston", "digits"])
def test_a_repeat_cuts_every_training_and_validation_row_into_new_folds(name):
    data = load_dataset(name, seed=3, val_fraction=1 / 5)
    everything = rows_of(np.concatenate([data.x_train, data.x_val]))
    first = [rows_of(data.x_val)] + [rows_of(fold.x_val) for fold in fold_datasets(data, 5, 3)]
    repeat = repeated_folds(data, 5, seed=3, repeat=1)
    held_out = [rows_of(fold.x_val) for fold in repeat]
    assert len(repeat) == 5 and sum(map(len, held_out)) == len(everything)
    assert set().union(*held_out) == everything
    assert all(part not in first for part in held_out)  # another cut than the first
    assert [rows_of(fold.x_val) for fold in repeated_folds(data, 5, 3, 2)] != held_out
    for fold in repeat:
        assert rows_of(fold.x_train) == everything - rows_of(fold.x_val)
        assert fold.x_test is None and len(fold.x_val) == len(fold.y_val)
        assert rows_of(fold.x_train).isdisjoint(rows_of(data.x_test))
        if data.task == "classification":
            assert set(np.unique(fold.y_val)) == set(np.unique(data.y_train))


def one_hidden_layer(width):
    """A 13-width-1 network builder for choose_lambda, GroupSparse on both kernels."""
    import keras

    from common import GroupSparse

    return lambda: keras.Sequential([
        keras.Input((13,)),
        keras.layers.Dense(width, "relu", kernel_regularizer=GroupSparse(1e-3, proximal=True)),
        keras.layers.Dense(1, kernel_regularizer=GroupSparse(1e-3, proximal=True))])


@pytest.mark.slow
@pytest.mark.tensorflow_only  # the rule reads records; choose_lambda on JAX: test_readme.py
def test_choose_lambda_by_unit_budgets_keeps_the_runs_own_first_point_of_the_chosen_size(boston):
    from common import choose_lambda

    found = choose_lambda(one_hidden_layer(10), boston.x_train, boston.y_train, rule="units", folds=2,
                          points=4, epochs=100, point_epochs=100)
    assert found.selected["rule"] == "units, 2-fold cross-validation"
    sizes = [record["total_units"] for record in found.records]  # the budgets, largest first
    assert len(sizes) > 1 and sizes == sorted(set(sizes), reverse=True)
    assert set(sizes) <= {point["total_units"] for point in found.path}
    best = min(found.records, key=lambda record: record["val_metric"])
    size = min(record["total_units"] for record in found.records
               if record["val_metric"] <= best["val_metric"] + best["val_se"])
    first = next(point for point in found.path if point["total_units"] <= size)
    assert found.selected["index"] == first["index"]
    assert len(found.report.kept_inputs) == first["units"]["inputs"]


def test_choose_lambda_by_repeated_cross_validation_pools_every_cut(boston):
    from common import choose_lambda

    found = choose_lambda(one_hidden_layer(8), boston.x_train, boston.y_train, folds=2, repeats=2, points=3,
                          epochs=60, point_epochs=60)
    assert found.selected["rule"] == "1se, 2 x 2-fold cross-validation"
    for record, own in zip(found.records, found.path):
        assert len(record["fold_val_metrics"]) == 4  # two cuts of two folds
        assert record["fold_val_metrics"][0] == own["val_metric"]
    assert found.selected["index"] == select_point(found.records, "regression")[0]


def check_cross_validated_choice(summary, folds):
    cv, path, selected = summary["cv"], summary["path"], summary["selected"]
    assert cv["folds"] == cv["folds_done"] == folds and len(cv["fold_rows"]) == folds
    records = cv["records"]
    assert 1 <= len(records) <= len(path)
    rows = np.asarray(cv["fold_rows"], np.float64)
    for record, own in zip(records, path):
        fold_metrics = np.asarray(record["fold_val_metrics"], np.float64)
        assert fold_metrics[0] == own["val_metric"]  # the run's own split is the first fold
        # Pooled RMSE: the root of the rows' mean squared error over all folds.
        assert record["val_metric"] == pytest.approx(
            np.sqrt(np.sum(rows * fold_metrics ** 2) / rows.sum()), rel=1e-9)
        assert record["lambda"] == own["lambda"]
        assert record["total_units"] == pytest.approx(np.mean(record["fold_total_units"]))
    index, rule = select_point(records, "regression")
    assert selected["index"] == index and selected["rule"] == f"1se, {folds}-fold cross-validation"
    assert summary["units_after"] == path[index]["units"]


@pytest.mark.slow
@pytest.mark.parametrize("demo", [pytest.param(demo_tensorflow, marks=pytest.mark.tensorflow_only),
                                  demo_keras])
def test_both_demos_choose_on_the_pooled_folds(tmp_path, demo):
    summary = demo.main(["--path", "--cv", "2", "--epochs", "50", "--path-epochs", "25",
                         "--path-points", "2", "--no-show", "--logdir", str(tmp_path)])
    assert summary["status"] == "completed"
    check_cross_validated_choice(summary, 2)
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((run_dir / "run.json").read_text())["cv"] == summary["cv"]
    # TensorBoard: the pooled curve by point index, read back from the event files.
    curve = read_scalars(run_dir)["path/cv_val_rmse"]
    records = summary["cv"]["records"]
    assert [step for step, _ in curve] == [record["index"] for record in records]
    assert [value for _, value in curve] == pytest.approx(
        [record["val_metric"] for record in records], rel=1e-6)


@pytest.mark.slow
def test_a_demo_with_repeated_folds_pools_each_cut_in_turn(tmp_path, monkeypatch, capsys):
    """The library's repeats in a demo run (as benchmarks/variants.py patches it in): the run's
    own 2 folds first, then a second cut's 2; each cut's held-out rows are all the training
    rows; each record's SE is the mean of the two cuts' own pooled SEs (from the folds'
    metrics, SEs and rows), its metric that of all four folds; run.json and the table say 2 x."""
    import functools

    import common.search.choose
    import common.run.stages

    monkeypatch.setattr(common.run.stages, "PathSettings",
                        functools.partial(common.search.choose.PathSettings, repeats=2))
    summary = demo_keras.main(["--path", "--cv", "2", "--epochs", "40", "--path-epochs", "20",
                               "--path-points", "2", "--no-show", "--logdir", str(tmp_path)])
    cv = summary["cv"]
    assert cv["repeats"] == 2 and cv["folds"] == 2 and cv["folds_done"] == 4
    rows = np.asarray(cv["fold_rows"], np.float64)
    assert rows[:2].sum() == rows[2:].sum() == rows[0] + rows[1]
    assert summary["selected"]["rule"] == "1se, 2 x 2-fold cross-validation"
    assert "2 x 2 folds: rmse" in capsys.readouterr().out
    for record in cv["records"]:
        metrics = np.asarray(record["fold_val_metrics"], np.float64)
        ses = np.asarray(record["fold_val_ses"], np.float64)
        assert record["val_metric"] == pytest.approx(
            np.sqrt(np.sum(rows * metrics ** 2) / rows.sum()), rel=1e-9)
        cut_ses = [pooled("regression", list(zip(metrics[cut], ses[cut], rows[cut])))[1]
                   for cut in (slice(0, 2), slice(2, 4))]  # pooled: checked on rows above
        assert record["val_se"] == pytest.approx(np.mean(cut_ses), rel=1e-9)


def test_repeats_need_folds_and_are_at_least_one():
    from common.search.choose import PathSettings

    for repeats, folds in [(0, 5), (2, None)]:
        with pytest.raises(ValueError, match="repeats"):
            PathSettings(group_strength=1e-3, folds=folds, repeats=repeats)
    assert PathSettings(group_strength=1e-3, folds=5, repeats=2).repeats == 2


@pytest.mark.slow
@pytest.mark.tensorflow_only
def test_the_folds_never_read_the_test_split(tmp_path, monkeypatch):
    from tests.helpers import WatchedDataset

    events = []
    monkeypatch.setattr(WatchedDataset, "events", events)  # the folds' copies log here too
    import common.run.stages

    finish_path = common.run.stages.finish_path
    monkeypatch.setattr(common.run.stages, "finish_path",
                        lambda *args, **kwargs: events.append("selected") or
                        finish_path(*args, **kwargs))
    config = parse_config(["--path", "--cv", "2", "--epochs", "50", "--path-epochs", "25",
                           "--path-points", "2", "--logdir", str(tmp_path)])
    plain = load_dataset("boston", seed=0, val_fraction=1 / 2)
    data = WatchedDataset(**{field: getattr(plain, field) for field in plain.__dataclass_fields__})
    summary = demo_tensorflow.train(config, data)
    assert summary["cv"]["folds_done"] == 2
    assert events[0] == "selected" and "test read" in events


@pytest.mark.slow
@pytest.mark.tensorflow_only
def test_interrupted_during_the_folds_keeps_the_path_and_says_so(tmp_path, monkeypatch):
    import common.search.crossval

    train = common.search.crossval.FoldTrainer.train
    calls = []

    def stopped_at_the_second_point(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # the folds' dense networks, point 1 on every fold, then this
            raise KeyboardInterrupt
        return train(self, *args, **kwargs)

    monkeypatch.setattr(common.search.crossval.FoldTrainer, "train", stopped_at_the_second_point)
    summary = demo_tensorflow.main(["--path", "--cv", "3", "--epochs", "50", "--path-epochs",
                                    "25", "--path-points", "2", "--logdir", str(tmp_path)])
    assert summary["status"] == "interrupted" and len(calls) == 3
    assert summary["cv"]["folds_done"] == 1 and "records" not in summary["cv"]
    assert "not every fold finished" in summary["cv"]["note"]
    assert summary["selected"]["rule"] == "1se" and len(summary["path"]) >= 2


def test_the_largest_seed_carves_a_validation_split_and_folds():
    """--seed takes 0 .. 2**32 - 1; the validation split and the folds derive their own seeds
    from it, which must stay in scikit-learn's range (seed + 1 at the top was a traceback)."""
    from common.run.config import MAX_SEED

    data = load_dataset("boston", seed=MAX_SEED, val_fraction=0.2)
    assert len(fold_datasets(data, 5, seed=MAX_SEED)) == 4
