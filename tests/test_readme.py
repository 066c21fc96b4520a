"""The READMEs: their examples run as written, their table is what a run prints, their
links exist, and the test command is the one CI runs."""

import re

import pytest

from tests.helpers import ROOT


def text(name="README.md"):
    return (ROOT / name).read_text()


def examples(name):
    return re.findall(r"```python\n(.*?)```", text(name), flags=re.S)


_ran = {}


def reuse_example(boston):
    """The README's example, run once per test process: its namespace."""
    if not _ran:
        (example,) = examples("README.md")
        _ran.update(x_train=boston.x_train, y_train=boston.y_train)
        exec(compile(example, "README.md", "exec"), _ran)
    return _ran


@pytest.mark.backends
def test_the_reuse_example_runs_and_prunes(boston):
    namespace = reuse_example(boston)
    history, report, smaller = namespace["history"], namespace["report"], namespace["smaller"]
    assert history.records["epoch"] == list(range(1, 21))
    assert len(history.records["units"][-1]) == 2
    assert report.architecture.startswith("13-20-1 → ")
    assert smaller.input_shape[1] == len(report.kept_inputs)


@pytest.mark.backends
def test_the_choose_lambda_example_chooses_on_pooled_folds_and_prunes(boston):
    """choose_lambda on the user's own network, as the README shows it: a path of at most
    11 points (lambda 0 first, growing), the choice among 5-fold pooled records, the chosen
    network's strengths scaled to its lambda, and a pruned copy computing what it computes
    (a NumPy forward pass of each)."""
    import numpy as np

    from tests.helpers import numpy_forward

    found = reuse_example(boston)["found"]
    lambdas = [point["lambda"] for point in found.path]
    assert lambdas[0] == 0.0 and all(b > a for a, b in zip(lambdas, lambdas[1:]))
    assert 2 <= len(found.path) <= 11 and len(found.records) <= len(found.path)
    assert "5-fold" in found.selected["rule"]
    assert found.selected["lambda"] == lambdas[found.selected["index"]]
    assert found.report.architecture.startswith("13-20-1 → ")
    strengths = [layer.kernel_regularizer.group_strength for layer in found.model.layers]
    assert strengths == [pytest.approx(found.selected["lambda"])] * 2
    x = boston.x_test
    np.testing.assert_allclose(
        numpy_forward(found.pruned.get_weights(), x[:, found.report.kept_inputs]),
        numpy_forward(found.model.get_weights(), x), atol=1e-4)


@pytest.mark.backends
def test_the_proximal_example_ends_with_exact_zeros(boston):
    import numpy as np

    import keras

    if keras.backend.backend() == "torch":
        pytest.skip("the example uses steps_per_execution=50, which Keras refuses on PyTorch")
    example = examples("common/README.md")[0]
    namespace = {"x_train": boston.x_train, "y_train": boston.y_train}
    exec(compile(example, "common/README.md", "exec"), namespace)
    model, counts = namespace["model"], namespace["counts"]
    assert counts.total < 13 + 20  # something was removed
    first = model.layers[0].kernel.numpy()
    zero_rows = ~counts.input_mask
    assert zero_rows.any() and np.all(first[zero_rows] == 0.0)


@pytest.mark.backends
def test_the_jax_custom_loop_example_removes_units(boston):
    import keras

    if keras.backend.backend() != "jax":
        pytest.skip("the example is JAX's form of the loop (KERAS_BACKEND=jax)")
    example = examples("common/README.md")[1]
    assert "stateless_call" in example
    namespace = {"x_train": boston.x_train, "y_train": boston.y_train}
    exec(compile(example, "common/README.md", "exec"), namespace)
    counts = namespace["counts"]
    assert counts.hidden[0] < 20 and counts.total < 13 + 20  # the penalty was in the loss
    assert float(namespace["loss"]) < 0.1  # and the network still fits the data


@pytest.mark.slow
def test_the_example_table_has_the_rows_a_run_prints(tmp_path, capsys):
    """The digits depend on the CPU; the rows, their order and the shape of each do not."""
    import demo_tensorflow

    demo_tensorflow.main(["--epochs", "60", "--group", "0.05", "--logdir", str(tmp_path)])
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    shown = re.search(r"a table like this one.*?\n\n(.*?)\n\n", text(), flags=re.S).group(1)
    shown = shown.splitlines()

    def names(lines):
        return [re.split(r"\s{2,}", line.strip())[0] for line in lines]

    assert names(shown) == names(printed)
    for line in shown:
        if "→" in line:
            assert re.search(r"\d+(-\d+)+ → \d+(-\d+)+|\d+ → \d+", line), line


@pytest.mark.slow
def test_every_run_json_field_is_documented_and_every_documented_one_is_written(tmp_path):
    import json

    import demo_keras

    table = re.search(r"## run.json, field by field.*?\n\n(\|.*?)\n\n", text("common/README.md"),
                      flags=re.S).group(1)
    documented = set()
    for row in table.splitlines()[2:]:
        documented |= set(re.findall(r"`(\w+)`", row.split("|")[1]))
    seen = set()
    for flags in [[], ["--path", "--adaptive", "--group", "1e-3", "2e-3", "3e-3", "--path-points",
                       "3", "--path-epochs", "10", "--cv", "2", "--finetune", "20"]]:
        logdir = tmp_path / str(len(flags))
        summary = demo_keras.main(["--epochs", "20", "--no-show", "--logdir", str(logdir), *flags])
        (run_dir,) = logdir.iterdir()
        assert json.loads((run_dir / "run.json").read_text())["schema_version"] == 2
        seen |= set(summary)
    assert seen == documented


def test_local_links_exist():
    for name in ["README.md", "common/README.md", "benchmarks/README.md"]:
        folder = (ROOT / name).parent
        for target in re.findall(r"\]\(([^)#:]+)\)", text(name)):
            assert (folder / target).exists(), f"{name} links to missing {target}"


def test_the_readme_is_a_short_walk():
    assert len(text().splitlines()) <= 150


def test_ci_runs_the_readme_test_command():
    command = "python -m pytest -q -n auto tests"
    assert f"pip install -r requirements-dev.txt && {command}" in text()
    assert command in (ROOT / ".ci" / "run").read_text()
