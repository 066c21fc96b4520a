"""The README's example runs as written, and its two commands are the ones CI runs."""

import re

from tests.helpers import ROOT


def readme():
    return (ROOT / "README.md").read_text()


def examples():
    return re.findall(r"```python\n(.*?)```", readme(), flags=re.S)


def test_the_reuse_example_runs_and_prunes(boston):
    example = examples()[0]
    namespace = {"x_train": boston.x_train, "y_train": boston.y_train}
    exec(compile(example, "README.md", "exec"), namespace)
    history, report, smaller = namespace["history"], namespace["report"], namespace["smaller"]
    assert history.records["epoch"] == list(range(1, 21))
    assert len(history.records["units"][-1]) == 2
    assert report.architecture.startswith("13-20-1 → ")
    assert smaller.input_shape[1] == len(report.kept_inputs)


def test_the_proximal_example_ends_with_exact_zeros(boston):
    import numpy as np

    example = examples()[1]
    namespace = {"x_train": boston.x_train, "y_train": boston.y_train}
    exec(compile(example, "README.md", "exec"), namespace)
    model, counts = namespace["model"], namespace["counts"]
    assert counts.total < 13 + 20  # something was removed
    first = model.layers[0].kernel.numpy()
    zero_rows = ~counts.input_mask
    assert zero_rows.any() and np.all(first[zero_rows] == 0.0)


def test_ci_runs_the_readme_test_command():
    command = "python -m pytest -q tests"
    assert f"pip install -r requirements-dev.txt && {command}" in readme()
    assert command in (ROOT / ".ci" / "run").read_text()
