"""Group sparse regularization with a custom TensorFlow training loop, watched in TensorBoard.

The original experiment of Scardapane et al. (2017): a 13-20-15-1 network on the Boston
housing data, with a group Lasso penalty on every unit's outgoing weights. Whole rows of
the kernels go to zero during training, and the number of active units (`neurons`) falls.

    python demo_tensorflow.py                 # the original run: 1500 full-batch steps
    python demo_tensorflow.py --help          # every flag (shared with demo_keras.py)
    tensorboard --logdir summaries            # then open http://localhost:6006

Each run writes a new folder summaries/<UTC time>-tensorflow/ with the event files, a
run.json summary and pruned.keras, the network with the switched-off units removed.
"""

import math
import sys
import time

# Only the light modules here: a bad flag or file is reported before TensorFlow loads.
from common.config import import_tensorflow_quietly, parse_config
from common.data import load_or_exit

DEMO = "tensorflow"


def main(argv=None, on_progress=None):
    """Run the demo with command-line `argv`; returns the run summary (also in run.json).

    `on_progress(steps_done)` is called between chunks of training steps (a hook for tests
    and notebooks; raising KeyboardInterrupt there stops the run like Ctrl-C).
    """
    config = parse_config(argv, DEMO)
    data = load_or_exit(config)
    return train(config, data, on_progress)


def train(config, data, on_progress=None):
    import_tensorflow_quietly()
    import keras
    import tensorflow as tf

    from common.counting import active_counts, count_active_units, unit_kernels
    from common.model import build_model, data_loss, evaluate, make_regularizer, training_batches
    from common.report import ProgressBar, finish_run, new_run_dir, print_config

    wall_started = time.perf_counter()
    keras.utils.set_random_seed(config.seed)
    run_dir = new_run_dir(config.logdir, DEMO)
    print_config(config, DEMO)

    # The model: ReLU hidden layers, every kernel carrying the GroupSparse penalty.
    model = build_model(data, config.hidden, make_regularizer(config))
    optimizer = keras.optimizers.Adam(config.lr)
    kernels = unit_kernels(model)
    unit_names = ["inputs"] + [f"hidden_{index}" for index in range(1, len(kernels))]
    units_before = count_active_units(model, config.threshold)

    batches, steps_per_epoch = training_batches(data, config.batch_size, config.seed)
    batch_iterator = iter(batches)
    total_steps = config.epochs * steps_per_epoch
    writer = tf.summary.create_file_writer(str(run_dir))
    write_config(writer, config)

    @tf.function
    def train_steps(num_steps):
        """`num_steps` optimizer steps in one graph call; every step writes its scalars."""
        loss, penalty = tf.constant(0.0), tf.constant(0.0)
        counts = tf.zeros([len(kernels)], tf.int32)
        for _ in tf.range(num_steps):
            x, y = next(batch_iterator)
            with tf.GradientTape() as tape:
                predictions = model(x, training=True)
                loss = data_loss(data.task, y, predictions)
                # The penalty enters the loss as the regularizers' losses, as in Keras' fit().
                penalty = tf.add_n(model.losses) if model.losses else tf.constant(0.0)
                objective = loss + penalty
            gradients = tape.gradient(objective, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            counts = active_counts(kernels, config.threshold)
            # name_scope(None): tags read "neurons", not "while/neurons" (the loop's scope).
            with writer.as_default(step=optimizer.iterations), tf.compat.v1.name_scope(None):
                tf.summary.scalar("loss", loss)
                tf.summary.scalar("reg_loss", penalty)
                tf.summary.scalar("neurons", tf.reduce_sum(counts))
                for index, name in enumerate(unit_names):
                    tf.summary.scalar(f"units/{name}", counts[index])
            if not tf.math.is_finite(objective):
                break
        return loss, penalty, counts

    # Train in chunks of eval_every steps: one graph call each, then a test evaluation.
    status, train_seconds, timed_steps = "completed", 0.0, 0
    progress = ProgressBar(total_steps)
    try:
        while int(optimizer.iterations) < total_steps:
            done = int(optimizer.iterations)
            chunk = min(config.eval_every, total_steps - done)
            started = time.perf_counter()
            loss, penalty, counts = train_steps(tf.constant(chunk))
            loss, penalty = float(loss), float(penalty)  # waits for the graph call to end
            if done > 0:  # the first call also traces the graph: keep it out of the timing
                train_seconds += time.perf_counter() - started
                timed_steps += int(optimizer.iterations) - done
            if not (math.isfinite(loss) and math.isfinite(penalty)):
                status = "diverged"
                print(f"\nthe loss became {loss + penalty} at step {int(optimizer.iterations)}: "
                      "training stopped (try a smaller --lr)", file=sys.stderr)
                break
            test = evaluate(model, data)
            with writer.as_default(step=int(optimizer.iterations)):
                for name, value in test.items():
                    tf.summary.scalar(f"test/{name}", value)
            progress.update(int(optimizer.iterations), loss=f"{loss:.4f}",
                            units=int(sum(counts.numpy())))
            if on_progress is not None:
                on_progress(int(optimizer.iterations))
    except KeyboardInterrupt:
        status = "interrupted"
        print("\ninterrupted: keeping what was done so far", file=sys.stderr)
    finally:
        progress.close()
        writer.flush()

    ms_per_step = 1000.0 * train_seconds / timed_steps if timed_steps else None
    summary = finish_run(DEMO, config, data, model, run_dir, status, units_before,
                         int(optimizer.iterations), ms_per_step, wall_started,
                         footer=[("view it with", f"tensorboard --logdir {config.logdir}")])
    writer.close()
    return summary


def write_config(writer, config):
    """The run's settings, once: as a text table and as TensorBoard hyperparameters."""
    import dataclasses

    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hparams

    settings = dataclasses.asdict(config)
    rows = "\n".join(f"| {key} | {value} |" for key, value in settings.items())
    with writer.as_default(step=0):
        tf.summary.text("config", "| setting | value |\n|---|---|\n" + rows)
        hparams.hparams({key: value if isinstance(value, (bool, int, float, str)) else str(value)
                         for key, value in settings.items()})


if __name__ == "__main__":
    main()
