"""The network and how it trains: the model, its batches, replicas, per-step records inside
fit (`UnitHistory`), gradients on every backend, and one fine-tuning with early stopping."""

from common._exports import lazy_exports

_EXPORTS = {"build_model": "model", "evaluate": "model", "loss_name": "model",
            "row_losses": "model", "fit_chunks": "fitting", "steps_per_call": "fitting",
            "training_batches": "batches", "make_strategy": "distribute",
            "UnitHistory": "monitor", "StepRecorder": "monitor", "IndexBatches": "fitting",
            "fit_in_chunks": "fitting", "finetune": "fitting"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
