"""The suite itself: a test that hangs fails by name (pytest-timeout, pyproject.toml), and the
installs are pinned by the constraints file that .ci/run uses."""

import re
import subprocess
import sys

from tests.helpers import ROOT


def test_a_test_that_hangs_fails_by_name(tmp_path):
    """An in-process test waiting forever (an event that never comes) ends with its own name
    in the failure, under the suite's own settings; the budget is lowered to 1 s here."""
    (tmp_path / "test_hanging.py").write_text(
        "import threading\n\n\n"
        "def test_waits_for_an_event_that_never_comes():\n"
        "    threading.Event().wait()\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
         str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), "--timeout", "1",
         str(tmp_path / "test_hanging.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Timeout" in done.stdout
    assert "FAILED test_hanging.py::test_waits_for_an_event_that_never_comes" in done.stdout


def test_every_requirement_is_pinned_by_the_constraints_file_and_ci_uses_it():
    lock = (ROOT / "requirements-lock.txt").read_text()
    pinned = {re.split(r"[=\s;]", line, maxsplit=1)[0].lower()
              for line in lock.splitlines() if "==" in line and not line.startswith("#")}
    for name in ["requirements.txt", "requirements-jax.txt", "requirements-test.txt"]:
        for line in (ROOT / name).read_text().splitlines():
            requirement = line.split("#")[0].strip()
            if requirement and not requirement.startswith("-r"):
                package = re.split(r"[\[<>=!~ ]", requirement, maxsplit=1)[0].lower()
                assert package in pinned, f"{name}: {package} is not in requirements-lock.txt"
                assert "<" in requirement, f"{name}: {requirement} has no ceiling"
    ci = (ROOT / ".ci" / "run").read_text()
    installs = [line for line in ci.replace("\\\n", " ").splitlines() if "pip install" in line]
    assert len(installs) == 2 and all("-c requirements-lock.txt" in line for line in installs)
    assert all("-r requirements-lock.txt" not in line for line in installs)
