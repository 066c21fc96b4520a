"""A run's TensorBoard event file, as each demo writes it (tags: common.tensorboard).

`StepBoard` is the TF demo's: every step's scalars from inside its graph, then after each
chunk the evaluation and the pictures. `EventWriter` is the Keras demo's: the same tags per
epoch, read from its UnitHistory. `RecordWriter` writes many per-step records at once (a
path point trained by common/engine.py).
"""

import shutil

import keras
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams

from common.counting import unit_kernels, unit_names
from common.files import unless_disk_full
from common.data import metric_name
from common.tensorboard import (describe, pictures_due, step_scalar_protos, write_final_metrics,
                                write_kernel_pictures, write_run_start, write_step_scalars)


class RecordWriter:
    """The per-step scalars of many records at once, into `writer`: (step, loss, penalty,
    units per layer) each. One graph call for them all (eager writes cost ~0.4 ms each),
    their Summary protos built in Python (step_scalar_protos): a graph of tf.summary.scalar
    calls took 0.6 s to trace, more than all its calls in a default run."""

    def __init__(self, writer, names, threshold, described=False):
        self.writer, self.names, self.threshold = writer, names, threshold
        self._graph, self._described = None, described  # True: the tags have their text

    def write(self, records):
        protos = step_scalar_protos(records, self.names, self.threshold, self._described)
        self._described = True
        if self._graph is None:
            @tf.function(reduce_retracing=True)
            def graph(steps, protos):
                with self.writer.as_default():
                    for index in tf.range(tf.shape(steps)[0]):
                        tf.summary.experimental.write_raw_pb(protos[index], step=steps[index])

            self._graph = graph
        self._graph(tf.constant([record[0] for record in records], tf.int64),
                    tf.constant(protos))


class EventWriter:
    """Keras demo: the TF demo's tags, per epoch, from a UnitHistory; use `callback()` in fit.

    It reads the history's whole records after each fit() epoch (a chunk of data epochs),
    so it writes one point per data epoch, the evaluations, and the pictures (pictures_due).
    """

    def __init__(self, run_dir, history, model, config, task, split, chief=True,
                 total_epochs=None):
        self.history, self.split = history, split
        self.kernels = unit_kernels(model)
        self.names = unit_names(len(self.kernels))
        self.threshold, self.pictures = config.threshold, not config.no_pictures
        self.total_epochs = total_epochs or config.epochs  # the pictures' spacing
        self.writer = (tf.summary.create_file_writer(str(run_dir)) if chief
                       else tf.summary.create_noop_writer())
        self.epochs_written = self.tests_written = 0
        self._records = RecordWriter(self.writer, self.names, self.threshold)
        write_run_start(self.writer, config, run_dir.name, task, len(self.kernels))

    def write_new_records(self):
        epochs = self.history.epoch_records[self.epochs_written:]
        tests = self.history.test_records[self.tests_written:]
        pictures = self.pictures and bool(epochs) and pictures_due(
            self.epochs_written, self.epochs_written + len(epochs), self.total_epochs)
        self.epochs_written += len(epochs)
        self.tests_written += len(tests)
        if epochs:
            self._write_epochs(epochs)
        with self.writer.as_default():
            if pictures:  # eagerly: about 20 times a run
                write_kernel_pictures(self.kernels, self.names, step=epochs[-1][0])
            description = describe(self.threshold)[self.split]
            for epoch, metrics in tests:
                for name, value in metrics.items():
                    tf.summary.scalar(f"{self.split}/{name}", value, step=epoch,
                                      description=description)

    def _write_epochs(self, epochs):
        self._records.write(epochs)

    def callback(self):
        return keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: self.write_new_records())

    def close(self, summary):
        with unless_disk_full():
            self.write_new_records()  # what the last chunk left, e.g. after Ctrl-C
            write_final_metrics(self.writer, summary, self.epochs_written)
            self.writer.close()


class StepBoard:
    """TF demo: the run's event file. `step` writes one step's scalars inside the training
    graph; after each chunk of steps, `chunk` writes the evaluation and, about 20 times a
    run, the pictures; `records` writes a path point's steps trained by common/engine.py."""

    def __init__(self, run, kernels, total_steps):
        config = run.config
        self.kernels, self.names, self.threshold = kernels, unit_names(len(kernels)), config.threshold
        self.split, self.total, self.pictures = run.split, total_steps, not config.no_pictures
        self.run, self.metric = run, metric_name(run.data.task)
        self.writer = (tf.summary.create_file_writer(str(run.run_dir)) if run.chief
                       else tf.summary.create_noop_writer())
        self._records = RecordWriter(self.writer, self.names, self.threshold, described=True)
        write_run_start(self.writer, config, run.run_dir.name, run.data.task, len(kernels))

    def step(self, step, loss, penalty, counts):
        """One step's scalars (inside a tf.function). name_scope(None): the tags read
        "neurons", not "while/neurons" (the training loop's scope)."""
        with self.writer.as_default(step=step), tf.compat.v1.name_scope(None):
            write_step_scalars(loss, penalty, counts, self.names, self.threshold)

    def chunk(self, done, end, metrics=None):
        """After steps done+1 .. end: `metrics` of the evaluation, the pictures when due."""
        with self.writer.as_default(step=end):
            for name, value in (metrics or {}).items():
                tf.summary.scalar(f"{self.split}/{name}", value,
                                  description=describe(self.threshold)[self.split])
            if self.pictures and pictures_due(done, end, self.total):
                write_kernel_pictures(self.kernels, self.names)

    def records(self, first, records, every):
        """Engine records (loss, penalty, units per layer) of steps first+1 ..., every
        `every`-th step and the last (TensorBoard keeps 1000 values a chart)."""
        self._records.write([(first + step, loss, penalty, units) for step, (loss, penalty, *units)
                             in enumerate(records.tolist(), start=1)
                             if step % every == 0 or step == len(records)])

    def point(self, point):
        """A kept path point: its own TensorBoard run `path-NN` (lambda as a hyperparameter;
        the validation metric, units and parameters as its metrics), and `path/*` scalars
        with the point's index as step in the main run."""
        run_dir, metric = self.run.run_dir, self.metric
        point_dir = run_dir / f"path-{point.index:02d}"
        values = {f"path/val_{metric}": point.val_metric, "path/units": point.total_units,
                  "path/params": point.params}
        try:
            point_writer = tf.summary.create_file_writer(str(point_dir))
            with point_writer.as_default(step=self.run.done):
                hparams.hparams({"lambda": point.lam},
                                trial_id=f"{run_dir.name}/{point_dir.name}")
                for tag, value in values.items():
                    tf.summary.scalar(tag, value)
            point_writer.close()
        except Exception:  # a full disk: no half-written point run is left behind
            shutil.rmtree(point_dir, ignore_errors=True)
            raise
        with self.writer.as_default(step=point.index):
            for tag, value in {**values, "path/lambda": point.lam}.items():
                tf.summary.scalar(tag, value)

    def close(self, summary, step):
        with unless_disk_full():
            self.writer.flush()
            write_final_metrics(self.writer, summary, step)
            self.writer.close()
