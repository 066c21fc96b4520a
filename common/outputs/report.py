"""What both demos print: the settings once, one progress bar, the final table."""

import sys
import time

from common.data.datasets import metric_name


def print_config(settings, demo):
    """The settings once, at the start (Config.applying: those that apply)."""
    import keras

    fields = ", ".join(f"{key}={value}" for key, value in settings.items())
    print(f"demo_{demo} on {keras.backend.backend()}: {fields}", flush=True)


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

    def close(self, done=None, why=None):
        """End the bar; a run that ended at `done`, before the total (a path's stop rule, a
        signal), gets a last line there saying `why`."""
        if done is not None and done < self.total:
            self.total = done  # the bar is full where the run ended
            self._last_draw = self._last_tenth = -1  # drawn whatever was drawn last
            self.update(done, ended=why or "early")
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


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

    pruned = summary["pruned"] or {}
    rows = [("status", summary["status"])]
    if summary.get("message"):
        rows.append(("why", summary["message"]))
    if pruned:
        rows += [
            (f"test {metric}{unit}", value(summary["test"])),
            ("  thresholded / pruned",
             f"{value(summary['thresholded_test'])} / {value(pruned['test'])}"),
            ("active units", f"{layers(summary['units_before'])} → "
                             f"{layers(summary['units_after'])}"),
            ("architecture", pruned["architecture"]),
            ("pruned vs trained", f"max |difference| "
             f"{pruned['max_abs_difference_from_trained']:.1e} on the test inputs"),
            ("parameters", f"{pruned['params_before']} → {pruned['params_after']}"),
            ("surviving features", _feature_list(summary["surviving_features"],
                                                 len(summary["dataset"]["feature_names"]))),
        ]
        if "finetuned_test" in pruned:
            rows.append(("  pruned + finetuned", value(pruned["finetuned_test"])))
    rows += [("ms per step", "n/a" if summary["ms_per_step"] is None
              else f"{summary['ms_per_step']:.3f}"),
             ("wall time", f"{summary['wall_seconds']:.1f} s" + (
                 "" if summary.get("startup_seconds") is None else
                 f" (+ {summary['startup_seconds']:.1f} s start-up: imports, data)")),
             ("run folder", str(run_dir))]
    pictures = [name for name in summary.get("files", []) if name.endswith(".png")]
    if pictures:
        rows.append(("pictures", ", ".join(pictures)))
    if summary.get("not_written"):
        rows.append(("not written", ", ".join(summary["not_written"])))
    notes = pruned.get("notes", []) + summary.get("notes", [])
    rows += [("note", note) for note in notes] + list(footer)
    width = max(len(name) for name, _ in rows)
    for name, text in rows:
        print(f"  {name:<{width}}  {text}")



def print_path_table(summary):
    """One line per point of a path: lambda, units per layer, parameters, validation
    metric ± SE (with --cv, then the folds' pooled metric ± SE and mean units); the
    selected point marked with an arrow."""
    metric = metric_name(summary["dataset"]["task"])
    selected = (summary.get("selected") or {}).get("index")
    pooled = (summary.get("cv") or {}).get("records") or []
    print(f"  path ({summary['path_ended']}):")
    repeats = f"{summary['cv']['repeats']} x " if pooled and "repeats" in summary["cv"] else ""
    folds = f"   {repeats}{summary['cv']['folds']} folds: {metric}, mean units" if pooled else ""
    print(f"     {'lambda':>9}  {'units':<14} {'params':>6}  validation {metric}{folds}")
    for record in summary["path"]:
        units = "-".join(str(count) for count in [record["units"]["inputs"],
                                                   *record["units"]["hidden"]])
        mark = "→" if record["index"] == selected else " "
        fold = ""
        if record["index"] < len(pooled):
            cv = pooled[record["index"]]
            fold = f"   {cv['val_metric']:.4f} ± {cv['val_se']:.4f}, {cv['total_units']:.1f}"
        print(f"   {mark} {record['lambda']:9.3e}  {units:<14} {record['params']:>6}  "
              f"{record['val_metric']:.4f} ± {record['val_se']:.4f}{fold}")
    if selected is not None:
        print(f"  selected by the {summary['selected']['rule']} rule; the test split is read "
              "once, for this network only")
