"""Group sparse regularization with a custom TensorFlow training loop, watched in TensorBoard.

The original experiment of Scardapane et al. (2017): a 13-20-15-1 network on the Boston
housing data, with a group Lasso penalty on every unit's outgoing weights. Whole rows of
the kernels go to zero during training, and the number of active units (`neurons`) falls.

    python demo_tensorflow.py                      # the original run: 1500 full-batch steps
    python demo_tensorflow.py --solver proximal    # exact zeros (common/proximal.py)
    python demo_tensorflow.py --strategy mirrored  # every GPU of this machine
    python demo_tensorflow.py --help               # every flag (shared with demo_keras.py)
    tensorboard --logdir summaries                 # then open http://localhost:6006

Each run writes a new folder summaries/<UTC time>-tensorflow/ with the event files, a
run.json summary and pruned.keras, the network with the switched-off units removed.
"""

import math
import sys
import time

# Only the light modules here: a bad flag or file is reported before TensorFlow loads.
from common.config import import_tensorflow_quietly, parse_config, use_tensorflow_backend
from common.data import load_or_exit
from common.files import exit_on_output_error

DEMO = "tensorflow"


def main(argv=None, on_progress=None):
    """Run the demo with command-line `argv`; returns the run summary (also in run.json).

    `on_progress(steps_done)` is called between chunks of training steps (a hook for tests
    and notebooks; raising KeyboardInterrupt there stops the run like Ctrl-C). Bad input
    exits with code 2 and one sentence; the exit code of a run is its status's
    (common.lifecycle.EXIT_CODES).
    """
    use_tensorflow_backend()  # TensorFlow by design, whatever KERAS_BACKEND says
    config = parse_config(argv, DEMO)
    data = load_or_exit(config)
    with exit_on_output_error():
        return train(config, data, on_progress)


