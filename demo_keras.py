"""Group sparse regularization with Keras' model.fit, shown as a Matplotlib picture.

The original experiment of Scardapane et al. (2017) as the Keras demo had it: a
13-20-15-1 network on the Boston housing data, `GroupSparse` as the kernel_regularizer of
every Dense layer, and a picture of the active units falling during training.

    python demo_keras.py                    # the original run: 2500 full-batch epochs
    python demo_keras.py --no-show          # save the picture without opening a window
    python demo_keras.py --preset compact   # lambda chosen on validation (the path)
    python demo_keras.py --help             # every flag (shared with demo_tensorflow.py)

Each run writes a new folder summaries/<UTC time>-keras/ with history.png (and its numbers,
history.csv), a run.json summary and pruned.keras, the network with the switched-off units
removed.
"""

import sys

# Only the light modules here: a bad flag or file is reported before TensorFlow loads.
from common.backend import import_keras_quietly
from common.outputs.files import exit_on_output_error
from common.run.config import load_or_exit, parse_config

DEMO = "keras"


def main(argv=None, on_progress=None):
    """Run the demo with command-line `argv`; returns the run summary (also in run.json).

    `on_progress(epochs_done)` is called between chunks of epochs (a hook for tests and
    notebooks; raising KeyboardInterrupt there stops the run like Ctrl-C).
    """
    config = parse_config(argv, DEMO)
    data = load_or_exit(config)  # 1. the data: scaled on the training rows only
    import_keras_quietly()  # TensorFlow only where it is the backend
    with exit_on_output_error():
        return train(config, data, on_progress)


