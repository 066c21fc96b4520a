"""The benchmark end to end at its smoke size: every part runs and writes what it promises."""

import json
import math

import pytest
from PIL import Image

from tests.helpers import run_script

pytestmark = pytest.mark.slow  # subprocesses running whole demos

ROW_KEYS = {"dataset", "penalty", "solver", "selection", "variant", "lambda", "seeds", "metric",
            "metric_mean", "metric_sd", "inputs_kept_mean", "inputs_total", "hidden_kept_mean",
            "hidden_total", "params_after_mean"}


def test_smoke_run_writes_results_table_and_picture(tmp_path):
    result = run_script("benchmarks/bench.py", "--smoke", "--out", str(tmp_path), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert not (tmp_path / "latest.json").exists()  # only a full run replaces latest.json
    assert results["mode"] == "smoke" and results["versions"]["tensorflow"]
    speed = results["speed"]
    for key in ["tf_loop_ms_per_step", "plain_loop_ms_per_step", "keras_fit_ms_per_step",
                "naive_keras_ms_per_step", "tf_loop_proximal_ms_per_step", "path_over_single"]:
        assert speed[key] > 0
    assert set(speed["ratios"]) == {"monitoring_overhead_tf_over_plain", "keras_over_tf",
                                    "speedup_naive_over_keras", "pictures_overhead_tf"}
    assert speed["keras_fit_ms_per_step_by_backend"]["tensorflow"] > 0
    overhead = results["overhead"]
    assert set(overhead) == {"boston", "digits", "wide"}
    for case in overhead.values():
        assert all(value > 0 for value in case["ms_per_step"].values())
        assert set(case["overhead"]) == {"tf_shipped_over_bare", "proximal_over_adam",
                                         "keras_shipped_over_plain_l1",
                                         "keras_shipped_over_tf_shipped"}
    rows = results["sparsity"]
    assert rows and all(ROW_KEYS <= set(row) for row in rows)
    # Nothing penalized is chosen on the test split: each row is the unregularized network,
    # a fixed setting of the originals, or chosen on validation by the path.
    assert {row["selection"] for row in rows} == {"none", "fixed", "validation-1se"}
    chosen = [row for row in rows if row["selection"] == "validation-1se"]
    assert {(row["penalty"], row["solver"]) for row in chosen} == {
        ("gl", "subgradient"), ("gl", "proximal"), ("sgl", "subgradient"), ("sgl", "proximal")}
    # The smoke run's remedies: one row per kind of flag (the full run has every variant).
    assert {row["variant"] for row in chosen} == {"plain", "adaptive", "relaxed adaptive"}
    for row in rows:
        assert math.isfinite(row["metric_mean"]) and row["ratio_to_unregularized_mean"] > 0
        assert 0 <= row["inputs_kept_mean"] <= row["inputs_total"]
        assert 0 <= row["hidden_kept_mean"] <= row["hidden_total"]
    assert isinstance(results["targets"]["boston"]["met"], bool)
    table = (tmp_path / "results.md").read_text()
    assert table.count("\n| boston |") == len(rows)
    with Image.open(tmp_path / "sparsity.png") as image:
        assert image.format == "PNG" and image.width >= 600


def test_the_keras_peer_of_the_end_to_end_row_runs(tmp_path):
    """memory.py times benchmarks/plain_keras.py beside the demos: it must run as they do."""
    result = run_script("benchmarks/plain_keras.py", "--logdir", str(tmp_path), "--no-show")
    assert result.returncode == 0, result.stderr[-3000:]
    with Image.open(tmp_path / "plain_keras.png") as image:
        assert image.format == "PNG"
