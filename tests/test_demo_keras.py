"""demo_keras.main() end to end: the picture, run.json and saved model a user would look at."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

import demo_keras
from common import GroupSparse, count_active_units
from common.lifecycle import exit_code

pytestmark = [pytest.mark.slow, pytest.mark.backends]  # end-to-end runs, every backend
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
    # kernels.png: one heatmap per kernel, the README's promise beside history.png.
    with Image.open(run_dir / "kernels.png") as image:
        assert image.format == "PNG" and image.width >= 900
        assert len(np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)) > 50


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
    assert regularizers[0].group_strength == 0.05
    expected = sum(float(r(layer.kernel)) for r, layer in zip(regularizers, loaded.layers))
    assert float(sum(loaded.losses)) == pytest.approx(expected, rel=1e-6) and expected > 0


def test_one_history_point_per_epoch_whatever_the_epoch_count_factorizes_into(tmp_path):
    seen = []
    summary = demo_keras.main(["--epochs", "31", "--eval-every", "7", "--no-show", "--logdir",
                               str(tmp_path)], on_progress=seen.append)
    # 31 is prime: chunks of 7 epochs (one graph call each), then one of 3; a test
    # evaluation after each chunk, so every 7 epochs and at the end.
    assert seen == [7, 14, 21, 28, 31] and summary["steps"] == 31
    (run_dir,) = tmp_path.iterdir()
    rows = (run_dir / "history.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == list(range(1, 32))
    tested = [int(row.split(",")[0]) for row in rows if row.split(",")[-1]]
    assert tested == [7, 14, 21, 28, 31]


def test_digits_classification_end_to_end(tmp_path):
    summary = demo_keras.main(["--dataset", "digits", "--epochs", "30", "--batch-size", "300",
                               "--no-show", "--logdir", str(tmp_path)])
    assert summary["status"] == "completed" and summary["steps"] == 30 * 5
    assert 0.5 < summary["test"]["accuracy"] <= 1.0


def test_headless_without_display_opens_no_window(tmp_path, monkeypatch, recwarn):
    import matplotlib.pyplot as plt

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    shown = []
    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: shown.append(True))
    summary = demo_keras.main(["--epochs", "5", "--logdir", str(tmp_path)])
    assert summary["status"] == "completed" and shown == []
    assert plt.get_fignums() == []  # the figure was closed, not left for a window
    assert not [warning for warning in recwarn if "non-interactive" in str(warning.message)]


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


def test_diverging_run_saves_no_model_and_reports_it_consistently(tmp_path):
    model_path = tmp_path / "trained.keras"
    logdir = tmp_path / "runs"
    summary = demo_keras.main(["--epochs", "200", "--lr", "1e30", "--no-show", "--logdir",
                               str(logdir), "--save-model", str(model_path)])
    assert summary["status"] == "diverged" and summary["steps"] < 200 and exit_code(summary) == 1
    assert summary["final_loss"] is None and summary["units_after"] is None
    assert summary["pruned"] is None and not model_path.exists()
    (run_dir,) = logdir.iterdir()
    assert not (run_dir / "pruned.keras").exists()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "diverged"
