"""The Keras demo's TensorBoard event file, written without TensorFlow (common.outputs.eventfile).

`EventWriter` writes the TF demo's tags (common.outputs.tensorboard) per epoch, read from the
demo's UnitHistory after each fit() epoch: one point per data epoch, the evaluations and,
about 20 times a run and at its end, the pictures; the run's HParams trial and each kept
path point's (common.outputs.trials), with `path/*` by point index. The same on every Keras
backend.
"""

import keras

from common.shrink.counting import unit_kernels, unit_names
from common.outputs.eventfile import EventFile
from common.outputs.files import unless_disk_full
from common.outputs.tensorboard import (cv_summaries, describe, kernel_summaries, pictures_due,
                                run_start_summaries, scalar_summary, step_scalar_protos)
from common.outputs.trials import Trial, write_point_trial


class EventWriter:
    """Keras demo: the TF demo's tags, per epoch, from a UnitHistory; use `callback()` in fit.

    `total_epochs` spaces the pictures (every stage of the run together); `chief` False
    (another worker) writes nothing.
    """

    def __init__(self, run_dir, history, model, settings, changed, task, split, demo,
                 chief=True, total_epochs=None):
        self.history, self.split = history, split
        self.run_dir, self.settings, self.task, self.demo = run_dir, settings, task, demo
        self.kernels = unit_kernels(model)
        self.names = unit_names(len(self.kernels))
        self.threshold, self.pictures = settings["threshold"], not settings["no_pictures"]
        self.path = settings["path"]  # its last pictures: the chosen network, at close
        self.total_epochs = total_epochs or settings["epochs"]  # the pictures' spacing
        self.file = EventFile(run_dir, enabled=chief)
        self.epochs_written = self.tests_written = 0
        self._described = False  # the per-epoch tags carry their text once, in their first value
        self.pictured = None  # the epoch of the last pictures
        for summary in run_start_summaries(changed, demo, len(self.kernels)):
            self.file.write(summary, 0)
        self.trial = Trial(run_dir, settings, demo, enabled=chief)

    def write_new_records(self):
        epochs = self.history.epoch_records[self.epochs_written:]
        tests = self.history.test_records[self.tests_written:]
        pictures = self.pictures and bool(epochs) and pictures_due(
            self.epochs_written, self.epochs_written + len(epochs), self.total_epochs, self.path)
        self.epochs_written += len(epochs)
        self.tests_written += len(tests)
        for record, summary in zip(epochs, step_scalar_protos(epochs, self.names, self.threshold,
                                                              self._described)):
            self.file.write(summary, record[0])
        self._described = self._described or bool(epochs)
        if pictures:  # about 20 times a run
            self._write_pictures(epochs[-1][0])
        description = describe(self.threshold)[self.split]
        for epoch, metrics in tests:
            for name, value in metrics.items():
                self.file.write(scalar_summary(f"{self.split}/{name}", value, description), epoch)
        self.file.flush()  # TensorBoard shows the run as it trains

    def _write_pictures(self, epoch):
        self.pictured = epoch
        kernels = [keras.ops.convert_to_numpy(kernel) for kernel in self.kernels]
        for summary in kernel_summaries(kernels, self.names):
            self.file.write(summary, epoch)

    def point(self, point):
        """A kept path point: its own TensorBoard run and HParams trial `path-NN`, and
        `path/*` scalars at the point's index (one step axis per chart)."""
        if self.file.enabled:
            values = write_point_trial(self.run_dir, self.settings, self.demo, point, self.task)
            for tag, value in values.items():
                self.file.write(scalar_summary(tag, value), point.index)

    def callback(self):
        return keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: self.write_new_records())

    def close(self, summary):
        """The run's end: what the last chunk left (e.g. after Ctrl-C), the pictures of the
        network it ends with (a path run's: the chosen point's, also when the path stopped
        early), the trial's results."""
        try:
            with unless_disk_full():
                try:
                    self.write_new_records()
                    if (self.pictures and summary["status"] != "diverged" and self.epochs_written
                            and (self.path or self.pictured != self.epochs_written)):
                        self._write_pictures(self.epochs_written)
                    for step, proto in cv_summaries(summary):
                        self.file.write(proto, step)
                finally:
                    self.file.close()
        finally:
            self.trial.close(summary, self.epochs_written)
