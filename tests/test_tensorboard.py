"""A real TensorBoard reads both demos' runs: scalars, one HParams trial per run with its
results, group-norm histograms and kernel images (a removed unit is a blank row)."""

import contextlib
import io
import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest
from PIL import Image

import demo_tensorflow
from common.outputs.tensorboard import PICTURES_PER_RUN, pictures_due
from tests.helpers import run_script

# Two demo runs and a TensorBoard server, served once: with -n, one worker takes the module
# (pyproject.toml: --dist loadgroup), so its module fixtures run once, not on every worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("tensorboard")]
EPOCHS = 150
# Exact zeros that stay: some inputs and hidden units go, some stay.
FLAGS = ["--epochs", str(EPOCHS), "--solver", "proximal", "--freeze-zeros", "--group", "0.003",
         "--lr", "0.01", "--no-show"]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The TF demo's run, and the Keras demo's on JAX as on a machine without TensorFlow
    (its event file is written without TensorFlow on every backend), in one TensorBoard."""
    logdir = tmp_path_factory.mktemp("summaries")
    summaries = {"tensorflow": demo_tensorflow.main(FLAGS + ["--logdir", str(logdir)])}
    keras_run = run_script("tests/without_tensorflow.py", "demo_keras.py", *FLAGS, "--logdir",
                           str(logdir), env={"KERAS_BACKEND": "jax"})
    assert keras_run.returncode == 0, keras_run.stderr[-3000:]
    assert "tensorflow modules imported: []" in keras_run.stdout
    runs = {demo: next(logdir.glob(f"*-{demo}")).name for demo in ["tensorflow", "keras"]}
    summaries["keras"] = json.loads((logdir / runs["keras"] / "run.json").read_text())
    with tensorboard(logdir, [*runs.values(), *[f"{run}/trial" for run in runs.values()]]) as base:
        yield base, runs, summaries


@contextlib.contextmanager
def tensorboard(logdir, runs):
    """A real TensorBoard on `logdir`, once it lists every run of `runs`: its address."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host",
         "127.0.0.1", "--port", str(port), "--reload_interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # a backstop: the loop ends when the runs are listed
    while time.monotonic() < deadline:
        time.sleep(1)
        try:
            if set(runs) <= set(get(base, "/data/runs")):
                break
        except OSError:
            continue  # not listening yet
    try:
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def served_path(tmp_path_factory):
    """A TF demo --path run: each kept point is its own run and HParams trial."""
    logdir = tmp_path_factory.mktemp("path_summaries")
    summary = demo_tensorflow.main(["--path", "--epochs", "60", "--path-points", "3",
                                    "--path-epochs", "10", "--logdir", str(logdir)])
    (run_dir,) = logdir.iterdir()
    names = [f"{run_dir.name}/path-{point['index']:02d}" for point in summary["path"]]
    with tensorboard(logdir, [run_dir.name, f"{run_dir.name}/trial", *names]) as base:
        yield base, run_dir.name, summary


def get(base, path, **query):
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        body = response.read()
    return body if "individualImage" in path else json.loads(body)


def post(base, path, body):
    request = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_both_demos_have_the_same_unit_charts(served):
    base, runs, summaries = served
    for demo, run in runs.items():
        points = get(base, "/data/plugin/scalars/scalars", run=run, tag="neurons")
        assert [step for _, step, _ in points] == list(range(1, EPOCHS + 1)), demo
        units = summaries[demo]["units_after"]
        assert points[-1][2] == units["inputs"] + sum(units["hidden"])
        for tag in ["loss", "reg_loss", "units/inputs", "units/hidden_1", "units/hidden_2",
                    "test/rmse"]:
            assert get(base, "/data/plugin/scalars/scalars", run=run, tag=tag), (demo, tag)
    # Each chart's description beside it, the same for both demos (the Keras demo writes a
    # tag's description with its first value only: TensorBoard keeps the first).
    tags = get(base, "/data/plugin/scalars/tags")
    for tag, words in [("neurons", "active units, inputs included"),
                       ("units/hidden_1", "active units of this layer"),
                       ("loss", "without the penalty"), ("reg_loss", "group sparse penalty")]:
        described = [tags[run][tag]["description"] for run in runs.values()]
        assert words in described[0] and described[0] == described[1], (tag, described)
    layout = get(base, "/data/plugin/custom_scalars/layout")
    (chart,) = layout["category"][0]["chart"]
    assert chart["multiline"]["tag"] == ["^neurons$", "^units/inputs$", "^units/hidden_1$",
                                         "^units/hidden_2$"]


