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
import time
from pathlib import Path

# Only the light modules here: a bad flag or file is reported before TensorFlow loads.
from common.config import import_tensorflow_quietly, parse_config
from common.data import load_or_exit
from common.files import exit_on_output_error

DEMO = "keras"


def main(argv=None, on_progress=None):
    """Run the demo with command-line `argv`; returns the run summary (also in run.json).

    `on_progress(epochs_done)` is called between chunks of epochs (a hook for tests and
    notebooks; raising KeyboardInterrupt there stops the run like Ctrl-C).
    """
    config = parse_config(argv, DEMO)
    data = load_or_exit(config)
    with exit_on_output_error():
        return train(config, data, on_progress)


def train(config, data, on_progress=None):
    import_tensorflow_quietly()
    import keras

    from common.batches import training_batches
    from common.counting import count_active_units
    from common.distribute import is_chief, make_strategy
    from common.files import is_disk_full_message, new_run_dir, unless_disk_full
    from common.fitting import fit_in_chunks
    from common.lifecycle import raise_if_stopped, stop_on_signals, stop_status
    from common.model import (build_model, evaluate, loss_name, make_optimizer,
                              make_regularizer, metric_name)
    from common.monitor import UnitHistory
    from common.path_outputs import path_files
    from common.pictures import plot_kernels
    from common.report import ProgressBar, print_config
    from common.stages import PathRun
    from common.summary import Outcome, finish_run
    from common.tensorboard import EventWriter

    wall_started = time.perf_counter()
    strategy = make_strategy(config.strategy)
    chief = is_chief(strategy)  # only the chief writes the picture and files
    keras.utils.set_random_seed(config.seed)
    run_dir = new_run_dir(config.logdir, DEMO, chief)
    print_config(config, DEMO)

    # The model: ReLU hidden layers, every kernel carrying the GroupSparse penalty. With
    # --solver proximal the penalty is not in the loss: the optimizer applies it exactly.
    with strategy.scope():
        regularizer = make_regularizer(config)
        model = build_model(data, config.hidden, regularizer)
    units_before = count_active_units(model, config.threshold)

    # One fit() epoch runs up to eval_every data epochs inside one graph call
    # (steps_per_execution): a fit() epoch per data epoch costs ~7 ms of Keras bookkeeping,
    # 20 times a step. StepRecorder still writes one row per step, so the history has a
    # point per epoch. Under a strategy each replica gets its piece of every global batch;
    # Keras' fit divides each replica's loss, the penalty included, by the number of replicas.
    replicas = strategy.num_replicas_in_sync
    on_jax = keras.backend.backend() == "jax"  # --strategy mirrored: Keras' DataParallel
    batches = training_batches(strategy, data.x_train, data.y_train, config.batch_size,
                               config.seed, with_rows=False, even=replicas > 1)
    if batches.dropped_rows:
        print(f"note: Keras' fit needs batches that split evenly over {replicas} replicas, so "
              f"{batches.dropped_rows} rows per epoch are left out", file=sys.stderr)
    # Evaluated after each chunk: the validation split with --path (the test split waits
    # until the network is chosen), else the test split.
    chunk, split = min(config.eval_every, config.epochs), "val" if config.path else "test"
    with strategy.scope():
        history = UnitHistory(model, data.task, config.threshold, batches.steps_per_epoch,
                              capacity=chunk * batches.steps_per_epoch,
                              evaluate_test=lambda trained: evaluate(trained, data, split=split))
        compile_args = dict(optimizer=make_optimizer(config, regularizer),
                            loss=loss_name(data.task), metrics=[history.recorder])

    path = PathRun(config, data, model, compile_args["optimizer"])  # --path: lambda 0 first
    # The same tags as the TF demo's, per epoch, so one TensorBoard shows both demos.
    total_epochs = config.epochs + path.total_epochs
    events = EventWriter(run_dir, history, model, config, data.task, split, chief, total_epochs)
    progress = ProgressBar(total_epochs)
    timing = {"seconds": 0.0, "steps": 0}

    def before_chunk(fit_epoch, logs):
        timing["started"], timing["epochs"] = time.perf_counter(), len(history.epoch_records)

    def end_timing(fit_epoch, logs):  # the steps only, before the evaluation (as the TF demo)
        if fit_epoch > 0:  # the first chunk of a fit() call also traces: keep it out
            timing["seconds"] += time.perf_counter() - timing["started"]
            timing["steps"] += ((len(history.epoch_records) - timing["epochs"])
                                * batches.steps_per_epoch)

    def after_chunk(fit_epoch, logs):
        records = history.epoch_records
        if records:
            progress.update(records[-1][0], loss=f"{records[-1][1]:.4f}", units=sum(records[-1][3]))
        if on_progress is not None:
            on_progress(len(records))
        raise_if_stopped()  # a signal whose exception was swallowed still ends the run

    def train_epochs(epochs):
        """Train `epochs` more epochs; False when the loss stopped being finite."""
        fit_in_chunks(model, batches.dataset, epochs, batches.steps_per_epoch, chunk,
                      compile_args, one_step_per_call=replicas > 1 and not on_jax,
                      callbacks=[keras.callbacks.LambdaCallback(
                          on_epoch_begin=before_chunk, on_epoch_end=end_timing), history,
                          keras.callbacks.LambdaCallback(on_epoch_end=after_chunk),
                          events.callback()])
        return history.diverged_at is None

    def show(records):
        """A path point's steps, trained by common/engine.py: into the history and events."""
        history.add_steps(records)
        if history.diverged_at is None:
            history.on_epoch_end(None)  # the evaluation, at the point's end
        events.write_new_records()
        after_chunk(None, None)

    outcome = Outcome("completed", 0, units_before, wall_started)
    with stop_on_signals() as shield:
        try:
            # The epochs, then --adaptive's stage and --path (with --cv, its other folds).
            path.train(train_epochs, show, on_chunk=raise_if_stopped)
        except KeyboardInterrupt as stop:
            outcome.status = stop_status(stop)
            print(f"\n{outcome.status}: keeping what was done so far", file=sys.stderr)
        except Exception as error:  # TensorFlow's summary writer on a full disk
            if not is_disk_full_message(error):
                raise
            outcome.status = "failed"  # finish_run says so, in one sentence with the rest
            outcome.message = (f"the disk is full: the summaries stop at epoch "
                               f"{len(history.epoch_records)} and training stopped")
        shield()  # from here on, signals wait until the files are written
        progress.close()
        records = history.records  # one consistent copy for every file below
        outcome.steps = len(records["epoch"]) * batches.steps_per_epoch
        outcome.final_loss = records["loss"][-1] if records["loss"] else None
        if history.diverged_at is not None:
            outcome.status, outcome.final_loss = "diverged", None
            outcome.message = (f"the loss became NaN or infinite in epoch {history.diverged_at}:"
                               " training stopped (try a smaller --lr)")
            print(outcome.message, file=sys.stderr)
        if timing["steps"]:
            outcome.ms_per_step = 1000.0 * timing["seconds"] / timing["steps"]

        # The picture and the numbers behind it, whatever the status: nothing done is lost.
        picture, chosen = run_dir / "history.png", path.finish()  # the path's pick, if any
        files = [(picture, lambda file: plot_history(records, data, config, file,
                                                     outcome.status, split)),
                 (run_dir / "history.csv", lambda file: write_history_csv(records, file, split))]
        files += path_files(chosen, run_dir, metric_name(data.task), config)
        if history.diverged_at is None:  # the weights as heatmaps, removed rows marked
            files.append((run_dir / "kernels.png", lambda file: plot_kernels(
                model, data.feature_names, config.threshold, file, f"{data.name}: |W| at the end")))
        if config.save_model and chief and history.diverged_at is None:
            # Compiled again without the recorder, a training aid rather than part of the model.
            with strategy.scope():
                model.compile(optimizer=model.optimizer, loss=loss_name(data.task))
            files.append((Path(config.save_model), model.save))
        summary = finish_run(DEMO, config, data, model, run_dir, outcome, files=files,
                             extra={"history_png": str(picture), "num_replicas": replicas,
                                    **chosen},
                             footer=[("picture", str(picture)),
                                     ("view it with", f"tensorboard --logdir {config.logdir}")],
                             chief=chief)
        with unless_disk_full():
            events.write_new_records()  # what the last chunk left, e.g. after Ctrl-C
            events.close(summary)
    show_if_possible(picture, config)
    return summary


