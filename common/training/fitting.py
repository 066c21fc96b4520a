"""Training with Keras' fit in chunks: many epochs per graph call, and fine-tuning.

One fit() epoch costs milliseconds of Keras bookkeeping, far more than a step of these small
networks, so `fit_in_chunks` runs `chunk` data epochs per fit() epoch (compile's
`steps_per_execution`). The chunk does not have to divide the number of epochs: the rest
runs as one shorter chunk at the end, so speed and evaluation cadence do not depend on how
the epoch count factorizes.
"""

import functools
import threading
import weakref

import keras

from common.training.batches import FINAL, batch_rows, batch_stream, count_epoch_steps, epoch_indices
from common.training.model import loss_name

# model -> (compile_args, steps_per_execution) it was last compiled with here. Holding the
# arguments themselves (not their id(), which a new dict may reuse) keeps the check exact;
# weak keys let the models go.
_COMPILED = weakref.WeakKeyDictionary()


def drop_compiled_step(model):
    """Make the next fit() trace the training step again: the penalty's numbers (the path's
    strength, adaptive weights, per-layer strengths) are constants of the compiled step.

    On JAX, jit caches a trace by the step function itself, so an instance's own
    `train_step` (UnitHistory's recorder wraps it there) is replaced by a new object too.
    """
    model.train_function = None
    own_step = model.__dict__.get("train_step")
    if own_step is not None:
        model.train_step = functools.partial(own_step)


class IndexBatches(keras.utils.PyDataset):
    """Endless training batches of rows (x, y) for fit, on every backend and without
    TensorFlow: the epochs of common.training.batches.epoch_indices on the stream
    batch_stream(seed, *stream), one after another across fit() calls (fit_in_chunks moves
    `start` on by the batches each call trained).

    `replicas`: each batch loses its last rows (fewer than `replicas`) so that it splits
    evenly over the devices of a distribution, as Keras' fit needs; `dropped_rows` says how
    many per epoch.
    """

    def __init__(self, x, y, batch_size, seed, stream, replicas=1):
        super().__init__()
        self.x, self.y, self.batch_size, self.replicas = x, y, batch_size, replicas
        self.seed, self.stream, self.start = seed, stream, 0
        self.steps_per_epoch = count_epoch_steps(len(x), batch_size)
        batch = batch_rows(len(x), batch_size)
        sizes = [batch] * (len(x) // batch) + ([len(x) % batch] if len(x) % batch else [])
        self.dropped_rows = sum(size % replicas for size in sizes)
        self._epochs = {}  # the epochs drawn so far that may still be asked for
        self._rng, self._drawn = None, 0
        self._lock = threading.Lock()  # on TensorFlow, fit asks from its input thread

    @property
    def num_batches(self):
        return None  # endless

    def epoch(self, number):
        """The index arrays of data epoch `number` (0-based) of the stream."""
        with self._lock:
            if number < self._drawn - len(self._epochs) or self._rng is None:
                self._rng, self._drawn = batch_stream(self.seed, *self.stream), 0
                self._epochs = {}
            while self._drawn <= number:
                self._epochs[self._drawn] = epoch_indices(len(self.x), self.batch_size,
                                                          self._rng)
                self._drawn += 1
                self._epochs.pop(self._drawn - 4, None)  # a few epochs back, for prefetching
            return self._epochs[number]

    def __getitem__(self, index):
        if self.steps_per_epoch == 1 and self.replicas == 1:
            return self.x, self.y  # full batch: every row, in order, every step
        epoch, step = divmod(self.start + index, self.steps_per_epoch)
        rows = self.epoch(epoch)[step]
        rows = rows[:len(rows) // self.replicas * self.replicas]
        return self.x[rows], self.y[rows]


def fit_chunks(epochs, chunk):
    """`epochs` data epochs as fit() calls: (fit() epochs, data epochs in each) pairs, chunks
    of `chunk` data epochs and one shorter chunk for the rest, so that neither the speed nor
    the evaluation cadence depends on how the epoch count factorizes."""
    full, rest = divmod(epochs, chunk)
    return [(count, size) for count, size in ((full, chunk), (1, rest)) if count and size]


def steps_per_call(steps, one_step_per_call=False):
    """compile's `steps_per_execution` for fit() epochs of `steps` steps: all of them in one
    graph call, or one where Keras needs it (PyTorch's fit; Keras 3's fit under a
    tf.distribute strategy, keras-team/keras#19246: `one_step_per_call`)."""
    return 1 if one_step_per_call or keras.backend.backend() == "torch" else steps


def fit_in_chunks(model, batches, epochs, chunk, compile_args,
                  callbacks=(), one_step_per_call=False, validation=None):
    """Compile with `compile_args` and fit `epochs` data epochs of `batches` (IndexBatches),
    one fit() epoch per chunk of at most `chunk` data epochs (fit_chunks, steps_per_call).
    Callbacks see one fit() epoch per chunk."""
    for count, size in fit_chunks(epochs, chunk):
        steps = size * batches.steps_per_epoch
        per_call = steps_per_call(steps, one_step_per_call)
        # Compiled once per chunk size: a later call (a path's next point) reuses the graph.
        compiled_with = _COMPILED.get(model)
        if compiled_with is None or compiled_with[0] is not compile_args \
                or compiled_with[1] != per_call:
            model.compile(**compile_args, steps_per_execution=per_call)
            _COMPILED[model] = (compile_args, per_call)
        model.fit(batches, epochs=count, steps_per_epoch=steps, shuffle=False, verbose=0,
                  callbacks=list(callbacks), validation_data=validation)
        batches.start += count * steps  # the next call goes on with the next batch
        if model.stop_training:
            break


def finetune(model, task, x_train, y_train, epochs, batch_size, lr, seed, validation=None,
             patience=None, callbacks=()):
    """Train a (pruned) model `epochs` more epochs on the data loss alone, with Adam(lr);
    returns the epochs trained.

    With `validation` (x, y) and `patience`, stop once the validation loss has not improved
    for `patience` epochs (checked every few epochs) and keep the best weights seen.
    """
    batches = IndexBatches(x_train, y_train, batch_size, seed, (FINAL,))
    # Many epochs per graph call: fit()'s per-epoch cost dominates at this size.
    chunk, stopping, trained = 50, [], {"epochs": 0}
    if patience is not None and validation is not None:
        chunk = max(1, min(50, patience // 5))
        stopping.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=-(-patience // chunk), restore_best_weights=True))
    counter = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: trained.update(epochs=trained["epochs"] + chunk))
    fit_in_chunks(model, batches, epochs, chunk,
                  dict(optimizer=keras.optimizers.Adam(lr), loss=loss_name(task)),
                  callbacks=[*stopping, counter, *callbacks],
                  validation=validation if stopping else None)
    return min(trained["epochs"], epochs)
