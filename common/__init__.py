"""What both demos share: data, the group sparse penalty, unit counting, pruning.

Names are imported on first use, so `common.config` (the command line) loads without
TensorFlow and a typo is reported at once. The classes a saved model may name
(GroupSparse, ProximalOptimizer) are registered with Keras as soon as both `common` and
`keras` are imported, in either order, so `import common` is all that loading needs.
"""

import importlib
import importlib.abc
import importlib.util
import sys

_EXPORTS = {
    "Config": "common.config",
    "parse_config": "common.config",
    "load_dataset": "common.data",
    "Dataset": "common.data",
    "DataError": "common.data",
    "group_lasso": "common.penalties",
    "adaptive_weights": "common.penalties",
    "sparse_group_lasso": "common.penalties",
    "group_norms": "common.penalties",
    "GroupSparse": "common.penalties",
    "penalty_value": "common.penalties",
    "ProximalOptimizer": "common.proximal_optimizer",
    "prox_group_sparse": "common.proximal",
    "count_active_units": "common.counting",
    "active_counts": "common.counting",
    "UnitCounts": "common.counting",
    "UnitHistory": "common.monitor",
    "StepRecorder": "common.monitor",
    "build_model": "common.model",
    "finetune": "common.fitting",
    "prune_model": "common.pruning",
    "choose_lambda": "common.search",
    "PruneReport": "common.pruning",
    "UnitGates": "common.gates",
    "gates_l0": "common.gates",
    "fold_gates": "common.gates",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'common' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return __all__


def _register_with_keras():
    """Import the modules whose classes Keras must find when it loads a saved model."""
    for module in ("common.penalties", "common.proximal_optimizer", "common.gates"):
        importlib.import_module(module)


class _WhenKerasIsImported(importlib.abc.MetaPathFinder):
    """Finds `keras` as usual, and registers our classes right after it has loaded."""

    def find_spec(self, name, path=None, target=None):
        if name != "keras":
            return None
        sys.meta_path.remove(self)  # once; the real finders do the finding
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            _register_with_keras()

        spec.loader.exec_module = exec_module
        return spec


if "keras" in sys.modules:
    _register_with_keras()
elif not any(isinstance(finder, _WhenKerasIsImported) for finder in sys.meta_path):
    sys.meta_path.insert(0, _WhenKerasIsImported())
