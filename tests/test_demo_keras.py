"""demo_keras.main() end to end: the picture, run.json and saved model a user would look at."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

import demo_keras
from common import GroupSparse, count_active_units

EPOCHS = 50


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("summaries")
    model_path = logdir.parent / "trained.keras"
    summary = demo_keras.main(["--epochs", str(EPOCHS), "--group", "0.05", "--no-show",
                               "--logdir", str(logdir), "--save-model", str(model_path)])
    return logdir, summary, model_path


def test_picture_is_a_real_image(short_run):
    logdir, summary, _ = short_run
    (run_dir,) = logdir.iterdir()
    picture = run_dir / "history.png"
    assert summary["history_png"] == str(picture)
    with Image.open(picture) as image:
        assert image.format == "PNG" and image.width >= 600 and image.height >= 600
        # Not a blank canvas: the curves put many distinct colours on it.
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
        assert len(np.unique(pixels, axis=0)) > 50


def test_run_json_counts_equal_a_recount_of_the_saved_model(short_run):
    logdir, summary, model_path = short_run
    (run_dir,) = logdir.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record == json.loads(json.dumps(summary))
    assert record["demo"] == "keras" and record["status"] == "completed"
    assert record["steps"] == EPOCHS
    loaded = keras.saving.load_model(model_path)
    recount = count_active_units(loaded, record["config"]["threshold"])
    assert record["units_after"] == recount.as_dict()
    assert record["surviving_features"] == recount.surviving_features(
        record["dataset"]["feature_names"])


def test_saved_model_keeps_its_penalty(short_run):
    _, _, model_path = short_run
    loaded = keras.saving.load_model(model_path)
    regularizers = [layer.kernel_regularizer for layer in loaded.layers]
    assert all(isinstance(regularizer, GroupSparse) for regularizer in regularizers)
    assert regularizers[0].group == 0.05
    expected = sum(float(r(layer.kernel)) for r, layer in zip(regularizers, loaded.layers))
    assert float(sum(loaded.losses)) == pytest.approx(expected, rel=1e-6) and expected > 0


def test_one_history_point_per_epoch(tmp_path):
    history = {}

    def keep(epochs_done):
        history["epochs"] = epochs_done

    summary = demo_keras.main(["--epochs", "30", "--eval-every", "7", "--no-show", "--logdir",
                               str(tmp_path)], on_progress=keep)
    # 30 epochs in chunks of 6 (the largest divisor of 30 not above 7): still 30 points.
    assert history["epochs"] == 30 and summary["steps"] == 30


def test_digits_classification_end_to_end(tmp_path):
    summary = demo_keras.main(["--dataset", "digits", "--epochs", "30", "--batch-size", "300",
                               "--no-show", "--logdir", str(tmp_path)])
    assert summary["status"] == "completed" and summary["steps"] == 30 * 5
    assert 0.5 < summary["test"]["accuracy"] <= 1.0


def test_headless_without_display_raises_nothing(tmp_path, monkeypatch, recwarn):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    summary = demo_keras.main(["--epochs", "5", "--logdir", str(tmp_path)])
    assert summary["status"] == "completed"
    assert not [warning for warning in recwarn if "matplotlib" in str(warning.filename)]


def test_interrupted_run_still_saves_picture_and_record(tmp_path):
    def interrupt(epochs_done):
        if epochs_done >= 50:
            raise KeyboardInterrupt

    summary = demo_keras.main(["--epochs", "500", "--no-show", "--logdir", str(tmp_path)],
                              on_progress=interrupt)
    (run_dir,) = tmp_path.iterdir()
    assert summary["status"] == "interrupted" and summary["steps"] == 50
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert (run_dir / "history.png").stat().st_size > 10_000


def test_diverging_run_stops_with_status_diverged(tmp_path):
    summary = demo_keras.main(["--epochs", "200", "--lr", "1e30", "--no-show", "--logdir",
                               str(tmp_path)])
    assert summary["status"] == "diverged" and summary["steps"] < 200
    assert np.isfinite(summary["units_after"]["inputs"])
