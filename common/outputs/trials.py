"""HParams trials: a run's and each kept path point's, each a TensorBoard run of its own.

A run's trial is `<run>/trial`: its settings at the start, its results (`result/*`) at the
end, nothing else, so the trials' metrics are the results only. A path point's run
`<run>/path-NN` is the point's trial. No experiment summary is written: TensorBoard builds it
from every trial in the log folder, so the settings that differ between trials are the
columns it shows first. Written with common.outputs.eventfile, the same in both demos.
"""

import contextlib
import re
import shutil
from pathlib import Path

from tensorboard.plugins.hparams import summary_v2 as hparams_summary

from common.backend import keras_backend_name
from common.data.datasets import metric_name
from common.outputs.eventfile import EventFile
from common.outputs.files import unless_disk_full
from common.outputs.tensorboard import scalar_summary

# The settings that are hyperparameters (not paths, display or logging options); a trial
# carries those that have a value, the path's only on a path run.
HPARAMS = ("dataset", "hidden", "epochs", "batch_size", "lr", "group_strength", "group_layers",
           "l1", "l1_layers", "l2", "adaptive", "threshold", "solver", "freeze_zeros", "seed",
           "finetune", "patience", "preset", "strategy", "path", "val_fraction", "path_points",
           "path_epochs", "path_settle", "select", "max_units", "cv")
PATH_HPARAMS = ("val_fraction", "path_points", "path_epochs", "path_settle", "select",
                "max_units", "cv")
TRIAL_RUN = "trial"  # <run>/trial: the run's HParams trial
DEMO_LABELS = {"tensorflow": "TF", "keras": "Keras"}


def result_descriptions(task):
    """The HParams metrics a trial writes at its end (`result/*`): tag -> description."""
    metric = metric_name(task)
    return {f"result/test_{metric}": f"test {metric} of the trained network",
            f"result/val_{metric}": f"validation {metric} of the chosen network (a path point's "
                                    "own, in its trial)",
            "result/active_units": "active units at the end, inputs included",
            "result/params_after": "parameters of the pruned network",
            "result/data_loss": "the last training data loss"}


def hparam_values(settings, demo, lam=None):
    """A trial's hyperparameters: the demo, the Keras backend, the `settings` (the run's, a
    dict) that have a value and apply: on a path run lambda is the point's (`lam`), not
    --group (whose per-kernel values still set the layers' ratios); the path's settings only
    on a path run, and the grid's size only without --path-lambdas; the validation split
    only where there is one (--path, --patience)."""
    values = {"demo": demo, "backend": keras_backend_name()}
    skipped = {"group_strength"} if settings["path"] else set(PATH_HPARAMS)
    if settings["path_lambdas"]:
        skipped.add("path_points")
    if not settings["path"] and settings["patience"] is None:
        skipped.add("val_fraction")
    for key in HPARAMS:
        value = settings[key]
        if value is not None and key not in skipped:
            values[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    if lam is not None:
        values["lambda"] = lam
    return values


def trial_id(demo, run_name, point=None):
    """A trial's name: what tells trials apart first (HParams shows about 13 characters of
    it), "TF 11:02:34" or "TF p03 11:02:34", then the run folder, which makes it unique."""
    stamp = re.match(r"\d{8}-(\d\d)(\d\d)(\d\d)Z", run_name)
    words = [DEMO_LABELS.get(demo, demo), None if point is None else f"p{point:02d}",
             ":".join(stamp.groups()) if stamp else None]
    folder = run_name if point is None else f"{run_name}/path-{point:02d}"
    return " ".join(word for word in words if word) + f" ({folder})"


class Trial:
    """A run's HParams trial, the TensorBoard run `<run>/trial`: its settings now, its
    results at `close` (`enabled` False, another worker: nothing)."""

    def __init__(self, run_dir, settings, demo, enabled=True):
        self.file = EventFile(Path(run_dir) / TRIAL_RUN, enabled)
        self.file.write(hparams_summary.hparams_pb(hparam_values(settings, demo),
                                                   trial_id=trial_id(demo, Path(run_dir).name)), 0)
        with unless_disk_full():  # reported once, at the end, with the other files
            self.file.flush()

    def close(self, summary, step):
        """The run's results (run.json's `summary`) at its last `step` (a full disk: reported
        once, at the end, with the other files)."""
        with unless_disk_full(), contextlib.closing(self.file):
            for step_, proto in result_summaries(run_results(summary), summary["dataset"]["task"],
                                                 step):
                self.file.write(proto, step_)


def run_results(summary):
    """The `result/*` values of a run from its summary (run.json): those it has."""
    metric = metric_name(summary["dataset"]["task"])
    values = {"result/data_loss": summary.get("final_loss")}
    if summary.get("units_after"):
        units = summary["units_after"]
        values["result/active_units"] = units["inputs"] + sum(units["hidden"])
    if summary.get("test"):
        values[f"result/test_{metric}"] = summary["test"][metric]
    if summary.get("pruned"):
        values["result/params_after"] = summary["pruned"]["params_after"]
    if summary.get("selected"):
        values[f"result/val_{metric}"] = summary["selected"][f"val_{metric}"]
    return {tag: value for tag, value in values.items() if value is not None}


def result_summaries(values, task, step):
    """(step, Summary proto) pairs of `result/*` values, each with its description."""
    text = result_descriptions(task)
    return [(step, scalar_summary(tag, value, text[tag])) for tag, value in values.items()]


def write_point_trial(run_dir, settings, demo, point, task):
    """A kept path point's run `<run>/path-NN`, its HParams trial (the run's settings with
    the point's lambda; its validation metric, units and parameters as results, at the
    point's index), written whole or not at all. Returns the main run's `path/*` values."""
    metric = metric_name(task)
    point_dir = Path(run_dir) / f"path-{point.index:02d}"
    results = {f"result/val_{metric}": point.val_metric, "result/active_units": point.total_units,
               "result/params_after": point.params}
    file = None
    try:
        file = EventFile(point_dir)
        file.write(hparams_summary.hparams_pb(
            hparam_values(settings, demo, point.lam),
            trial_id=trial_id(demo, Path(run_dir).name, point.index)), point.index)
        for step, proto in result_summaries(results, task, point.index):
            file.write(proto, step)
        file.close()
    except Exception:  # a full disk: no half-written point run is left behind
        try:
            if file is not None:
                file.close()
        finally:
            shutil.rmtree(point_dir, ignore_errors=True)
        raise
    return {f"path/val_{metric}": point.val_metric, "path/units": point.total_units,
            "path/params": point.params, "path/lambda": point.lam}
