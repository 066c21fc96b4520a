"""What both demos share: data, the group sparse penalty, unit counting, pruning.

Names are imported on first use, so `common.config` (the command line) loads without
TensorFlow and a typo is reported at once.
"""

import importlib

_EXPORTS = {
    "Config": "common.config",
    "parse_config": "common.config",
    "load_dataset": "common.data",
    "Dataset": "common.data",
    "DataError": "common.data",
    "group_lasso": "common.penalties",
    "sparse_group_lasso": "common.penalties",
    "group_norms": "common.penalties",
    "GroupSparse": "common.penalties",
    "penalty_value": "common.penalties",
    "ProximalOptimizer": "common.proximal",
    "prox_group_sparse": "common.proximal",
    "count_active_units": "common.counting",
    "active_counts": "common.counting",
    "UnitCounts": "common.counting",
    "UnitHistory": "common.monitor",
    "StepRecorder": "common.monitor",
    "build_model": "common.model",
    "prune_model": "common.pruning",
    "PruneReport": "common.pruning",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'common' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__():
    return __all__
