"""Write and print only: the run folder and files written whole, the table, run.json,
the pictures, TensorBoard's event files and trials. Nothing here trains or chooses."""

from common._exports import lazy_exports

_EXPORTS = {"new_run_dir": "files", "write_json": "files", "exit_on_output_error": "files",
            "print_report": "report", "ProgressBar": "report", "finish_run": "summary",
            "plot_history": "pictures", "plot_kernels": "pictures", "EventWriter": "events",
            "StepBoard": "stepboard", "EventFile": "eventfile"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
