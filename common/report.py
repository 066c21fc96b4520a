"""What both demos write and print: run folder, progress bar, run.json, final table, pruning."""

import dataclasses
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from keras import ops

from common.counting import count_active_units
from common.model import epoch_batches, evaluate, loss_name, metric_name, steps_per_epoch
from common.pruning import prune_model, thresholded_copy


def new_run_dir(logdir, demo, chief=True):
    """A new folder `<logdir>/<UTC timestamp>-<demo>`; an existing one is never reused.

    A worker that is not the chief of a multi-worker run gets a temporary folder instead,
    which `finish_run` removes: the chief writes the files, once.
    """
    if not chief:
        return Path(tempfile.mkdtemp(prefix=f"{demo}-worker-"))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%SZ")
    for attempt in range(1000):
        suffix = f"-{attempt + 1}" if attempt else ""
        path = Path(logdir) / f"{stamp}-{demo}{suffix}"
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a new run folder under {logdir}")


def print_config(config, demo):
    fields = ", ".join(f"{key}={value}" for key, value in dataclasses.asdict(config).items()
                       if value not in (None, False))
    print(f"demo_{demo}: {fields}", flush=True)


class ProgressBar:
    """One bar over the whole run: redrawn in place on a terminal, a line per 10 % otherwise."""

    def __init__(self, total, label="train", stream=None):
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.started = time.perf_counter()
        self._last_draw, self._last_tenth = 0.0, -1

    def update(self, done, **fields):
        now = time.perf_counter()
        tenth = 10 * done // max(self.total, 1)
        if self.interactive and now - self._last_draw < 0.1 and done < self.total:
            return
        if not self.interactive and tenth == self._last_tenth:
            return
        self._last_draw, self._last_tenth = now, tenth
        width = 30
        filled = width * done // max(self.total, 1)
        text = " ".join(f"{key} {value}" for key, value in fields.items())
        line = (f"{self.label} [{'=' * filled}{'.' * (width - filled)}] {done}/{self.total} "
                f"{now - self.started:5.1f}s {text}")
        self.stream.write(("\r" + line) if self.interactive else line + "\n")
        self.stream.flush()

    def close(self):
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


def write_json(path, record):
    """Write through a temporary file, so an interrupted write never leaves half a run.json."""
    temporary = Path(path).with_suffix(".json.tmp")
    temporary.write_text(json.dumps(record, indent=2, default=_plain) + "\n")
    os.replace(temporary, path)


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def finetune(model, data, x_train, config):
    """Train the pruned model `config.finetune` more epochs with the data loss only."""
    import keras

    steps = steps_per_epoch(len(x_train), config.batch_size)
    batches = epoch_batches(x_train, data.y_train, config.batch_size, config.seed).repeat()
    # Many epochs per graph call, as in the Keras demo: fit()'s per-epoch cost dominates here.
    chunk = max(size for size in range(1, 51) if config.finetune % size == 0)
    model.compile(optimizer=keras.optimizers.Adam(config.lr), loss=loss_name(data.task),
                  steps_per_execution=chunk * steps)
    model.fit(batches, epochs=config.finetune // chunk, steps_per_epoch=chunk * steps,
              shuffle=False, verbose=0)


def finish_run(demo, config, data, model, run_dir, status, units_before, steps_done,
               ms_per_step, wall_started, extra=None, footer=(), chief=True):
    """Count, evaluate, prune and save; write run.json; print the final table; return it.

    A worker that is not the chief (`chief=False`) removes its run folder at the end.
    """
    units_after = count_active_units(model, config.threshold)
    summary = {
        "demo": demo, "status": status, "config": dataclasses.asdict(config),
        "dataset": {"name": data.name, "task": data.task, "feature_names": data.feature_names},
        "units_before": units_before.as_dict(), "units_after": units_after.as_dict(),
        "surviving_features": units_after.surviving_features(data.feature_names),
        "steps": steps_done,
        "test": evaluate(model, data),
        "thresholded_test": evaluate(thresholded_copy(model, config.threshold), data),
    }
    pruned, report = prune_model(model, config.threshold, data.feature_names)
    pruned.save(run_dir / "pruned.keras")
    x_test = data.x_test[:, report.kept_inputs]
    difference = np.max(np.abs(ops.convert_to_numpy(pruned(x_test))
                               - ops.convert_to_numpy(model(data.x_test))))
    summary["pruned"] = {
        "architecture": report.architecture, "params_before": report.params_before,
        "params_after": report.params_after, "kept_inputs": report.kept_inputs,
        "notes": report.notes, "test": evaluate(pruned, data, x=x_test),
        # On the test inputs; 0 up to float rounding when the dropped groups were exactly 0.
        "max_abs_difference_from_trained": float(difference)}
    if config.finetune and status == "completed":
        finetune(pruned, data, data.x_train[:, report.kept_inputs], config)
        pruned.save(run_dir / "pruned_finetuned.keras")
        summary["pruned"]["finetuned_test"] = evaluate(pruned, data, x=x_test)
    summary.update(extra or {})
    summary["ms_per_step"] = ms_per_step
    summary["wall_seconds"] = time.perf_counter() - wall_started
    summary["chief"] = chief
    write_json(run_dir / "run.json", summary)
    print_report(summary, run_dir, footer)
    if not chief:  # a worker's files are the chief's duplicates
        shutil.rmtree(run_dir, ignore_errors=True)
    return summary


def _feature_list(names, total, shown=13):
    if not names:
        return "(none)"
    text = ", ".join(names[:shown]) + (", …" if len(names) > shown else "")
    return f"{len(names)} of {total}: {text}"


def print_report(summary, run_dir, footer=()):
    metric = metric_name(summary["dataset"]["task"])
    unit = " ($1000s)" if summary["dataset"]["name"] == "boston" and metric == "rmse" else ""

    def layers(units):
        return "-".join(str(count) for count in [units["inputs"], *units["hidden"]])

    def value(test):
        return "n/a" if test is None else f"{test[metric]:.4f}"

    pruned = summary["pruned"]
    rows = [
        ("status", summary["status"]),
        (f"test {metric}{unit}", value(summary["test"])),
        (f"  thresholded / pruned", f"{value(summary['thresholded_test'])} / {value(pruned['test'])}"),
        ("active units", f"{layers(summary['units_before'])} → {layers(summary['units_after'])}"),
        ("architecture", pruned["architecture"]),
        ("pruned vs trained", f"max |difference| {pruned['max_abs_difference_from_trained']:.1e}"
                              " on the test inputs"),
        ("parameters", f"{pruned['params_before']} → {pruned['params_after']}"),
        ("surviving features", _feature_list(summary["surviving_features"],
                                             len(summary["dataset"]["feature_names"]))),
    ]
    if "finetuned_test" in pruned:
        rows.append((f"  pruned + finetuned", value(pruned["finetuned_test"])))
    rows += [("ms per step", "n/a" if summary["ms_per_step"] is None
              else f"{summary['ms_per_step']:.3f}"),
             ("wall time", f"{summary['wall_seconds']:.1f} s"), ("run folder", str(run_dir))]
    rows += [("note", note) for note in pruned["notes"]] + list(footer)
    width = max(len(name) for name, _ in rows)
    for name, text in rows:
        print(f"  {name:<{width}}  {text}")

