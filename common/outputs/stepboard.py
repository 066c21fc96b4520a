"""The TF demo's TensorBoard event file, written with tf.summary (tags: common.outputs.tensorboard).

`StepBoard` writes every step's scalars from inside the demo's training graph; after each
chunk of steps the evaluation and, about 20 times a run, the pictures; the steps of a path
point trained by common/search/engine.py from their records; each kept path point as a run of its
own. Everything but the in-graph scalars is built as Summary protos in Python and written
raw; the HParams trials with common.outputs.eventfile, as in the Keras demo.
"""

import keras
import tensorflow as tf

from common.shrink.counting import unit_names
from common.data.datasets import metric_name
from common.outputs.files import unless_disk_full
from common.outputs.tensorboard import (cv_summaries, describe, kernel_summaries, pictures_due,
                                run_start_summaries, scalar_summary, step_scalar_protos,
                                step_scalar_tags)
from common.outputs.trials import Trial, write_point_trial


def write_raw(writer, summaries):
    """(step, Summary proto) pairs into a tf.summary writer, eagerly (a few per chunk)."""
    with writer.as_default():
        for step, summary in summaries:
            tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)


class RecordWriter:
    """The per-step scalars of many records at once: (step, loss, penalty, units per layer)
    each. One graph call for them all (eager writes cost ~0.4 ms each), their protos built in
    Python: a graph of tf.summary.scalar calls took 0.6 s to trace, more than all its calls
    in a default run."""

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
                    tf.constant([proto.SerializeToString() for proto in protos]))


class StepBoard:
    """TF demo: the run's event file. `step` writes one step's scalars inside the training
    graph; after each chunk of steps, `chunk` writes the evaluation and, about 20 times a
    run, the pictures; `records` writes a path point's steps trained by common/search/engine.py."""

    def __init__(self, run, kernels, total_steps):
        settings = run.settings
        self.kernels, self.names = kernels, unit_names(len(kernels))
        self.threshold, self.pictures = settings["threshold"], not settings["no_pictures"]
        self.path = settings["path"]  # its last pictures: the chosen network, at close
        self.split, self.total = run.split, total_steps
        self.run, self.metric = run, metric_name(run.data.task)
        self.writer = (tf.summary.create_file_writer(str(run.run_dir)) if run.chief
                       else tf.summary.create_noop_writer())
        self._records = RecordWriter(self.writer, self.names, self.threshold, described=True)
        write_raw(self.writer, [(0, summary) for summary in run_start_summaries(
            run.changed, run.demo, len(kernels))])
        self.trial = Trial(run.run_dir, settings, run.demo, enabled=run.chief)
        self.pictured = None  # the step of the last pictures

    def step(self, step, loss, penalty, counts):
        """One step's scalars (inside a tf.function). name_scope(None): the tags read
        "neurons", not "while/neurons" (the training loop's scope)."""
        values = [loss, penalty, tf.reduce_sum(counts)] + [counts[index]
                                                           for index in range(len(self.names))]
        with self.writer.as_default(step=step), tf.compat.v1.name_scope(None):
            for (tag, description), value in zip(step_scalar_tags(self.names, self.threshold),
                                                 values):
                tf.summary.scalar(tag, value, description=description)

    def chunk(self, done, end, metrics=None):
        """After steps done+1 .. end: `metrics` of the evaluation, the pictures when due."""
        description = describe(self.threshold)[self.split]
        summaries = [scalar_summary(f"{self.split}/{name}", value, description)
                     for name, value in (metrics or {}).items()]
        if self.pictures and pictures_due(done, end, self.total, self.path):
            summaries += self._pictures(end)
        write_raw(self.writer, [(end, summary) for summary in summaries])

    def records(self, first, records, every):
        """Engine records (loss, penalty, units per layer) of steps first+1 ..., every
        `every`-th step and the last (TensorBoard keeps 1000 values a chart)."""
        self._records.write([(first + step, loss, penalty, units) for step, (loss, penalty, *units)
                             in enumerate(records.tolist(), start=1)
                             if step % every == 0 or step == len(records)])

    def _pictures(self, step):
        self.pictured = step
        return kernel_summaries([keras.ops.convert_to_numpy(kernel) for kernel in self.kernels],
                                self.names)

    def point(self, point):
        """A kept path point: its own TensorBoard run and HParams trial `path-NN`, and
        `path/*` scalars in the main run at the point's index (one step axis per chart)."""
        if self.run.chief:
            values = write_point_trial(self.run.run_dir, self.run.settings, self.run.demo, point,
                                       self.run.data.task)
            write_raw(self.writer, [(point.index, scalar_summary(tag, value))
                                    for tag, value in values.items()])

    def close(self, summary, step):
        """The run's end, at its last `step`: the pictures of the network it ends with (a
        path run's: the chosen point's, also when the path stopped early), the trial's
        results."""
        try:
            with unless_disk_full():
                self.writer.flush()
                pictures = (self._pictures(step) if self.pictures and summary["status"] !=
                            "diverged" and (self.path or self.pictured != step) else [])
                write_raw(self.writer, [(step, proto) for proto in pictures]
                          + cv_summaries(summary))
                self.writer.close()
        finally:
            self.trial.close(summary, step)
