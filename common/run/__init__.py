"""What a reader of the method need not see: the command line (answered before TensorFlow
loads), the Keras backend, the seed, strategy and run folder, signals, and how a run ends."""

from common._exports import lazy_exports

_EXPORTS = {"Config": "config", "parse_config": "config", "load_or_exit": "config",
            "Run": "skeleton", "run_as_script": "lifecycle", "stop_on_signals": "lifecycle",
            "meet_workers_or_exit": "rendezvous"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