def train(config, data, on_progress=None):
    if config.strategy == "multiworker":  # before TensorFlow, whose own wait is endless
        from common.distribute import meet_workers_or_exit

        meet_workers_or_exit(config.connect_timeout)
    import_tensorflow_quietly()
    import keras
    import tensorflow as tf

    from common.batches import training_batches
    from common.counting import active_counts, count_active_units, unit_kernels, unit_names
    from common.distribute import is_chief, make_strategy
    from common.files import is_disk_full_message, new_run_dir, unless_disk_full
    from common.lifecycle import raise_if_stopped, stop_on_signals, stop_status
    from common.model import (build_model, evaluate, is_proximal, make_optimizer,
                              make_regularizer, metric_name, row_losses)
    from common.path_outputs import write_point_summaries
    from common.penalties import penalty_value
    from common.report import ProgressBar, print_config
    from common.stages import PathRun
    from common.summary import Outcome, finish_run, finite_or_none
    from common.tensorboard import (RecordWriter, describe, pictures_due, write_final_metrics,
                                    write_kernel_pictures, write_run_start, write_step_scalars)

    wall_started = time.perf_counter()
    strategy = make_strategy(config.strategy)  # first: a multi-worker set-up precedes other ops
    chief = is_chief(strategy)  # only the chief writes summaries and files
    keras.utils.set_random_seed(config.seed)
    run_dir = new_run_dir(config.logdir, DEMO, chief)
    print_config(config, DEMO)

    # The model: ReLU hidden layers, every kernel carrying the GroupSparse penalty. With
    # --solver proximal the penalty is not in the loss: the optimizer applies it exactly.
    with strategy.scope():
        regularizer = make_regularizer(config)
        model = build_model(data, config.hidden, regularizer)
        optimizer = make_optimizer(config, regularizer)
        optimizer.build(model.trainable_variables)  # its variables, before the graph is traced
    proximal = is_proximal(regularizer)
    kernels = unit_kernels(model)
    names = unit_names(len(kernels))
    units_before = count_active_units(model, config.threshold)

    # Each replica gets its piece of every global batch, and the global batch's row count.
    batches = training_batches(strategy, data.x_train, data.y_train, config.batch_size,
                               config.seed)
    batch_iterator = iter(batches.dataset)
    total_steps = config.epochs * batches.steps_per_epoch
    writer = (tf.summary.create_file_writer(str(run_dir)) if chief
              else tf.summary.create_noop_writer())
    write_run_start(writer, config, run_dir.name, data.task, len(kernels))

    engine = {"steps": 0}  # the path's steps, which common/engine.py trains (--path)

    def steps_done():
        return int(optimizer.iterations.numpy()) + engine["steps"]

    def replica_step(x, y, global_rows):
        """One step on this replica's rows; the optimizer sums the replicas' gradients."""
        if proximal:  # the optimizer's proximal step applies it: its value is only logged
            penalty = penalty_value(model)
        with tf.GradientTape() as tape:
            predictions = model(x, training=True)
            # This replica's share of the global batch's mean data loss.
            loss = tf.nn.compute_average_loss(row_losses(data.task, y, predictions),
                                              global_batch_size=global_rows)
            objective = loss
            if not proximal:  # the regularizers' losses, as in Keras' fit()
                penalty = tf.add_n(model.losses) if model.losses else tf.constant(0.0)
                objective = loss + tf.nn.scale_regularization_loss(penalty)
        gradients = tape.gradient(objective, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss, penalty

    @tf.function
    def train_steps(num_steps, pictures):
        """`num_steps` optimizer steps in one graph call; every step writes its scalars, the
        call's end the pictures when `pictures` (common.tensorboard.pictures_due)."""
        loss, penalty = tf.constant(0.0), tf.constant(0.0)
        counts = tf.zeros([len(kernels)], tf.int32)
        for _ in tf.range(num_steps):
            losses, penalties = strategy.run(replica_step, args=next(batch_iterator))
            loss = strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)
            penalty = strategy.reduce(tf.distribute.ReduceOp.MEAN, penalties, axis=None)
            counts = active_counts(kernels, config.threshold)
            # name_scope(None): tags read "neurons", not "while/neurons" (the loop's scope).
            with writer.as_default(step=optimizer.iterations), tf.compat.v1.name_scope(None):
                write_step_scalars(loss, penalty, counts, names, config.threshold)
            if not tf.math.is_finite(loss + penalty):
                break
        if pictures:  # name_scope(None): "kernels/inputs", not "cond/kernels/inputs"
            with writer.as_default(step=optimizer.iterations), tf.compat.v1.name_scope(None):
                write_kernel_pictures(kernels, names)
        return loss, penalty, counts

    # Train in chunks of eval_every steps: one graph call each, then an evaluation (on the
    # validation split with --path: the test split waits until the network is chosen).
    # Ctrl-C and SIGTERM stop it between two steps; everything done so far is written.
    split = "val" if config.path else "test"
    outcome = Outcome("completed", 0, units_before, wall_started)
    timing = {"seconds": 0.0, "steps": 0}

    def diverged(loss, penalty):
        """Whether the last step's loss is not finite; if so the run's status says so."""
        outcome.final_loss = finite_or_none(loss)
        if math.isfinite(loss) and math.isfinite(penalty):
            return False
        outcome.status = "diverged"
        outcome.message = (f"the loss became {loss + penalty} at step {steps_done()}: "
                           "training stopped (try a smaller --lr)")
        print(f"\n{outcome.message}", file=sys.stderr)
        return True

    def train_for(num_steps):
        """Train `num_steps` more steps; False when the loss stopped being finite."""
        end = steps_done() + num_steps
        while steps_done() < end:
            done = steps_done()
            started = time.perf_counter()
            size = min(config.eval_every, end - done)
            pictures = not config.no_pictures and pictures_due(done, done + size, total)
            loss, penalty, counts = train_steps(tf.constant(size), tf.constant(pictures))
            loss, penalty = float(loss), float(penalty)  # waits for the graph call to end
            if done > 0:  # the first call also traces the graph: keep it out of the timing
                timing["seconds"] += time.perf_counter() - started
                timing["steps"] += steps_done() - done
            if diverged(loss, penalty):
                return False
            with writer.as_default(step=steps_done()):
                for name, value in evaluate(model, data, split=split).items():
                    tf.summary.scalar(f"{split}/{name}", value,
                                      description=describe(config.threshold)[split])
            progress.update(steps_done(), loss=f"{loss:.4f}", units=int(sum(counts.numpy())))
            if on_progress is not None:
                on_progress(steps_done())
            raise_if_stopped()  # a signal whose exception was swallowed still ends the run
        return True

    def retrace():  # --adaptive, --layer-scaling: the penalty's numbers are graph constants
        nonlocal train_steps
        train_steps = tf.function(train_steps.python_function)

    path_records = RecordWriter(writer, names, config.threshold, described=True)

    def show(records):
        """A path point's steps, trained by common/engine.py: their scalars at every
        eval_every-th step (TensorBoard keeps 1000 values a chart; a path has ~100,000)."""
        first = steps_done()
        engine["steps"] += len(records)
        path_records.write([(first + step, loss, penalty, units) for step, (loss, penalty,
                            *units) in enumerate(records.tolist(), start=1)
                            if step % config.eval_every == 0 or step == len(records)])
        if diverged(*(float(value) for value in records[-1][:2])):
            return
        if not config.no_pictures and pictures_due(first, steps_done(), total):
            with writer.as_default(step=steps_done()):
                write_kernel_pictures(kernels, names)
        progress.update(steps_done(), loss=f"{records[-1][0]:.4f}", units=int(sum(records[-1][2:])))
        if on_progress is not None:
            on_progress(steps_done())
        raise_if_stopped()

    path = PathRun(config, data, model, optimizer)  # --path: lambda 0 until the path starts
    total = total_steps + path.total_epochs * batches.steps_per_epoch
    progress = ProgressBar(total)
    with stop_on_signals() as shield:
        try:
            path.train(lambda epochs: train_for(epochs * batches.steps_per_epoch), show,
                       on_point=lambda point: write_point_summaries(
                           run_dir, writer, point, metric_name(data.task), steps_done()),
                       on_penalty_change=retrace, on_chunk=raise_if_stopped)
        except KeyboardInterrupt as stop:
            outcome.status = stop_status(stop)
            print(f"\n{outcome.status}: keeping what was done so far", file=sys.stderr)
        except tf.errors.OpError as error:
            if not is_disk_full_message(error):
                raise
            outcome.status = "failed"  # finish_run says so, in one sentence with the rest
            outcome.message = (f"the disk is full: the summaries stop at step {steps_done()} and "
                               "training stopped")
        shield()  # from here on, signals wait until the files are written
        progress.close()
        outcome.steps = steps_done()
        outcome.ms_per_step = (1000.0 * timing["seconds"] / timing["steps"] if timing["steps"]
                               else None)
        with unless_disk_full():
            writer.flush()
        summary = finish_run(DEMO, config, data, model, run_dir, outcome,
                             extra={"num_replicas": strategy.num_replicas_in_sync,
                                    **path.finish()},
                             footer=[("view it with", f"tensorboard --logdir {config.logdir}")],
                             chief=chief)
        with unless_disk_full():
            write_final_metrics(writer, summary, steps_done())
            writer.close()
    return summary


if __name__ == "__main__":
    from common.lifecycle import exit_code

    sys.exit(exit_code(main()))
