"""Count the units still alive, and remove the others: a physically smaller network."""

from common._exports import lazy_exports

_EXPORTS = {"count_active_units": "counting", "active_counts": "counting",
            "UnitCounts": "counting", "prune_model": "pruning", "PruneReport": "pruning"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
