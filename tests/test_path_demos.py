"""The path in both demos, end to end: the test split read only after the choice, the
points' TensorBoard runs and pictures, a point that diverges, a stop in the middle."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

import demo_keras
import demo_tensorflow
from common.run.config import parse_config
from common.data.datasets import DataError, load_dataset
from common.training.model import build_model, metric_and_standard_error
from tests.helpers import WatchedDataset, demo_penalties, raw_inputs, read_scalars


@pytest.mark.slow
@pytest.mark.parametrize("demo", [pytest.param(demo_tensorflow, marks=pytest.mark.tensorflow_only),
                                  pytest.param(demo_keras, marks=pytest.mark.backends)])
def test_the_test_split_is_read_only_after_selection(tmp_path, monkeypatch, demo):
    import common.search.choose

    events = []
    finish_path = common.run.stages.finish_path

    def watched_finish_path(*args, **kwargs):
        events.append("selected")
        return finish_path(*args, **kwargs)

    monkeypatch.setattr(common.run.stages, "finish_path", watched_finish_path)
    config = parse_config(["--path", "--epochs", "50", "--path-epochs", "25", "--path-points",
                           "3", "--no-show", "--logdir", str(tmp_path)],
                          demo.DEMO)
    plain = load_dataset("boston", seed=0, val_fraction=0.2)
    data = WatchedDataset(**{field: getattr(plain, field) for field in plain.__dataclass_fields__})
    data.events = events
    summary = demo.train(config, data)
    assert summary["status"] == "completed" and events[0] == "selected"
    assert "test read" in events  # read afterwards, once the network is chosen


@pytest.mark.slow
def test_tensorflow_demo_path_end_to_end(tmp_path):
    summary = demo_tensorflow.main(["--path", "--epochs", "100", "--path-epochs", "25",
                                    "--path-points", "4", "--logdir", str(tmp_path)])
    (run_dir,) = tmp_path.iterdir()
    record_ = json.loads((run_dir / "run.json").read_text())
    path, selected = record_["path"], record_["selected"]
    assert path[0]["lambda"] == 0.0 and len(path) <= 5
    assert all(b["lambda"] > a["lambda"] for a, b in zip(path, path[1:]))
    assert selected["rule"] == "1se" and selected["lambda"] == path[selected["index"]]["lambda"]
    chosen = path[selected["index"]]
    assert record_["units_after"] == chosen["units"]
    assert set(chosen) >= {"lambda", "units", "params", "val_metric", "val_se"}
    # Each point is its own TensorBoard run and trial; the main run has path/* by point index.
    for point in path:
        scalars = read_scalars(run_dir / f"path-{point['index']:02d}")
        assert scalars["result/active_units"] == [(point["index"], point["total_units"])]
    assert [step for step, _ in read_scalars(run_dir)["path/val_rmse"]] == list(range(len(path)))
    assert "val/rmse" in read_scalars(run_dir) and "test/rmse" not in read_scalars(run_dir)
    # The saved pruned network reproduces the selected point's validation metric.
    pruned = keras.saving.load_model(run_dir / "pruned.keras")
    data = load_dataset("boston", seed=0, val_fraction=0.2)
    kept = summary["pruned"]["kept_inputs"]
    predictions = pruned.predict(raw_inputs(data, data.x_val, kept), verbose=0)  # in $1000s
    scaled = (predictions - data.target_min) / (data.target_max - data.target_min)
    metric, _ = metric_and_standard_error(data, data.y_val, scaled)
    assert metric == pytest.approx(chosen["val_metric"], rel=1e-5)


@pytest.mark.slow
@pytest.mark.backends
def test_keras_demo_path_end_to_end_and_interrupted(tmp_path):
    summary = demo_keras.main(["--path", "--epochs", "50", "--path-epochs", "25",
                               "--path-points", "3", "--max-units", "40", "--no-show",
                               "--logdir", str(tmp_path / "full"),
                               "--save-model", str(tmp_path / "chosen.keras")])
    (run_dir,) = (tmp_path / "full").iterdir()
    # The saved model carries the strength it was chosen with, not the base (#29 item 11).
    import common  # noqa: F401  (GroupSparse, for loading)

    saved_model = keras.saving.load_model(tmp_path / "chosen.keras")
    assert [layer.kernel_regularizer.group_strength for layer in saved_model.layers] == \
        pytest.approx([summary["selected"]["lambda"]] * 3, rel=1e-6)
    # Every point trained at its own lambda.
    assert summary["path"][-1]["total_units"] < summary["path"][0]["total_units"]
    if any(point["total_units"] <= 40 for point in summary["path"]):
        assert summary["selected"]["rule"] == "max-units 40"
        assert summary["path"][summary["selected"]["index"]]["total_units"] <= 40
    else:  # none is that small, and the rule says so
        assert summary["selected"]["rule"].startswith("max-units 40 (no point has at most 40")
    rows = (run_dir / "path.csv").read_text().splitlines()
    assert len(rows) == 1 + len(summary["path"]) and rows[0].startswith("index,lambda,inputs")
    # TensorBoard, as in the TF demo: each point a trial of its own, path/* by point index.
    for point in summary["path"]:
        scalars = read_scalars(run_dir / f"path-{point['index']:02d}")
        assert scalars["result/active_units"] == [(point["index"], point["total_units"])]
    assert [step for step, _ in read_scalars(run_dir)["path/units"]] == [
        point["index"] for point in summary["path"]]
    with Image.open(run_dir / "path.png") as image:
        assert image.width >= 600 and len(np.unique(np.asarray(image.convert("RGB")).reshape(
            -1, 3), axis=0)) > 20

    def interrupt(epochs_done):
        if epochs_done >= 100:  # point 2 trained and measured, being shown
            raise KeyboardInterrupt

    demo_keras.main(["--path", "--epochs", "50", "--path-epochs", "25",
                               "--path-points", "5", "--no-show", "--logdir",
                               str(tmp_path / "stopped")], on_progress=interrupt)
    (stopped_dir,) = (tmp_path / "stopped").iterdir()
    saved = json.loads((stopped_dir / "run.json").read_text())
    assert saved["status"] == "interrupted" and len(saved["path"]) == 3  # dense, points 1, 2
    assert saved["path_ended"] == "interrupted" and saved["selected"] is not None


def test_a_validation_split_too_small_is_refused(tmp_path):
    rows = "".join(f"{i},{i % 5},{2 * i}\n" for i in range(24))
    path = tmp_path / "tiny.csv"
    path.write_text("a,b,y\n" + rows)
    with pytest.raises(DataError, match="a validation split needs at least 10"):
        load_dataset("csv", csv_path=path, target="y", val_fraction=0.2)


@pytest.mark.slow
@pytest.mark.parametrize("demo", [pytest.param(demo_tensorflow, marks=pytest.mark.tensorflow_only),
                                  pytest.param(demo_keras, marks=pytest.mark.backends)])
def test_a_path_point_that_diverges_ends_the_path_not_the_run(tmp_path, demo, monkeypatch):
    """The engine trains the path: a point whose loss overflows (lambda 1e38 in the loss,
    past the command line's bound, so given to the path directly) ends the path there; the
    points before it stand, one of them is chosen and pruned, and nobody is told to lower
    --lr (#29 item 6)."""
    import common.search.choose

    monkeypatch.setattr(common.search.choose, "lambda_grid", lambda *args: [1e-4, 1e38])
    summary = demo.main(["--path", "--solver", "subgradient", "--path-points", "2",
                         "--epochs", "5", "--path-epochs", "5", "--no-show",
                         "--logdir", str(tmp_path)])
    assert summary["status"] == "completed" and summary["message"] is None
    assert summary["path_ended"] == "the loss became not finite at lambda 1e+38"
    assert len(summary["path"]) == 2 and summary["selected"]["index"] in (0, 1)
    (run_dir,) = tmp_path.iterdir()
    assert (run_dir / "pruned.keras").is_file() and summary["units_after"] is not None


@pytest.mark.parametrize("demo", [pytest.param(demo_tensorflow, marks=pytest.mark.tensorflow_only),
                                  pytest.param(demo_keras, marks=pytest.mark.backends)])
def test_a_path_whose_dense_network_diverges_says_so_and_stops_there(tmp_path, demo):
    """With --path the engine trains the dense network too: a loss that is not finite there
    ends the run as "diverged" (no path, no model saved), after the first compiled call, in
    a sentence rather than a traceback."""
    summary = demo.main(["--path", "--lr", "1e30", "--epochs", "1200", "--path-points", "2",
                         "--no-show", "--logdir", str(tmp_path)])
    assert summary["status"] == "diverged" and "the loss became" in summary["message"]
    assert summary["path"] == [] and summary["selected"] is None
    assert summary["steps"] <= 250  # the first compiled call (250 steps) diverged: no more
    (run_dir,) = tmp_path.iterdir()
    assert (run_dir / "run.json").is_file() and not (run_dir / "pruned.keras").exists()


def test_a_stop_during_the_lambda_max_probe_leaves_the_network_whole(monkeypatch):
    """The probe zeroes one row at a time to measure its gradient: a Ctrl-C in the middle
    must not leave a row of the run's network at zero (#29 item 2)."""
    import common.search.path

    data = load_dataset("boston", val_fraction=0.2)
    config = parse_config(["--path"])
    model = build_model(data, config.hidden, demo_penalties(config))
    before = [np.array(weight) for weight in model.get_weights()]
    real, calls = common.search.path.gradient_numpy, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # inside the first kernel, after two rows
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(common.search.path, "gradient_numpy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        common.search.path.layer_lambda_max(model, data.x_train, data.y_train, data.task)
    for weight, old in zip(model.get_weights(), before):
        np.testing.assert_array_equal(weight, old)
    monkeypatch.setattr(common.search.path, "gradient_numpy", real)
    tops = common.search.path.layer_lambda_max(model, data.x_train, data.y_train, data.task)
    assert len(tops) == 3 and all(top > 0 for top in tops)
    for weight, old in zip(model.get_weights(), before):
        np.testing.assert_array_equal(weight, old)


def test_a_path_stopped_by_sigterm_says_terminated_in_both_fields(tmp_path):
    """run.json's `path_ended` names the same ending as `status` (#29 item 12)."""
    from common.run.lifecycle import Stopped

    def terminate(steps_done):
        if steps_done > 60:  # the dense network (50 steps) done, the path under way
            raise Stopped("terminated")

    summary = demo_tensorflow.main(["--path", "--epochs", "50", "--path-epochs", "10",
                                    "--path-points", "5", "--logdir", str(tmp_path)],
                                   on_progress=terminate)
    assert summary["status"] == "terminated" and summary["path_ended"] == "terminated"
    assert 1 <= len(summary["path"]) < 6


@pytest.mark.backends
def test_a_path_runs_pictures_show_its_points_and_the_choice(tmp_path, monkeypatch):
    """history.png of a --path run (#32 item 6): its title names the path and the chosen
    lambda (not the base strength), every kept point's end is marked, and the chosen one's
    units are the chosen network's; path.png's 1-SE line is the bound the rule applied."""
    import common.outputs.pictures
    from common.outputs.path_outputs import one_se_bound

    drawn = {}
    plot_history = common.outputs.pictures.plot_history

    def watched_plot_history(records, title, path, split, points, chosen, figure=None):
        drawn.update(records=records, title=title, points=points, chosen=chosen)
        return plot_history(records, title, path, split, points, chosen, figure)

    monkeypatch.setattr(common.outputs.pictures, "plot_history", watched_plot_history)
    summary = demo_keras.main(["--path", "--epochs", "40", "--path-epochs", "10",
                               "--path-points", "5", "--no-show", "--logdir", str(tmp_path)])
    selected, path = summary["selected"], summary["path"]
    assert f"lambda path of {len(path)} points" in drawn["title"]
    assert f"chosen lambda {selected['lambda']:.3g} (1se rule)" in drawn["title"]
    assert "group" not in drawn["title"]
    assert [index for index, _, _ in drawn["points"]] == [point["index"] for point in path]
    ends = [end for _, _, end in drawn["points"]]
    assert ends == [40 + 10 * index for index in range(len(path))]  # dense 40, 10 a point
    assert drawn["chosen"] == selected["index"]
    chosen_end = ends[selected["index"]]
    assert sum(drawn["records"]["units"][chosen_end - 1]) == path[selected["index"]][
        "total_units"] == summary["units_after"]["inputs"] + sum(summary["units_after"]["hidden"])
    # The 1-SE rule: the chosen point is under the bound; no smaller network is.
    bound = one_se_bound(path, "regression")
    assert path[selected["index"]]["val_metric"] <= bound
    assert all(point["val_metric"] > bound for point in path
               if point["total_units"] < path[selected["index"]]["total_units"])
