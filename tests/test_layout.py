"""The shape of the code: import-linter's contracts over common/'s parts (pyproject.toml), and
what import-linter cannot express: no import cycle inside a part, function-local imports
included; only the command line and the run skeleton read Config's fields; the demos never
import each other; common/ never imports benchmarks/; every module in common/README.md."""

import ast
import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from common.run.config import Config

ROOT = Path(__file__).resolve().parents[1]
MODULES = {".".join(path.relative_to(ROOT).with_suffix("").parts): path
           for path in sorted((ROOT / "common").rglob("*.py")) if path.stem != "__init__"}
# The command line and the run skeleton: the modules that see Config.
SEE_CONFIG = {name for name in MODULES if name.startswith("common.run.")}


def imports_of(path):
    """The modules of common/ that `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("common"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return found & set(MODULES)


def test_the_import_contracts_hold():
    command = shutil.which("lint-imports") or pytest.fail("lint-imports is not installed")
    done = subprocess.run([command], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout and "6 kept" in done.stdout


def test_every_part_of_common_is_a_package_that_names_its_api():
    import common

    parts = sorted(path.parent.name for path in (ROOT / "common").glob("*/__init__.py"))
    assert parts == ["data", "outputs", "penalty", "run", "search", "shrink", "training"]
    for part in parts:
        package = __import__(f"common.{part}", fromlist=["__all__"])
        for name in package.__all__:  # each name resolves to an object of the part
            assert getattr(package, name).__module__.startswith(f"common.{part}.")
    for name in common.__all__:
        assert getattr(common, name) is not None


def test_no_import_cycle_in_common():
    graph = {name: imports_of(path) for name, path in MODULES.items()}
    state = {}  # name -> "open" while on the current walk, "done" after it

    def walk(name, trail):
        state[name] = "open"
        for imported in sorted(graph[name]):
            assert state.get(imported) != "open", " -> ".join([*trail, name, imported])
            if imported not in state:
                walk(imported, [*trail, name])
        state[name] = "done"

    for name in graph:
        if name not in state:
            walk(name, [])


def test_only_the_command_line_and_the_run_skeleton_read_config_fields():
    fields = {field.name for field in dataclasses.fields(Config)} | {"uses_validation"}
    readers = {}
    for name, path in MODULES.items():
        if name in SEE_CONFIG:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            # config.field, and run.config.field or self.config.field
            holder = node.value if isinstance(node, ast.Attribute) else None
            if node.__class__ is ast.Attribute and node.attr in fields and (
                    isinstance(holder, ast.Name) and holder.id == "config"
                    or isinstance(holder, ast.Attribute) and holder.attr == "config"):
                readers.setdefault(name, set()).add(node.attr)
    assert readers == {}


def test_the_demos_never_import_each_other_and_common_never_imports_benchmarks():
    def imported(path):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
        return names

    assert "demo_keras" not in imported(ROOT / "demo_tensorflow.py")
    assert "demo_tensorflow" not in imported(ROOT / "demo_keras.py")
    for name, path in MODULES.items():
        assert not imported(path) & {"benchmarks", "demo_keras", "demo_tensorflow"}, name


def test_every_module_is_in_the_module_table():
    table = (ROOT / "common" / "README.md").read_text()
    listed = set(re.findall(r"^\| `(\w+/\w+)\.py`", table, flags=re.MULTILINE))
    on_disk = {"/".join(name.split(".")[1:]) for name in MODULES if name.count(".") == 2}
    assert on_disk <= listed, sorted(on_disk - listed)