def train(config, data, on_progress=None):
    import keras

    from common.outputs import EventWriter
    from common.outputs.history import can_show
    from common.outputs.pictures import new_window_figure
    from common.penalty import GroupSparse, ProximalOptimizer
    from common.run.skeleton import Run
    from common.shrink import prune_model
    from common.training import (IndexBatches, UnitHistory, build_model, fit_chunks, loss_name,
                                 steps_per_call)
    from common.training.batches import LOOP

    run = Run(DEMO, config, data, on_progress, unit="epoch")  # the seed, --strategy, the folder
    strategy, replicas = run.strategy, run.strategy.num_replicas_in_sync
    proximal = config.solver == "proximal"

    def build_network():
        """2. The network: ReLU hidden layers, and on every kernel the group sparse penalty
        as its kernel_regularizer, one group per row (a unit's outgoing weights). With
        --solver proximal the penalty is not in the loss: the optimizer applies it."""
        return build_model(data, config.hidden, [
            GroupSparse(group, l1=l1, l2=config.l2, proximal=proximal)
            for group, l1 in config.kernel_strengths()])

    # The batches by row index, the same rows per step on every backend; under a strategy
    # each replica gets its piece of every global batch.
    batches = IndexBatches(data.x_train, data.y_train, config.batch_size, config.seed, (LOOP,),
                           replicas)
    if batches.dropped_rows:
        print(f"note: Keras' fit needs batches that split evenly over {replicas} replicas, so "
              f"{batches.dropped_rows} rows per epoch are left out", file=sys.stderr)
    # One fit() epoch runs --eval-every data epochs in one graph call (steps_per_execution):
    # a fit() epoch per data epoch costs ~7 ms of Keras bookkeeping, 20 times a step.
    chunk, per_epoch = min(config.eval_every, config.epochs), batches.steps_per_epoch
    with strategy.scope():
        model = build_network()
        # 3. The optimizer: Adam, and with --solver proximal Adam's step on the data loss
        # followed by the penalty's proximal step, which sets whole rows to exactly zero.
        optimizer = keras.optimizers.Adam(config.lr)
        if proximal:
            optimizer = ProximalOptimizer(optimizer, freeze_zeros=config.freeze_zeros)
        # Every step's data loss, penalty and active units, also inside one graph call.
        history = UnitHistory(model, data.task, config.threshold, per_epoch,
                              capacity=chunk * per_epoch, evaluate_test=run.evaluate)
        history.set_model(model)  # fit sets it too; with --path fit never runs
    run.start(model, optimizer, build_network)
    events = EventWriter(run.run_dir, history, model, run.settings, run.changed, data.task,
                         run.split, DEMO, run.chief, run.total_epochs)

    def chunk_done(fit_epoch=None, logs=None):  # after a fit() epoch's evaluation
        if history.epoch_records:  # none when the very first epoch diverged
            epoch, loss, _, units = history.epoch_records[-1]
            run.chunk_done(epoch, loss, sum(units), *history.chunk_time)

    def diverged():  # the history met a loss that is not finite
        if history.diverged_at is not None:
            run.diverged(f"NaN or infinite in epoch {history.diverged_at}")
        return history.diverged_at is not None

    # 4. Training: compile with the data loss, then fit. fit adds the kernels' GroupSparse
    # penalties to it (with --solver proximal they add nothing: the optimizer applies them).
    callbacks = [history, keras.callbacks.LambdaCallback(on_epoch_end=chunk_done),
                 events.callback()]

    def train_epochs(epochs):  # False when the loss diverged
        for fit_epochs, size in fit_chunks(epochs, chunk):  # the last fit() epoch may be shorter
            steps = size * per_epoch
            model.compile(optimizer=optimizer, loss=loss_name(data.task),
                          metrics=[history.recorder], steps_per_execution=steps_per_call(
                              steps, replicas > 1 and keras.backend.backend() != "jax"))
            model.fit(batches, epochs=fit_epochs, steps_per_epoch=steps, shuffle=False,
                      verbose=0, callbacks=callbacks)
            batches.start += fit_epochs * steps  # the next fit() goes on with the next batch
            if model.stop_training:
                break
        return not diverged()

    def show(records):  # --path: steps the search trained, the model now at their end
        history.add_steps(records)
        history.on_epoch_end(None)  # the evaluation, at the point's end
        events.write_new_records()
        if not diverged():
            run.shown(records, len(history.epoch_records))

    # The picture's window, where there is a display: history.png's own figure.
    window = new_window_figure() if can_show(config.no_show) else None
    with run.stopping():  # Ctrl-C and SIGTERM stop training; the files are written whole
        # fit trains; with --path (--cv, --adaptive) the search trains instead and leaves
        # the chosen network in `model`.
        run.train(train_epochs, show, on_point=events.point)
        # 5. Pruning: the rows at zero go, and a smaller network predicts the same.
        pruned = (prune_model(model, config.threshold, data.feature_names)
                  if run.prunable() else None)
        # 6. The outputs: history.png and .csv, the path's, kernels.png, run.json, the models.
        records = history.records  # one consistent copy for every file below
        summary = run.finish(len(records["epoch"]) * per_epoch, pruned,
                             files=outputs(run, records, window),
                             extra={"history_png": str(run.run_dir / "history.png")},
                             final_loss=records["loss"][-1] if records["loss"] else None)
        events.close(summary)
    if window is not None:
        import matplotlib.pyplot as plt

        plt.show()
    return summary


def outputs(run, records, window=None):
    """(path, write) pairs, whatever the status (nothing done is lost): the history's picture
    (drawn in `window` if there is one) and numbers, the path's table and picture, the
    kernels as heatmaps."""
    from common.data import metric_name
    from common.outputs.history import write_history_csv
    from common.outputs.path_outputs import path_files
    from common.outputs.pictures import plot_history, plot_kernels

    config, data, model, folder = run.config, run.data, run.model, run.run_dir
    files = [(folder / "history.png", lambda file: plot_history(
                 records, run.history_title(), file, run.split, *run.path_marks(), window)),
             (folder / "history.csv", lambda file: write_history_csv(records, file, run.split))]
    files += path_files(run.chosen, folder, metric_name(data.task), config.dataset, data.task)
    if run.outcome.status != "diverged":  # the weights as heatmaps, removed rows marked
        files.append((folder / "kernels.png", lambda file: plot_kernels(
            model, data.feature_names, config.threshold, file, f"{data.name}: |W| at the end")))
    return files


if __name__ == "__main__":
    from common.run.lifecycle import run_as_script

    sys.exit(run_as_script(main))  # the run's exit code; a closed pipe loses nothing
