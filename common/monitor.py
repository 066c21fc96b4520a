"""Per-step records of data loss, penalty and active units during model.fit.

With `steps_per_execution` > 1, Keras runs many steps inside one graph call and a
callback only sees their end. `StepRecorder` is a metric, so it runs inside every step:
it writes one row per step into a buffer, and `UnitHistory` (a callback) reads the
buffer after each graph call. Use both:

    history = UnitHistory(model, task="regression", threshold=1e-3)
    model.compile(optimizer="adam", loss="mse", metrics=[history.recorder])
    model.fit(x, y, epochs=100, callbacks=[history])
    history.records["units"]  # one row of per-layer active units per epoch
"""

import math

import keras
import numpy as np
from keras import ops

from common.counting import active_counts, unit_kernels
from common.model import data_loss
from common.penalties import penalty_value


class StepRecorder(keras.metrics.Metric):
    """Writes [data loss, penalty, active units per layer] for each training step."""

    def __init__(self, model, task, threshold=1e-3, capacity=1024, name="step_recorder"):
        super().__init__(name=name)
        # A list keeps Keras from tracking the model as a part of this metric.
        self._model = [model]
        self.task = task
        self.threshold = threshold
        self.capacity = capacity
        self.num_layers = len(unit_kernels(model))
        # Under tf.distribute each replica writes its row: the stored row is their mean (the
        # weights, hence penalty and counts, are the same on every replica).
        self.rows = self.add_variable(shape=(capacity, 2 + self.num_layers),
                                      initializer="zeros", name="rows", aggregation="mean")
        self.count = self.add_variable(shape=(), dtype="int32", initializer="zeros", name="count",
                                       aggregation="only_first_replica")

    def update_state(self, y_true, y_pred, sample_weight=None):
        model = self._model[0]
        penalty = penalty_value(model)  # also counts a penalty applied by a proximal step
        counts = ops.cast(active_counts(unit_kernels(model), self.threshold), "float32")
        row = ops.concatenate([
            ops.stack([ops.cast(data_loss(self.task, y_true, y_pred), "float32"),
                       ops.cast(penalty, "float32")]), counts])
        index = ops.minimum(self.count, self.capacity - 1)
        self.rows.assign(ops.slice_update(self.rows, (index, 0), ops.expand_dims(row, 0)))
        self.count.assign(self.count + 1)

    def result(self):
        return self.rows[ops.maximum(self.count - 1, 0), 0]

    def reset_state(self):
        self.count.assign(0)

    def drain(self):
        """The rows written since the last drain, as a NumPy array; empties the buffer."""
        count = int(ops.convert_to_numpy(self.count))
        if count > self.capacity:
            raise RuntimeError(f"{count} steps ran between two reads of a {self.capacity}-row "
                               "StepRecorder: give it capacity >= steps_per_execution")
        rows = ops.convert_to_numpy(self.rows)[:count].copy()
        self.count.assign(0)
        return rows


class UnitHistory(keras.callbacks.Callback):
    """One record per data epoch: data loss, penalty, active units per layer; test loss too.

    `steps_per_epoch` is how many steps make one pass over the training data (1 when full
    batch). Test data, if given, is evaluated whenever fit ends one of its own epochs.
    Each record is added whole, in one step, so a run stopped at any moment (Ctrl-C lands
    between two Python operations) never holds half a record.
    """

    def __init__(self, model, task, threshold=1e-3, steps_per_epoch=1, capacity=1024,
                 evaluate_test=None):
        super().__init__()
        self.recorder = StepRecorder(model, task, threshold, capacity)
        self.steps_per_epoch = steps_per_epoch
        self.evaluate_test = evaluate_test
        self.epoch_records = []  # (epoch, data loss, penalty, [units per layer])
        self.test_records = []  # (epoch, {metric: value})
        self.diverged_at = None
        self._pending = np.zeros((0, 2 + self.recorder.num_layers), dtype=np.float32)

    @property
    def records(self):
        """The records as columns: epoch, loss, penalty, units, test_epoch, test."""
        epochs, tests = list(self.epoch_records), list(self.test_records)
        columns = dict(zip(["epoch", "loss", "penalty", "units"],
                           map(list, zip(*epochs)) if epochs else ([], [], [], [])))
        columns["test_epoch"] = [epoch for epoch, _ in tests]
        columns["test"] = [metrics for _, metrics in tests]
        return columns

    def on_train_batch_end(self, batch, logs=None):
        rows = np.concatenate([self._pending, self.recorder.drain()])
        whole = len(rows) // self.steps_per_epoch * self.steps_per_epoch
        self._pending = rows[whole:]
        for epoch_rows in np.split(rows[:whole], whole // self.steps_per_epoch):
            if not self._record(epoch_rows):
                break

    def _record(self, epoch_rows):
        loss = float(np.mean(epoch_rows[:, 0]))
        penalty = float(epoch_rows[-1, 1])
        epoch = len(self.epoch_records) + 1
        if not (math.isfinite(loss) and math.isfinite(penalty)):
            self.diverged_at = epoch
            self.model.stop_training = True
            return False
        self.epoch_records.append(
            (epoch, loss, penalty, [int(count) for count in epoch_rows[-1, 2:]]))
        return True

    def on_epoch_end(self, epoch, logs=None):
        if self.evaluate_test is not None and self.diverged_at is None and self.epoch_records:
            metrics = self.evaluate_test(self.model)
            self.test_records.append((self.epoch_records[-1][0], metrics))
