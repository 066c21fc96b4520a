"""The Keras demo where TensorFlow cannot be imported (tests/without_tensorflow.py; CI also
runs the Keras-side tests in an environment without it): the run, its event file read back
by TensorBoard's own reader, and the TF demo's one sentence."""

import json

import pytest

from tests.helpers import read_events, run_script

pytestmark = pytest.mark.backends
FLAGS = ["--epochs", "60", "--solver", "proximal", "--group", "0.003", "--lr", "0.01",
         "--batch-size", "128", "--no-show"]


def test_the_keras_demo_runs_on_jax_without_tensorflow(tmp_path):
    pytest.importorskip("jax")
    ran = run_script("tests/without_tensorflow.py", "demo_keras.py", *FLAGS, "--logdir",
                     str(tmp_path), env={"KERAS_BACKEND": "jax"})
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "tensorflow modules imported: []" in ran.stdout
    (run_dir,) = tmp_path.iterdir()
    summary = json.loads((run_dir / "run.json").read_text())
    assert summary["status"] == "completed" and summary["backend"] == "jax"
    assert (run_dir / "history.png").stat().st_size > 0
    events = read_events(run_dir)
    assert [step for step, _ in events["neurons"]] == list(range(1, 61))
    units = summary["units_after"]
    assert events["neurons"][-1][1] == units["inputs"] + sum(units["hidden"])
    # The HParams trial is a run of its own: the settings, then the results.
    results = read_events(run_dir / "trial")
    assert results["result/active_units"][0][1] == units["inputs"] + sum(units["hidden"])
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    accumulator = event_accumulator.EventAccumulator(
        str(run_dir / "trial"), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    content = accumulator.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    trial = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert trial.group_name.startswith("Keras ") and trial.group_name.endswith(f"({run_dir.name})")
    assert trial.hparams["solver"].string_value == "proximal"
    assert trial.hparams["backend"].string_value == "jax"
    assert "patience" not in trial.hparams  # None: no column of Nones
    accumulator = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0})
    accumulator.Reload()
    from tensorboard.util.tensor_util import make_ndarray

    histogram = make_ndarray(accumulator.Tensors("weights/group_norms/inputs")[-1].tensor_proto)
    assert histogram.shape[1] == 3 and histogram[:, 2].sum() == 13
    width, height, png = make_ndarray(accumulator.Tensors("weights/kernels/inputs")[-1].tensor_proto)
    assert (int(width), int(height)) == (20, 13) and png.startswith(b"\x89PNG")


def test_the_tensorflow_demo_says_it_needs_tensorflow_in_one_sentence():
    ran = run_script("tests/without_tensorflow.py", "demo_tensorflow.py", "--epochs", "5")
    assert ran.returncode == 2
    (line,) = ran.stderr.strip().splitlines()
    assert "needs TensorFlow, which is not installed: pip install -r requirements.txt" in line
