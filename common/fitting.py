"""Training with Keras' fit in chunks: many epochs per graph call, and fine-tuning.

One fit() epoch costs milliseconds of Keras bookkeeping, far more than a step of these small
networks, so `fit_in_chunks` runs `chunk` data epochs per fit() epoch (compile's
`steps_per_execution`). The chunk does not have to divide the number of epochs: the rest
runs as one shorter chunk at the end, so speed and evaluation cadence do not depend on how
the epoch count factorizes.
"""

import functools
import weakref

import keras

from common.batches import count_epoch_steps, epoch_batches
from common.model import loss_name

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


def fit_in_chunks(model, batches, epochs, steps_per_epoch, chunk, compile_args,
                  callbacks=(), one_step_per_call=False, validation=None):
    """Compile with `compile_args` and fit `epochs` data epochs of `batches` (endless), one
    fit() epoch per chunk of at most `chunk` data epochs.

    `one_step_per_call` forces steps_per_execution 1 (Keras 3's fit under a tf.distribute
    strategy needs it, keras-team/keras#19246). Callbacks see one fit() epoch per chunk.
    """
    full, rest = divmod(epochs, chunk)
    for size, count in ((chunk, full), (rest, 1)):
        if size == 0 or count == 0:
            continue
        steps = size * steps_per_epoch
        # PyTorch's fit runs one step per call (Keras refuses steps_per_execution > 1 there).
        per_call = 1 if one_step_per_call or keras.backend.backend() == "torch" else steps
        # Compiled once per chunk size: a later call (a path's next point) reuses the graph.
        compiled_with = _COMPILED.get(model)
        if compiled_with is None or compiled_with[0] is not compile_args \
                or compiled_with[1] != per_call:
            model.compile(**compile_args, steps_per_execution=per_call)
            _COMPILED[model] = (compile_args, per_call)
        model.fit(batches, epochs=count, steps_per_epoch=steps, shuffle=False, verbose=0,
                  callbacks=list(callbacks), validation_data=validation)
        if model.stop_training:
            break


def finetune(model, task, x_train, y_train, epochs, batch_size, lr, seed, validation=None,
             patience=None, callbacks=()):
    """Train a (pruned) model `epochs` more epochs on the data loss alone, with Adam(lr);
    returns the epochs trained.

    With `validation` (x, y) and `patience`, stop once the validation loss has not improved
    for `patience` epochs (checked every few epochs) and keep the best weights seen.
    """
    batches = epoch_batches(x_train, y_train, batch_size, seed).repeat()
    # Many epochs per graph call: fit()'s per-epoch cost dominates at this size.
    chunk, stopping, trained = 50, [], {"epochs": 0}
    if patience is not None and validation is not None:
        chunk = max(1, min(50, patience // 5))
        stopping.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=-(-patience // chunk), restore_best_weights=True))
    counter = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: trained.update(epochs=trained["epochs"] + chunk))
    fit_in_chunks(model, batches, epochs, count_epoch_steps(len(x_train), batch_size), chunk,
                  dict(optimizer=keras.optimizers.Adam(lr), loss=loss_name(task)),
                  callbacks=[*stopping, counter, *callbacks],
                  validation=validation if stopping else None)
    return min(trained["epochs"], epochs)
