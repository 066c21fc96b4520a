"""What both demos share: data, the group sparse penalty, unit counting, pruning.

Names are imported on first use, so `common.run.config` (the command line) loads without
TensorFlow and a typo is reported at once. The classes a saved model may name
(GroupSparse, ProximalOptimizer) are registered with Keras as soon as both `common` and
`keras` are imported, in either order, so `import common` is all that loading needs.
"""

import importlib
import importlib.abc
import importlib.util
import sys

from common._exports import lazy_exports

# The parts of common/, each a sub-package whose __init__ names its public API.
_PARTS = {
    "data": ["load_dataset", "Dataset", "DataError"],
    "penalty": ["GroupSparse", "group_lasso", "sparse_group_lasso", "group_norms",
                "adaptive_weights", "penalty_value", "prox_group_sparse", "ProximalOptimizer"],
    "training": ["build_model", "UnitHistory", "StepRecorder", "finetune"],
    "search": ["choose_lambda"],
    "shrink": ["count_active_units", "active_counts", "UnitCounts", "prune_model",
               "PruneReport"],
    "run": ["Config", "parse_config"],
}
_EXPORTS = {name: part for part, names in _PARTS.items() for name in names}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


def _register_with_keras():
    """Import the modules whose classes Keras must find when it loads a saved model."""
    for module in ("common.penalty.penalties", "common.penalty.proximal_optimizer"):
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
