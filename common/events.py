"""The Keras demo's TensorBoard event file, written without TensorFlow (common.eventfile).

`EventWriter` writes the TF demo's tags (common.tensorboard) per epoch, read from the
demo's UnitHistory after each fit() epoch: one point per data epoch, the evaluations and,
about 20 times a run, the pictures. The same on every Keras backend.
"""

import keras

from common.counting import unit_kernels, unit_names
from common.eventfile import EventFile
from common.files import unless_disk_full
from common.tensorboard import (describe, final_summaries, kernel_summaries, pictures_due,
                                run_start_summaries, scalar_summary, step_scalar_protos)


class EventWriter:
    """Keras demo: the TF demo's tags, per epoch, from a UnitHistory; use `callback()` in fit.

    `total_epochs` spaces the pictures (every stage of the run together); `chief` False
    (another worker) writes nothing.
    """

    def __init__(self, run_dir, history, model, config, task, split, chief=True,
                 total_epochs=None):
        self.history, self.split = history, split
        self.kernels = unit_kernels(model)
        self.names = unit_names(len(self.kernels))
        self.threshold, self.pictures = config.threshold, not config.no_pictures
        self.total_epochs = total_epochs or config.epochs  # the pictures' spacing
        self.file = EventFile(run_dir, enabled=chief)
        self.epochs_written = self.tests_written = 0
        self._described = False  # the per-epoch tags carry their text once, in their first value
        for summary in run_start_summaries(config, run_dir.name, task, len(self.kernels)):
            self.file.write(summary, 0)

    def write_new_records(self):
        epochs = self.history.epoch_records[self.epochs_written:]
        tests = self.history.test_records[self.tests_written:]
        pictures = self.pictures and bool(epochs) and pictures_due(
            self.epochs_written, self.epochs_written + len(epochs), self.total_epochs)
        self.epochs_written += len(epochs)
        self.tests_written += len(tests)
        for record, summary in zip(epochs, step_scalar_protos(epochs, self.names, self.threshold,
                                                              self._described)):
            self.file.write(summary, record[0])
        self._described = self._described or bool(epochs)
        if pictures:  # about 20 times a run
            kernels = [keras.ops.convert_to_numpy(kernel) for kernel in self.kernels]
            for summary in kernel_summaries(kernels, self.names):
                self.file.write(summary, epochs[-1][0])
        description = describe(self.threshold)[self.split]
        for epoch, metrics in tests:
            for name, value in metrics.items():
                self.file.write(scalar_summary(f"{self.split}/{name}", value, description), epoch)
        self.file.flush()  # TensorBoard shows the run as it trains

    def callback(self):
        return keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: self.write_new_records())

    def close(self, summary):
        with unless_disk_full():
            try:
                self.write_new_records()  # what the last chunk left, e.g. after Ctrl-C
                for step, proto in final_summaries(summary, self.epochs_written):
                    self.file.write(proto, step)
            finally:
                self.file.close()