def session_groups(base):
    return post(base, "/data/plugin/hparams/session_groups", {
        "experimentName": "", "colParams": [], "startIndex": 0, "sliceSize": 100,
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE",
                            "STATUS_RUNNING"]})["sessionGroups"]


def test_every_run_is_its_own_hparams_trial_with_its_results(served):
    base, runs, summaries = served
    experiment = post(base, "/data/plugin/hparams/experiment", {"experimentName": ""})
    infos = experiment["hparamInfos"]
    # What differs between the trials comes first (HParams shows the first five columns):
    # the two runs share their flags and differ in the demo and the backend.
    assert {info["name"] for info in infos[:2]} == {"demo", "backend"}
    assert all(info.get("differs") for info in infos[:2])
    assert not any(info.get("differs") for info in infos[2:])
    names = {info["name"] for info in infos}
    assert {"solver", "epochs", "group_strength", "seed"} <= names
    # No column of Nones, no path settings on runs without a path, no output options.
    assert not names & {"patience", "batch_size", "cv", "val_fraction", "logdir", "lambda"}
    # The metrics are the trials' results, nothing else (not the last loss of the curves).
    assert {info["name"]["tag"] for info in experiment["metricInfos"]} == {
        "result/test_rmse", "result/active_units", "result/params_after", "result/data_loss"}
    groups = session_groups(base)
    # Two trials, named with what tells them apart first, then their folders.
    for demo, label in [("tensorflow", "TF "), ("keras", "Keras ")]:
        (group,) = [group for group in groups if group["name"].endswith(f"({runs[demo]})")]
        assert group["name"].startswith(label), group["name"]
        metrics = {value["name"]["tag"]: value["value"]
                   for value in group["sessions"][0]["metricValues"]}
        summary = summaries[demo]
        # The Keras run was on JAX: the backend tells the two trials apart.
        assert group["hparams"]["backend"] == ("jax" if demo == "keras" else "tensorflow")
        assert group["hparams"]["demo"] == demo
        assert metrics["result/test_rmse"] == pytest.approx(summary["test"]["rmse"], rel=1e-6)
        assert metrics["result/params_after"] == summary["pruned"]["params_after"]
        assert metrics["result/active_units"] == (summary["units_after"]["inputs"]
                                                  + sum(summary["units_after"]["hidden"]))
    assert len(groups) == 2


def test_tensorboard_opens_on_the_loss_and_the_units(served):
    """The time-series page sorts its groups (a tag up to its first /) by name and opens
    the first two: the loss and the active units, not results or pictures."""
    base, runs, _ = served
    tags = set()
    for plugin in ["scalars", "histograms", "images"]:
        for run_tags in get(base, f"/data/plugin/{plugin}/tags").values():
            tags |= set(run_tags)
    groups = sorted({tag.split("/")[0] for tag in tags})
    assert groups[:2] == ["loss", "neurons"], groups
    # The config text: only what differs from the demo's defaults.
    text = get(base, "/data/plugin/text/text", run=runs["tensorflow"], tag="config")
    table = text[-1]["text"]
    assert "<td>solver</td>" in table and "<td>proximal</td>" in table
    assert "<td>seed</td>" not in table and "<td>patience</td>" not in table


