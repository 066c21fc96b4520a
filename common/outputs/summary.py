"""What a run leaves behind: its models, the demo's files and run.json, and the final table.

`finish_run` is the common ending of both demos (common.run.skeleton calls it): it writes what the
run measured, each file whole or not at all, and prints the final table. It neither trains
nor evaluates. A diverged run saves no model (its weights are not finite).
"""

import dataclasses
import shutil
import sys
import time

import keras

from common.outputs.files import NO_ROOM, OutputError, write_atomically, write_json
from common.outputs.report import print_path_table, print_report


@dataclasses.dataclass
class Outcome:
    """How training went, as the demo saw it."""

    status: str  # completed, diverged, failed, hangup, interrupted or terminated
    steps: int  # optimizer steps taken
    units_before: object  # UnitCounts of the model before training
    wall_started: float  # time.perf_counter() at the start of the run
    startup_seconds: float | None = None  # the script's start-up before it (None: no script)
    ms_per_step: float | None = None  # training time per step, the tracing calls excluded
    # (with --path the engine's: one step of every fold at once)
    final_loss: float | None = None  # the last data loss (None when it was not finite)
    message: str | None = None  # why the run diverged or failed, one sentence


# 2: pruned.keras takes raw feature values and predicts in the target's units (it took the
# scaled ones); run.json's pruned.file_inputs and pruned.file_outputs say so.
SCHEMA_VERSION = 2


def finish_run(demo, settings, data, run_dir, outcome, record, models=(), files=(), extra=None,
               footer=(), chief=True):
    """Save and print; returns the summary that run.json holds.

    `settings`: the run's (Config.settings, run.json's `config`); `record` holds the trained
    model's counts and test metrics (None when its weights are
    not finite), `models` (file name, model) pairs to save in `run_dir`, and `files` the
    demo's own outputs as (path, write) pairs, `write(temporary_path)` writing the file. A
    file that cannot be written (a full disk) is named in one sentence and in run.json's
    `not_written`; the status is then "failed" (exit code 1). A worker that is not the
    chief (`chief=False`) removes its run folder at the end.
    """
    summary = {
        "schema_version": SCHEMA_VERSION,  # common/README.md, "run.json", says what each field is
        "demo": demo, "backend": keras.backend.backend(), "status": outcome.status,
        "message": outcome.message,
        "config": settings,
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
    if record is None:
        summary["notes"] = ["no model was saved or pruned: the weights are not finite"]
    else:
        summary.update(record)
        for name, model in models:
            save(run_dir / name, model.save)
    summary.update(extra or {})
    summary["ms_per_step"] = outcome.ms_per_step
    summary["wall_seconds"] = time.perf_counter() - outcome.wall_started
    summary["startup_seconds"] = outcome.startup_seconds
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
