"""Group sparse regularization with Keras' model.fit, shown as a Matplotlib picture.

The original experiment of Scardapane et al. (2017) as the Keras demo had it: a
13-20-15-1 network on the Boston housing data, `GroupSparse` as the kernel_regularizer of
every Dense layer, and a picture of the active units falling during training.

    python demo_keras.py                    # the original run: 2500 full-batch epochs
    python demo_keras.py --no-show          # save the picture without opening a window
    python demo_keras.py --preset compact   # the smallest networks of the benchmark
    python demo_keras.py --help             # every flag (shared with demo_tensorflow.py)

Each run writes a new folder summaries/<UTC time>-keras/ with history.png (and its numbers,
history.csv), a run.json summary and pruned.keras, the network with the switched-off units
removed.
"""

import os
import sys
import time

# Only the light modules here: a bad flag or file is reported before TensorFlow loads.
from common.config import import_tensorflow_quietly, parse_config
from common.data import load_or_exit

DEMO = "keras"


def main(argv=None, on_progress=None):
    """Run the demo with command-line `argv`; returns the run summary (also in run.json).

    `on_progress(epochs_done)` is called between chunks of epochs (a hook for tests and
    notebooks; raising KeyboardInterrupt there stops the run like Ctrl-C).
    """
    config = parse_config(argv, DEMO)
    data = load_or_exit(config)
    return train(config, data, on_progress)


def train(config, data, on_progress=None):
    import_tensorflow_quietly()
    import keras

    from common.counting import count_active_units
    from common.distribute import is_chief, make_strategy, replica_batches
    from common.model import (batch_rows, build_model, evaluate, loss_name, make_optimizer,
                              make_regularizer, training_batches)
    from common.monitor import UnitHistory
    from common.report import ProgressBar, finish_run, new_run_dir, print_config

    wall_started = time.perf_counter()
    strategy = make_strategy(config.strategy)  # first: multi-worker set-up precedes other ops
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

    # One fit() epoch runs `chunk` data epochs inside one graph call (steps_per_execution):
    # a fit() epoch per data epoch costs ~7 ms of Keras bookkeeping, 20 times a step.
    # StepRecorder still writes one row per step, so the history has a point per epoch.
    # Under a strategy each replica gets its piece of every global batch; Keras' fit divides
    # each replica's loss, the penalty included, by the number of replicas. Keras 3's fit
    # under a strategy needs equal pieces and one step per graph call (keras-team/keras#19246).
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        batches, steps_per_epoch = training_batches(data, config.batch_size, config.seed)
    else:
        batches, steps_per_epoch = replica_batches(strategy, data, config.batch_size,
                                                   config.seed, even=True)
        rows = len(data.x_train)
        batch = batch_rows(rows, config.batch_size)
        if batch % replicas or rows % batch % replicas:
            print(f"note: Keras' fit needs batches that split evenly over {replicas} "
                  f"replicas, so up to {replicas - 1} rows of a batch are left out",
                  file=sys.stderr)
    chunk = max(size for size in range(1, config.eval_every + 1) if config.epochs % size == 0)
    steps_per_execution = chunk * steps_per_epoch if replicas == 1 else 1
    with strategy.scope():
        history = UnitHistory(model, data.task, config.threshold, steps_per_epoch,
                              capacity=chunk * steps_per_epoch,
                              evaluate_test=lambda trained: evaluate(trained, data))
        model.compile(optimizer=make_optimizer(config, regularizer), loss=loss_name(data.task),
                      metrics=[history.recorder], steps_per_execution=steps_per_execution)

    progress = ProgressBar(config.epochs)
    timing = {"seconds": 0.0, "steps": 0}

    def after_chunk(fit_epoch, logs):
        records = history.records
        if fit_epoch > 0:  # the first chunk also traces the graph: keep it out of the timing
            timing["seconds"] += time.perf_counter() - timing["started"]
            timing["steps"] += chunk * steps_per_epoch
        if records["epoch"]:
            progress.update(records["epoch"][-1], loss=f"{records['loss'][-1]:.4f}",
                            units=sum(records["units"][-1]))
        if on_progress is not None:
            on_progress(len(records["epoch"]))

    def before_chunk(fit_epoch, logs):
        timing["started"] = time.perf_counter()

    status = "completed"
    try:
        model.fit(batches, epochs=config.epochs // chunk, steps_per_epoch=chunk * steps_per_epoch,
                  shuffle=False, verbose=0,
                  callbacks=[history, keras.callbacks.LambdaCallback(
                      on_epoch_begin=before_chunk, on_epoch_end=after_chunk)])
    except KeyboardInterrupt:
        status = "interrupted"
        print("\ninterrupted: keeping what was done so far", file=sys.stderr)
    finally:
        progress.close()
    if history.diverged_at is not None:
        status = "diverged"
        print(f"the loss became NaN or infinite in epoch {history.diverged_at}: training "
              "stopped (try a smaller --lr)", file=sys.stderr)

    # The picture and the record: saved whatever the status, so nothing done is lost.
    picture = run_dir / "history.png"
    plot_history(history.records, data, config, picture, status)
    write_history_csv(history.records, run_dir / "history.csv")
    ms_per_step = 1000.0 * timing["seconds"] / timing["steps"] if timing["steps"] else None
    final_loss = history.records["loss"][-1] if history.records["loss"] else None
    summary = finish_run(DEMO, config, data, model, run_dir, status, units_before,
                         len(history.records["epoch"]) * steps_per_epoch, ms_per_step,
                         wall_started, extra={"history_png": str(picture),
                                              "final_loss": final_loss,
                                              "num_replicas": replicas},
                         footer=[("picture", str(picture))], chief=chief)
    if config.save_model and chief:
        # Compiled again without the recorder, which is a training aid, not part of the model.
        with strategy.scope():
            model.compile(optimizer=model.optimizer, loss=loss_name(data.task))
        model.save(config.save_model)
        print(f"  trained model saved to {config.save_model}")
    show_if_possible(picture, config)
    return summary


