"""The shape of the code (the team's architecture rules that a program can check): no import
cycle in common/, function-local imports included; only the command line and the run
skeleton read Config's fields or import the command line; every module in the module
table; files and demos short."""

import ast
import dataclasses
import re
from pathlib import Path

from common.config import Config

ROOT = Path(__file__).resolve().parents[1]
MODULES = {path.stem: path for path in sorted((ROOT / "common").glob("*.py"))
           if path.stem != "__init__"}
# The command line and the run skeleton: the modules that see Config.
SEE_CONFIG = {"config", "arguments", "run", "stages"}


def imports_of(path):
    """The common/ modules that `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("common."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "common":
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names
                      if alias.name.startswith("common.")}
    return found & set(MODULES)


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


def test_only_the_run_skeleton_imports_the_command_line():
    importers = {name for name, path in MODULES.items()
                 if name not in SEE_CONFIG and "config" in imports_of(path)}
    assert importers == set()


def test_every_module_is_in_the_module_table():
    table = (ROOT / "common" / "README.md").read_text()
    listed = set(re.findall(r"^\| `(\w+)\.py`", table, flags=re.MULTILINE))
    assert set(MODULES) <= listed, sorted(set(MODULES) - listed)


def test_files_and_the_demos_training_stay_short():
    for path in [*MODULES.values(), ROOT / "demo_tensorflow.py", ROOT / "demo_keras.py"]:
        assert len(path.read_text().splitlines()) <= 300, path.name
    for demo in ["demo_tensorflow.py", "demo_keras.py"]:
        tree = ast.parse((ROOT / demo).read_text())
        (train,) = [node for node in tree.body
                    if isinstance(node, ast.FunctionDef) and node.name == "train"]
        assert train.end_lineno - train.lineno + 1 <= 75, demo  # "at most about 70"