def write_history_csv(records, path, split="test"):
    """The numbers behind the picture: one row per epoch, the test (or validation) metrics
    where evaluated."""
    import csv

    from common.counting import unit_names

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


def plot_history(records, data, config, path, status, split="test"):
    """Data loss, penalty and active units against the epoch, in one PNG."""
    import matplotlib

    if not can_show(config):
        matplotlib.use("Agg")  # no window: render to the file only
    import matplotlib.pyplot as plt

    figure, (loss_axis, penalty_axis, units_axis) = plt.subplots(
        3, 1, sharex=True, figsize=(8, 9), constrained_layout=True)
    epochs = records["epoch"]
    loss_axis.plot(epochs, records["loss"], label="train")
    loss_axis.plot(records["test_epoch"], [test["loss"] for test in records["test"]],
                   label=split, marker=".", linestyle="none")
    loss_axis.set_yscale("log")
    loss_axis.set_ylabel("data loss (no penalty)")
    loss_axis.legend()
    penalty_axis.plot(epochs, records["penalty"], color="tab:red")
    penalty_axis.set_ylabel("penalty")
    from common.counting import unit_names

    units = list(zip(*records["units"])) if records["units"] else []
    for name, counts in zip(unit_names(len(units)), units):
        units_axis.plot(epochs, counts, label=name)
    if units:  # none when the very first epoch diverged
        units_axis.plot(epochs, [sum(row) for row in records["units"]], color="black",
                        label="total (neurons)")
        units_axis.legend(loc="upper right")
    units_axis.set_ylabel("active units")
    units_axis.set_xlabel("epoch")
    hidden = "-".join(map(str, config.hidden))
    group = " ".join(f"{value:g}" for value in config.group_layers or [config.group_strength])
    l1 = " ".join(f"{value:g}" for value in config.l1_layers or [config.l1])
    figure.suptitle(f"{data.name}: {data.num_features}-{hidden}-{data.num_outputs}, "
                    f"group {group}, l1 {l1}, l2 {config.l2:g}, "
                    f"lr {config.lr:g}, {status}")
    figure.savefig(path, dpi=100)
    if not can_show(config):
        plt.close(figure)


def can_show(config):
    """A window only on a display, and never with --no-show."""
    if config.no_show:
        return False
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def show_if_possible(picture, config):
    if can_show(config):
        import matplotlib.pyplot as plt

        plt.show()


if __name__ == "__main__":
    from common.lifecycle import exit_code

    sys.exit(exit_code(main()))
