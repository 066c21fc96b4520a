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

import os
import sys
from pathlib import Path

# Only the light modules here: a bad flag or file is reported before TensorFlow loads.
from common.backend import import_keras_quietly
from common.run.config import load_or_exit, parse_config
from common.outputs.files import exit_on_output_error

DEMO = "keras"


def main(argv=None, on_progress=None):
    """Run the demo with command-line `argv`; returns the run summary (also in run.json).

    `on_progress(epochs_done)` is called between chunks of epochs (a hook for tests and
    notebooks; raising KeyboardInterrupt there stops the run like Ctrl-C).
    """
    config = parse_config(argv, DEMO)
    data = load_or_exit(config)
    import_keras_quietly()  # TensorFlow only where it is the backend
    with exit_on_output_error():
        return train(config, data, on_progress)


def train(config, data, on_progress=None):
    import keras

    from common.training.batches import LOOP
    from common.outputs.events import EventWriter
    from common.training.fitting import IndexBatches, fit_in_chunks
    from common.training.model import loss_name
    from common.training.monitor import UnitHistory
    from common.run.skeleton import Run

    # The seed, the strategy, the run folder, and the model: ReLU hidden layers, every kernel
    # carrying the GroupSparse penalty as its kernel_regularizer (common.run.skeleton). With --solver
    # proximal the penalty is not in the loss: the optimizer applies it exactly.
    run = Run(DEMO, config, data, on_progress, unit="epoch")
    model, strategy, replicas = run.model, run.strategy, run.strategy.num_replicas_in_sync
    # The batches by row index, the same rows per step on every backend (common.training.batches).
    # Under a strategy each replica gets its piece of every global batch; Keras' fit divides
    # each replica's loss, the penalty included, by the number of replicas.
    batches = IndexBatches(data.x_train, data.y_train, config.batch_size, config.seed, (LOOP,),
                           replicas)
    if batches.dropped_rows:
        print(f"note: Keras' fit needs batches that split evenly over {replicas} replicas, so "
              f"{batches.dropped_rows} rows per epoch are left out", file=sys.stderr)
    # One fit() epoch runs --eval-every data epochs in one graph call (steps_per_execution):
    # a fit() epoch per data epoch costs ~7 ms of Keras bookkeeping, 20 times a step. The
    # history still gets one record per data epoch, and an evaluation per fit() epoch.
    chunk, per_epoch = min(config.eval_every, config.epochs), batches.steps_per_epoch
    with strategy.scope():
        history = UnitHistory(model, data.task, config.threshold, per_epoch,
                              capacity=chunk * per_epoch, evaluate_test=run.evaluate)
        history.set_model(model)  # fit sets it too; with --path fit never runs
        # The loss is the data loss; fit adds the GroupSparse kernel regularizers' losses.
        compile_args = dict(optimizer=run.optimizer, loss=loss_name(data.task),
                            metrics=[history.recorder])
    events = EventWriter(run.run_dir, history, model, run.settings, run.changed, data.task,
                         run.split, DEMO, run.chief, config.epochs + run.path.total_epochs)

    def chunk_done(fit_epoch=None, logs=None):  # after a fit() epoch's evaluation
        if history.epoch_records:  # none when the very first epoch diverged
            epoch, loss, _, units = history.epoch_records[-1]
            run.chunk_done(epoch, loss, sum(units), *history.chunk_time)

    def diverged():  # the history met a loss that is not finite
        if history.diverged_at is not None:
            run.diverged(f"NaN or infinite in epoch {history.diverged_at}")
        return history.diverged_at is not None

    def train_epochs(epochs):  # False when the loss diverged
        fit_in_chunks(model, batches, epochs, chunk, compile_args,
                      one_step_per_call=replicas > 1 and keras.backend.backend() != "jax",
                      callbacks=[history, keras.callbacks.LambdaCallback(on_epoch_end=chunk_done),
                                 events.callback()])
        return not diverged()

    def show(records):  # --path: steps trained by common/search/engine.py, the model now at their end
        history.add_steps(records)
        history.on_epoch_end(None)  # the evaluation, at the point's end
        events.write_new_records()
        if not diverged():
            run.shown(records, len(history.epoch_records))

    with run.stopping():  # Ctrl-C and SIGTERM stop training; the files are written whole
        run.train(train_epochs, show, on_point=events.point)
        records = history.records  # one consistent copy for every file below
        summary = run.finish(len(records["epoch"]) * per_epoch,
                             files=outputs(run, records, compile_args["loss"]),
                             extra={"history_png": str(run.run_dir / "history.png")},
                             final_loss=records["loss"][-1] if records["loss"] else None)
        events.close(summary)
    show_if_possible(config)
    return summary


def outputs(run, records, loss):
    """The picture and the numbers behind it, whatever the status (nothing done is lost), the
    path's table and picture, the kernels as heatmaps, and --save-model's file."""
    from common.data.datasets import metric_name
    from common.outputs.path_outputs import path_files
    from common.outputs.pictures import plot_kernels

    config, data, model, status = run.config, run.data, run.model, run.outcome.status
    files = [(run.run_dir / "history.png", lambda file: history_picture(run, records, file)),
             (run.run_dir / "history.csv", lambda file: write_history_csv(records, file, run.split))]
    files += path_files(run.chosen, run.run_dir, metric_name(data.task), config.dataset, data.task)
    if status != "diverged":  # the weights as heatmaps, removed rows marked
        files.append((run.run_dir / "kernels.png", lambda file: plot_kernels(
            model, data.feature_names, config.threshold, file, f"{data.name}: |W| at the end")))
        if config.save_model and run.chief:
            # Compiled again without the recorder, a training aid rather than part of the model.
            with run.strategy.scope():
                model.compile(optimizer=run.optimizer, loss=loss)
            files.append((Path(config.save_model), model.save))
    return files


def write_history_csv(records, path, split="test"):
    """The numbers behind the picture: one row per epoch, the test (or validation) metrics
    where evaluated."""
    import csv

    from common.shrink.counting import unit_names

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


def history_picture(run, records, path):
    """history.png: the title says what was trained (a path: its points and the choice)."""
    from common.outputs.pictures import plot_history

    config, data = run.config, run.data
    shape = f"{data.num_features}-{'-'.join(map(str, config.hidden))}-{data.num_outputs}"
    selected = (run.chosen or {}).get("selected")
    if config.path:
        lambdas = {record["index"]: record["lambda"] for record in run.chosen.get("path", [])}
        points = [(index, lambdas.get(index, 0.0), end) for index, end in run.point_ends]
        what = f"lambda path of {len(points)} points"
        if selected is not None:
            what += f", chosen lambda {selected['lambda']:.3g} ({selected['rule']} rule)"
    else:
        points = []
        what = "group " + " ".join(f"{value:g}" for value in config.group_layers
                                   or [config.group_strength]) + ","
        what += " l1 " + " ".join(f"{value:g}" for value in config.l1_layers or [config.l1])
        what += f", l2 {config.l2:g}"
    plot_history(records, f"{data.name}: {shape}, {what}, lr {config.lr:g}, "
                 f"{run.outcome.status}", path, run.split, points,
                 None if selected is None else selected["index"], keep_open=can_show(config))


def can_show(config):
    """A window only on a display, and never with --no-show."""
    if config.no_show:
        return False
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def show_if_possible(config):
    if can_show(config):
        import matplotlib.pyplot as plt

        plt.show()


if __name__ == "__main__":
    from common.run.lifecycle import run_as_script

    sys.exit(run_as_script(main))  # the run's exit code; a closed pipe loses nothing
