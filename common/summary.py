"""What a run leaves behind: the summary of a trained model, the pruned model, run.json.

`summarize_model` is pure: counts, test metrics, and the pruning report of a trained model,
as a dict. `finish_run` is the common ending of both demos: it summarizes, saves the pruned
(and fine-tuned) model, writes the demo's own files and run.json, each whole or not at all,
and prints the final table. A diverged run saves no model (its weights are not finite).
"""

import dataclasses
import math
import shutil
import sys
import time

import keras
import numpy as np
from keras import ops

from common.counting import count_active_units
from common.files import NO_ROOM, OutputError, write_atomically, write_json
from common.fitting import finetune, retrain
from common.model import evaluate
from common.pruning import prune_model, thresholded_copy
from common.report import print_path_table, print_report


@dataclasses.dataclass
class Outcome:
    """How training went, as the demo saw it."""

    status: str  # completed, diverged, failed, interrupted or terminated
    steps: int  # optimizer steps taken
    units_before: object  # UnitCounts of the model before training
    wall_started: float  # time.perf_counter() at the start of the run
    ms_per_step: float | None = None  # training time per step, the first (tracing) call excluded
    final_loss: float | None = None  # the last data loss (None when it was not finite)
    message: str | None = None  # why the run diverged or failed, one sentence


def summarize_model(model, data, threshold):
    """Counts, test metrics and pruning of a trained model: (record, pruned model, report)."""
    units = count_active_units(model, threshold)
    pruned, report = prune_model(model, threshold, data.feature_names)
    x_test = data.x_test[:, report.kept_inputs]
    difference = np.max(np.abs(ops.convert_to_numpy(pruned(x_test))
                               - ops.convert_to_numpy(model(data.x_test))))
    record = {
        "units_after": units.as_dict(),
        "surviving_features": units.surviving_features(data.feature_names),
        "test": evaluate(model, data),
        "thresholded_test": evaluate(thresholded_copy(model, threshold), data),
        "pruned": {**report.as_dict(), "test": evaluate(pruned, data, x=x_test),
                   # On the test inputs; 0 up to rounding when the dropped groups were exactly 0.
                   "max_abs_difference_from_trained": float(difference)},
    }
    return record, pruned, report


def _weights_are_finite(model):
    return all(np.all(np.isfinite(ops.convert_to_numpy(weight))) for weight in model.weights)


def finish_run(demo, config, data, model, run_dir, outcome, files=(), extra=None, footer=(),
               chief=True):
    """Summarize, save and print; returns the summary that run.json holds.

    `files` are the demo's own outputs as (path, write) pairs, `write(temporary_path)`
    writing the file. A file that cannot be written (a full disk) is named in one sentence
    and in run.json's `not_written`; the status is then "failed" (exit code 1). A worker
    that is not the chief (`chief=False`) removes its run folder at the end.
    """
    summary = {
        "demo": demo, "backend": keras.backend.backend(), "status": outcome.status,
        "message": outcome.message,
        "config": dataclasses.asdict(config),
        "dataset": {"name": data.name, "task": data.task, "feature_names": data.feature_names},
        "units_before": outcome.units_before.as_dict(), "steps": outcome.steps,
        "final_loss": outcome.final_loss,
        "units_after": None, "surviving_features": None, "test": None,
        "thresholded_test": None, "pruned": None,
    }
    written, not_written, reasons = [], [], set()

    def save(path, write):
        try:
            write_atomically(path, write)
            written.append(path.name)
        except OutputError as error:
            not_written.append(path.name)
            reasons.add("the disk is full" if error.errno in NO_ROOM else error.strerror)

    for path, write in files:
        save(path, write)
    if outcome.status == "diverged" or not _weights_are_finite(model):
        summary["notes"] = ["no model was saved or pruned: the weights are not finite"]
    else:
        record, pruned, report = summarize_model(model, data, config.threshold)
        summary.update(record)
        save(run_dir / "pruned.keras", pruned.save)
        if (config.finetune or config.retrain) and outcome.status == "completed":
            kept = report.kept_inputs
            training = (data.task, data.x_train[:, kept], data.y_train)
            options = dict(validation=(data.x_val[:, kept], data.y_val)
                           if data.x_val is not None else None, patience=config.patience)
            settings = (config.batch_size, config.lr, config.seed)
            if config.retrain:  # from fresh weights: before fine-tuning changes `pruned`
                fresh, epochs = retrain(pruned, *training, config.retrain, *settings, **options)
                summary["pruned"]["retrained_test"] = evaluate(fresh, data, x=data.x_test[:, kept])
                summary["pruned"]["retrained_epochs"] = epochs
                save(run_dir / "pruned_retrained.keras", fresh.save)
            if config.finetune:
                epochs = finetune(pruned, *training, config.finetune, *settings, **options)
                summary["pruned"]["finetuned_test"] = evaluate(pruned, data, x=data.x_test[:, kept])
                summary["pruned"]["finetuned_epochs"] = epochs
                save(run_dir / "pruned_finetuned.keras", pruned.save)
    summary.update(extra or {})
    summary["ms_per_step"] = outcome.ms_per_step
    summary["wall_seconds"] = time.perf_counter() - outcome.wall_started
    summary["chief"] = chief
    if not_written and summary["status"] == "completed":
        summary["status"] = "failed"
        summary["message"] = f"could not write {', '.join(not_written)}"
    summary["files"], summary["not_written"] = written + ["run.json"], not_written
    save(run_dir / "run.json", lambda path: write_json(path, summary))
    if "run.json" in not_written:
        summary["files"].remove("run.json")
        if summary["status"] == "completed":
            summary["status"] = "failed"
    if not_written:  # one sentence for everything that is missing
        lead = f"{outcome.message}, and" if outcome.status == "failed" else "; ".join(reasons) + ":"
        print(f"error: {lead} could not write {', '.join(not_written)} in {run_dir}",
              file=sys.stderr)
    elif outcome.status == "failed":
        print(f"error: {outcome.message}", file=sys.stderr)
    if summary.get("path"):
        print_path_table(summary)
    print_report(summary, run_dir, footer)
    if not chief:  # a worker's files are the chief's duplicates
        shutil.rmtree(run_dir, ignore_errors=True)
    return summary


def finite_or_none(value):
    """A float for run.json: None when it is NaN or infinite (JSON has no such numbers)."""
    return value if value is not None and math.isfinite(value) else None
