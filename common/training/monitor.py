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
import time
import warnings

import keras
import numpy as np
from keras import ops

from common.shrink.counting import active_counts, unit_kernels
from common.training.model import data_loss
from common.penalty.penalties import penalty_value


class StepRecorder(keras.metrics.Metric):
    """Writes [data loss, penalty, active units per layer] for each training step.

    The penalty and the counts are those of the weights after the step. On TensorFlow (and
    other stateful backends) the metric reads them itself: metrics run after the optimizer.
    JAX's `fit` is stateless and shows a metric only its own variables, so there the
    recorder also wraps the model's `train_step` to write the penalty and counts of the
    step's updated weights into the same row (it passes through when the model is compiled
    without this recorder).
    """

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
        self._stateless = keras.backend.backend() == "jax"
        if self._stateless:
            _record_after_each_step(model, self)

    def _write(self, index, column, values):
        if keras.backend.backend() == "torch":  # eager; its slice_update misreads a tensor index
            index = int(ops.convert_to_numpy(index))
        rows = ops.convert_to_tensor(self.rows)
        self.rows.assign(ops.slice_update(rows, (index, column), ops.expand_dims(values, 0)))

    def update_state(self, y_true, y_pred, sample_weight=None):
        index = ops.minimum(self.count, self.capacity - 1)
        loss = ops.cast(ops.reshape(data_loss(self.task, y_true, y_pred), (1,)), "float32")
        if self._stateless:  # the weights' columns come from the wrapped train_step
            self._write(index, 0, loss)
        else:
            self._write(index, 0, ops.concatenate([loss, self.weights_row()]))
        self.count.assign(self.count + 1)

    def weights_row(self):
        """[penalty, active units per layer] of the model's current weights."""
        model = self._model[0]
        penalty = penalty_value(model)  # also counts a penalty applied by a proximal step
        counts = ops.cast(active_counts(unit_kernels(model), self.threshold), "float32")
        return ops.concatenate([ops.reshape(ops.cast(penalty, "float32"), (1,)), counts])

    def record_weights(self):
        """Write weights_row() into the columns after the data loss of the last row written."""
        index = ops.clip(self.count - 1, 0, self.capacity - 1)
        self._write(index, 1, self.weights_row())

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


def _record_after_each_step(model, recorder):
    """JAX: after each train step, the recorder reads the step's updated weights."""
    train_step = model.train_step

    def recording_train_step(state, data):
        logs, state = train_step(state, data)
        trainable, non_trainable, optimizer_variables, metrics_variables = state
        metric_refs = model.metrics_variables
        if not any(ref is recorder.rows for ref in metric_refs):
            return logs, state  # compiled without this recorder
        mapping = [*zip(model.trainable_variables, trainable), *zip(metric_refs, metrics_variables)]
        with keras.StatelessScope(state_mapping=mapping) as scope:
            recorder.record_weights()
        metrics_variables = [_current(scope, ref, value)
                             for ref, value in zip(metric_refs, metrics_variables)]
        return logs, (trainable, non_trainable, optimizer_variables, metrics_variables)

    model.train_step = recording_train_step


def _current(scope, ref, value):
    current = scope.get_current_value(ref)
    return value if current is None else current


def warn_if_nothing_applies_the_penalty(model):
    """A GroupSparse(..., proximal=True) adds nothing to the loss: only a ProximalOptimizer
    applies it. Warn, once per model, when `model` is compiled with another optimizer."""
    from common.penalty.proximal_optimizer import ProximalOptimizer

    proximal = [layer.name for layer in model.layers
                if getattr(getattr(layer, "kernel_regularizer", None), "proximal", False)]
    optimizer = getattr(model, "optimizer", None)
    if proximal and optimizer is not None and not isinstance(optimizer, ProximalOptimizer) \
            and not getattr(model, "_warned_no_proximal_optimizer", False):
        model._warned_no_proximal_optimizer = True
        warnings.warn(
            f"the GroupSparse(..., proximal=True) penalty of {', '.join(proximal)} is applied "
            f"by a ProximalOptimizer, and this model's optimizer is a "
            f"{type(optimizer).__name__}: nothing applies it (wrap it: "
            "ProximalOptimizer(keras.optimizers.Adam()), or use proximal=False)",
            UserWarning, stacklevel=2)


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
        self.chunk_time = (None, 0)  # the last fit() epoch's (seconds, steps): on_epoch_end
        self._started, self._epochs_before = None, 0
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

    def on_train_begin(self, logs=None):
        warn_if_nothing_applies_the_penalty(self.model)

    def on_train_batch_end(self, batch, logs=None):
        if hasattr(self.model, "jax_state_sync"):  # JAX: the step's state into the variables
            self.model.jax_state_sync()
        self.add_steps(self.recorder.drain())

    def add_steps(self, rows):
        """Per-step rows (data loss, penalty, active units per layer) as epoch records, e.g.
        the records common.search.engine returns for a path point."""
        rows = np.concatenate([self._pending, np.asarray(rows, np.float32)])
        whole = len(rows) // self.steps_per_epoch * self.steps_per_epoch
        self._pending = rows[whole:]
        for epoch_rows in np.split(rows[:whole], whole // self.steps_per_epoch) if whole else []:
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

    def on_epoch_begin(self, epoch, logs=None):
        self._started, self._epochs_before = time.perf_counter(), len(self.epoch_records)

    def on_epoch_end(self, epoch, logs=None):
        # The fit() epoch's steps, timed before the evaluation: (seconds, steps), seconds
        # None for a fit() call's first epoch, which also traced the step.
        steps = (len(self.epoch_records) - self._epochs_before) * self.steps_per_epoch
        self.chunk_time = (time.perf_counter() - self._started if epoch else None, steps)
        if self.evaluate_test is not None and self.diverged_at is None and self.epoch_records:
            metrics = self.evaluate_test(self.model)
            self.test_records.append((self.epoch_records[-1][0], metrics))
