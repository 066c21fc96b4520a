"""The maths: the group Lasso and its relatives as a Keras regularizer (`GroupSparse`), the
exact proximal step in Adam's metric, and the optimizer that applies it."""

from common._exports import lazy_exports

_EXPORTS = {name: "penalties" for name in (
    "GroupSparse", "group_lasso", "sparse_group_lasso", "group_mcp", "group_norms",
    "adaptive_weights", "penalty_value")}
_EXPORTS.update(prox_group_sparse="proximal", ProximalOptimizer="proximal_optimizer")
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
