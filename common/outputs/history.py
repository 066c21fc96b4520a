"""What the Keras demo leaves of its history beside history.png: history.csv, the numbers
behind the picture, and whether a window can show the picture."""

import csv
import os
import sys

from common.shrink.counting import unit_names


def write_history_csv(records, path, split="test"):
    """One row per epoch: data loss, penalty, active units per layer and in all, and the test
    (or validation: `split`) metrics where evaluated."""
    layers = unit_names(len(records["units"][0])) if records["units"] else []
    test = dict(zip(records["test_epoch"], records["test"]))
    test_names = sorted({name for metrics in records["test"] for name in metrics})
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["epoch", "loss", "penalty", *layers, "neurons",
                         *[f"{split}_{name}" for name in test_names]])
        for epoch, loss, penalty, units in zip(records["epoch"], records["loss"],
                                               records["penalty"], records["units"]):
            tested = test.get(epoch, {})
            writer.writerow([epoch, f"{loss:.6g}", f"{penalty:.6g}", *units, sum(units),
                             *[f"{tested[name]:.6g}" if name in tested else ""
                               for name in test_names]])


def can_show(no_show):
    """A window only on a display, and never with --no-show (`no_show`)."""
    if no_show:
        return False
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
