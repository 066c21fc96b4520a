"""demo_keras.main() end to end: the picture, run.json and saved model a user would look at."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

import demo_keras
from common import GroupSparse, count_active_units
from common.run.lifecycle import exit_code

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


def test_on_a_display_the_window_shows_the_figure_that_history_png_holds(tmp_path, monkeypatch):
    """Saving kernels.png (and path.png) after the history once switched pyplot to Agg, which
    closed the history's open figure: plt.show() had nothing to show on a display. The one
    figure open at plt.show() is the history's, and drawn again it is history.png."""
    import matplotlib

    matplotlib.use("Agg")  # this test's own pyplot: no real window opens
    import matplotlib.pyplot as plt

    import common.outputs.pictures

    drawn, plot_history = [], common.outputs.pictures.plot_history
    monkeypatch.setattr(common.outputs.pictures, "plot_history",
                        lambda *args: drawn.append(plot_history(*args)) or drawn[-1])
    monkeypatch.setenv("DISPLAY", ":0")
    shown = []
    monkeypatch.setattr(plt, "show", lambda *args, **kwargs: shown.append(
        [plt.figure(number) for number in plt.get_fignums()]))
    try:
        summary = demo_keras.main(["--epochs", "30", "--path", "--path-points", "2",
                                   "--path-epochs", "5", "--logdir", str(tmp_path)])
        (figures,) = shown
        (figure,) = figures
        assert drawn == [figure]  # the figure that was saved as history.png
        assert summary["status"] == "completed"
        assert figure.get_suptitle().startswith("boston: 13-20-15-1, lambda path")
        figure.savefig(tmp_path / "shown.png", dpi=100)
    finally:
        plt.close("all")
    saved = np.asarray(Image.open(summary["history_png"]).convert("L"), np.float64)
    again = np.asarray(Image.open(tmp_path / "shown.png").convert("L"), np.float64)
    # Drawn again, it is history.png up to antialiasing (0.7 % of pixels differ in one run).
    assert saved.shape == again.shape and np.mean(saved != again) < 0.02


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


def test_the_pruned_file_predicts_from_raw_csv_rows_in_the_target_units(short_run):
    """pruned.keras takes the kept features' raw values, as in the CSV, and predicts MEDV in
    $1000s: checked against NumPy (the split by scikit-learn, the scaling from the raw
    training rows, the forward pass through the file's Dense weights) and the run's RMSE.
    It loads in a process that never imports this repository, with safe_mode on."""
    from sklearn.model_selection import train_test_split

    from tests.helpers import ROOT, run_script

    logdir, summary, _ = short_run
    (run_dir,) = logdir.iterdir()
    table = np.genfromtxt(ROOT / "common" / "data" / "boston_house_prices.csv", delimiter=",",
                          skip_header=1, names=True)  # line 1: the row and column counts
    names = list(table.dtype.names)
    raw = np.stack([table[name] for name in names], axis=1)
    x, y = raw[:, :-1], raw[:, -1]
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0)
    kept = summary["pruned"]["kept_inputs"]
    assert [names[index] for index in kept] == summary["pruned"]["kept_feature_names"]
    low, high = x_train.min(axis=0)[kept], x_train.max(axis=0)[kept]
    hidden = 2 * (x_test[:, kept] - low) / (high - low) - 1  # [-1, 1], as the original
    loaded = keras.saving.load_model(run_dir / "pruned.keras", safe_mode=True)
    dense = [layer for layer in loaded.layers if isinstance(layer, keras.layers.Dense)]
    for index, layer in enumerate(dense):
        kernel, bias = (np.asarray(value, np.float64) for value in layer.get_weights())
        hidden = hidden @ kernel + bias
        if index < len(dense) - 1:
            hidden = np.maximum(hidden, 0)
    expected = hidden[:, 0] * (y_train.max() - y_train.min()) + y_train.min()
    predicted = loaded.predict(x_test[:, kept].astype(np.float32), verbose=0)[:, 0]
    np.testing.assert_allclose(predicted, expected, rtol=1e-4, atol=1e-3)
    rmse = float(np.sqrt(np.mean((predicted - y_test) ** 2)))
    assert rmse == pytest.approx(summary["pruned"]["test"]["rmse"], rel=1e-4)
    np.save(run_dir.parent / "rows.npy", x_test[:3, kept])
    check = ("import sys, numpy as np, keras\n"
             f"m = keras.saving.load_model(r'{run_dir / 'pruned.keras'}', safe_mode=True)\n"
             f"print(m.predict(np.load(r'{run_dir.parent / 'rows.npy'}'), verbose=0)[:, 0]"
             ".tolist(), 'common' in sys.modules)\n")
    result = run_script("-c", check, cwd=run_dir.parent)
    assert result.stdout.split()[-1] == "False", result.stderr[-2000:]
    assert np.allclose(json.loads(result.stdout.rsplit(" ", 1)[0]), predicted[:3], rtol=1e-5)
