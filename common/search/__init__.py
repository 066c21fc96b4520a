"""Choosing lambda: the path, cross-validation and the selection rules, the adaptive stage,
and the engine that trains every fold in one compiled computation; `choose_lambda` returns
the chosen, trained network."""

from common._exports import lazy_exports

_EXPORTS = {"choose_lambda": "choose", "run_search": "choose", "PathSettings": "choose",
            "PathChoice": "choose", "FoldPaths": "crossval", "FoldTrainer": "engine",
            "lambda_grid": "path", "select_point": "path", "set_adaptive_weights": "adaptive"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