def test_path_points_are_trials_with_their_lambda_and_results_on_one_step_axis(served_path):
    base, run, summary = served_path
    experiment = post(base, "/data/plugin/hparams/experiment", {"experimentName": ""})
    infos = {info["name"]: info for info in experiment["hparamInfos"]}
    assert infos["lambda"]["differs"] and "group_strength" not in infos
    assert {info["name"]["tag"] for info in experiment["metricInfos"]} == {
        "result/test_rmse", "result/val_rmse", "result/active_units", "result/params_after",
        "result/data_loss"}
    trials = {group["name"]: group for group in session_groups(base)}
    for point in summary["path"]:
        name = f"{run}/path-{point['index']:02d}"
        (trial,) = [group for group in trials.values() if group["name"].endswith(f"({name})")]
        assert trial["name"].startswith(f"TF p{point['index']:02d} ")
        assert trial["hparams"]["lambda"] == pytest.approx(point["lambda"], rel=1e-6)
        assert trial["hparams"]["backend"] == "tensorflow"
        metrics = {value["name"]["tag"]: value["value"]
                   for value in trial["sessions"][0]["metricValues"]}
        assert metrics["result/active_units"] == point["total_units"]
        assert metrics["result/val_rmse"] == pytest.approx(point["val_metric"], rel=1e-6)
        (entry,) = get(base, "/data/plugin/scalars/scalars", run=name, tag="result/active_units")
        assert entry[1] == point["index"]
    assert len(trials) == len(summary["path"]) + 1  # and the run's own
    steps = [step for _, step, _ in get(base, "/data/plugin/scalars/scalars", run=run,
                                         tag="path/units")]
    assert steps == [point["index"] for point in summary["path"]]
    # The last pictures show the network the run ends with, the chosen point's, at its last
    # step: the inputs it removed are black rows, the kept ones are not.
    entries = get(base, "/data/plugin/images/images", run=run, tag="weights/kernels/inputs")
    assert entries[-1]["step"] == summary["steps"]
    png = get(base, "/data/plugin/images/individualImage" + "?" + entries[-1]["query"])
    image = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    kept = set(summary["pruned"]["kept_inputs"])
    assert [row for row in range(13) if image[row].max() > 0] == sorted(kept)


def test_group_norms_and_kernel_images_with_blank_rows_for_removed_units(served):
    base, runs, summaries = served
    for demo, run in runs.items():
        histograms = get(base, "/data/plugin/histograms/histograms", run=run,
                         tag="weights/group_norms/inputs")
        assert len(histograms) >= 2 and histograms[-1][1] == EPOCHS
        # The 15 x 1 kernel's column repeated 8 times: at most twice as tall as wide.
        for tag, (rows, columns) in [("weights/kernels/inputs", (13, 20)),
                                     ("weights/kernels/hidden_1", (20, 15)),
                                     ("weights/kernels/hidden_2", (15, 8))]:
            entries = get(base, "/data/plugin/images/images", run=run, tag=tag)
            assert entries[-1]["step"] == EPOCHS
            png = get(base, "/data/plugin/images/individualImage" + "?" + entries[-1]["query"])
            image = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
            assert image.shape == (rows, columns), (demo, tag)
        # The last inputs image: a removed input is an all-black row, a kept one is not.
        entries = get(base, "/data/plugin/images/images", run=run, tag="weights/kernels/inputs")
        png = get(base, "/data/plugin/images/individualImage" + "?" + entries[-1]["query"])
        image = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
        kept = set(summaries[demo]["pruned"]["kept_inputs"])
        assert 0 < len(kept) < 13, "the test needs some inputs removed and some kept"
        for row in range(13):
            assert (image[row].max() == 0) == (row not in kept), (demo, row)


@pytest.mark.parametrize("total, chunk", [(1500, 25), (1500, 15), (1537, 25), (60, 25), (7, 1)])
def test_pictures_about_twenty_times_a_run_and_always_at_its_end(total, chunk):
    ends = list(range(chunk, total, chunk)) + [total]
    due = [end for done, end in zip([0] + ends, ends) if pictures_due(done, end, total)]
    assert due[-1] == total
    assert len(due) == min(len(ends), PICTURES_PER_RUN) or (
        len(due) == PICTURES_PER_RUN + 1 and total % PICTURES_PER_RUN)  # the end, off-grid
    gaps = np.diff([0] + due)
    assert gaps.max() <= max(chunk, total / PICTURES_PER_RUN) + chunk  # evenly spread
