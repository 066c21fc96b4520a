"""demo_tensorflow.main() end to end: the event files and run.json a user would look at."""

import json

import numpy as np
import pytest

import demo_tensorflow
from common.run.lifecycle import exit_code
from tests.helpers import read_events, read_scalars, run_script

pytestmark = pytest.mark.slow  # end-to-end runs of the demo
EPOCHS = 60


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("summaries")
    summary = demo_tensorflow.main(["--epochs", str(EPOCHS), "--group", "0.05", "--logdir",
                                    str(logdir)])
    return logdir, summary


def test_every_tag_has_one_value_per_step(short_run):
    logdir, summary = short_run
    (run_dir,) = logdir.iterdir()
    assert run_dir.name.endswith("-tensorflow")
    scalars = read_scalars(run_dir)
    for tag in ["loss", "reg_loss", "neurons", "units/inputs", "units/hidden_1", "units/hidden_2"]:
        assert [step for step, _ in scalars[tag]] == list(range(1, EPOCHS + 1)), tag
    assert [step for step, _ in scalars["test/rmse"]] == [25, 50, 60]
    assert [step for step, _ in scalars["test/loss"]] == [25, 50, 60]
    units = summary["units_after"]
    assert scalars["neurons"][-1][1] == units["inputs"] + sum(units["hidden"])
    assert scalars["units/hidden_2"][-1][1] == units["hidden"][1]
    assert scalars["test/rmse"][-1][1] == pytest.approx(summary["test"]["rmse"], rel=1e-6)
    # The loss is the data loss alone: the penalty is its own tag.
    assert all(value > 0 for _, value in scalars["reg_loss"])
    config_text = read_events(run_dir)["config"][0][1].decode()
    assert f"| epochs | {EPOCHS} |" in config_text


def test_pictures_about_twenty_times_and_at_the_last_step(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator

    from common.outputs.tensorboard import PICTURES_PER_RUN

    demo_tensorflow.main(["--epochs", "100", "--eval-every", "2", "--logdir", str(tmp_path)])
    (run_dir,) = tmp_path.iterdir()
    accumulator = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    for tag in ["weights/group_norms/inputs", "weights/kernels/hidden_1"]:
        steps = [event.step for event in accumulator.Tensors(tag)]
        # Chunks of 2 steps: the one that reaches each multiple of 100 / 20 = 5 steps.
        expected = [2 * -(-multiple // 2) for multiple in range(5, 101, 5)]
        assert steps == expected and len(steps) == PICTURES_PER_RUN, tag
    assert len(accumulator.Tensors("test/rmse")) == 50  # the evaluations stay every chunk


def test_run_json_is_what_main_returned(short_run):
    logdir, summary = short_run
    (run_dir,) = logdir.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record == json.loads(json.dumps(summary))
    assert record["demo"] == "tensorflow" and record["status"] == "completed"
    assert record["steps"] == EPOCHS and record["config"]["epochs"] == EPOCHS
    assert record["units_before"] == {"inputs": 13, "hidden": [20, 15]}
    assert record["dataset"]["feature_names"][-1] == "LSTAT"
    assert set(record["test"]) == {"rmse", "loss"} and record["ms_per_step"] > 0
    assert (run_dir / "pruned.keras").is_file()
    # The whole pruning report reaches run.json: the surviving features by name, the folds.
    pruned = record["pruned"]
    assert pruned["kept_feature_names"] == [record["dataset"]["feature_names"][index]
                                            for index in pruned["kept_inputs"]]
    assert pruned["kept_feature_names"] == record["surviving_features"]
    assert isinstance(pruned["folded_units"], int) and pruned["architecture_before"] == [13, 20, 15, 1]
    assert sorted(record["files"]) == ["pruned.keras", "run.json"] and record["not_written"] == []


def test_same_seed_same_counts(short_run, tmp_path):
    _, summary = short_run
    again = demo_tensorflow.main(["--epochs", str(EPOCHS), "--group", "0.05", "--logdir",
                                  str(tmp_path)])
    assert again["units_after"] == summary["units_after"]
    assert again["test"]["rmse"] == pytest.approx(summary["test"]["rmse"], rel=1e-5)


def test_digits_classification_end_to_end(tmp_path):
    summary = demo_tensorflow.main(["--dataset", "digits", "--epochs", "30", "--batch-size",
                                    "300", "--logdir", str(tmp_path)])
    assert summary["status"] == "completed" and summary["steps"] == 30 * 5
    assert 0.5 < summary["test"]["accuracy"] <= 1.0
    assert summary["units_before"]["inputs"] == 64
    (run_dir,) = tmp_path.iterdir()
    assert [step for step, _ in read_scalars(run_dir)["test/accuracy"]][-1] == 150


def test_interrupted_run_keeps_a_readable_record(tmp_path):
    def interrupt(steps_done):
        if steps_done >= 50:
            raise KeyboardInterrupt

    summary = demo_tensorflow.main(["--epochs", "1000", "--logdir", str(tmp_path)],
                                   on_progress=interrupt)
    (run_dir,) = tmp_path.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == summary["status"] == "interrupted" and record["steps"] == 50
    assert len(read_scalars(run_dir)["neurons"]) == 50


def test_diverging_run_saves_no_model_and_reports_it_consistently(tmp_path, capsys):
    summary = demo_tensorflow.main(["--epochs", "200", "--lr", "1e30", "--logdir", str(tmp_path)])
    assert summary["status"] == "diverged" and summary["steps"] < 200 and exit_code(summary) == 1
    assert "training stopped" in capsys.readouterr().err
    (run_dir,) = tmp_path.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "diverged" and record["final_loss"] is None
    # No counts or pruning of NaN weights, and no model file full of NaN.
    assert record["units_after"] is None and record["pruned"] is None
    assert not (run_dir / "pruned.keras").exists()
    assert sorted(path.name for path in run_dir.iterdir() if not path.name.startswith("events")) \
        == ["run.json", "trial"]  # trial: the HParams trial, TensorBoard's run of its own


def test_pruned_model_reproduces_the_reported_metric_from_the_surviving_features(short_run):
    import keras

    from common.data.datasets import load_dataset
    from tests.helpers import raw_inputs

    logdir, summary = short_run
    (run_dir,) = logdir.iterdir()
    pruned = keras.saving.load_model(run_dir / "pruned.keras")
    data = load_dataset("boston", seed=0)
    kept = summary["pruned"]["kept_inputs"]
    assert pruned.input_shape[1] == len(kept) == summary["units_after"]["inputs"]
    # The file takes raw feature values and predicts MEDV in $1000s.
    predictions = pruned.predict(raw_inputs(data, data.x_test, kept), verbose=0)
    truth = data.inverse_transform_target(data.y_test)
    rmse = float(np.sqrt(np.mean((np.asarray(predictions, np.float64) - truth) ** 2)))
    assert rmse == pytest.approx(summary["pruned"]["test"]["rmse"], rel=1e-5)
    assert rmse == pytest.approx(summary["thresholded_test"]["rmse"], abs=1e-4)


def test_runs_on_tensorflow_whatever_keras_backend_says(tmp_path):
    completed = run_script("demo_tensorflow.py", "--epochs", "5", "--logdir", str(tmp_path),
                           env={"KERAS_BACKEND": "jax"})
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert ("note: demo_tensorflow.py is a TensorFlow training loop, so it runs Keras on "
            "TensorFlow and not on KERAS_BACKEND=jax") in completed.stderr
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((run_dir / "run.json").read_text())["backend"] == "tensorflow"