def write_history_csv(records, path):
    """The numbers behind the picture: one row per epoch, the test metrics where evaluated."""
    import csv

    num_layers = len(records["units"][0]) if records["units"] else 0
    layers = ["inputs"] + [f"hidden_{index}" for index in range(1, num_layers)]
    test = dict(zip(records["test_epoch"], records["test"]))
    test_names = sorted({name for metrics in records["test"] for name in metrics})
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["epoch", "loss", "penalty", *layers, "neurons",
                         *[f"test_{name}" for name in test_names]])
        for epoch, loss, penalty, units in zip(records["epoch"], records["loss"],
                                               records["penalty"], records["units"]):
            tested = test.get(epoch, {})
            writer.writerow([epoch, f"{loss:.6g}", f"{penalty:.6g}", *units, sum(units),
                             *[f"{tested[name]:.6g}" if name in tested else ""
                               for name in test_names]])


def plot_history(records, data, config, path, status):
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
                   label="test", marker=".", linestyle="none")
    loss_axis.set_yscale("log")
    loss_axis.set_ylabel("data loss (no penalty)")
    loss_axis.legend()
    penalty_axis.plot(epochs, records["penalty"], color="tab:red")
    penalty_axis.set_ylabel("penalty")
    units = list(zip(*records["units"])) if records["units"] else []
    names = ["inputs"] + [f"hidden_{index}" for index in range(1, len(units))]
    for name, counts in zip(names, units):
        units_axis.plot(epochs, counts, label=name)
    if units:  # none when the very first epoch diverged
        units_axis.plot(epochs, [sum(row) for row in records["units"]], color="black",
                        label="total (neurons)")
        units_axis.legend(loc="upper right")
    units_axis.set_ylabel("active units")
    units_axis.set_xlabel("epoch")
    hidden = "-".join(map(str, config.hidden))
    figure.suptitle(f"{data.name}: {data.num_features}-{hidden}-{data.num_outputs}, "
                    f"group {config.group:g}, l1 {config.l1:g}, l2 {config.l2:g}, "
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
    main()
