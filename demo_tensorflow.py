"""Group sparse regularization with a custom TensorFlow training loop, watched in TensorBoard.

The original experiment of Scardapane et al. (2017): a 13-20-15-1 network on the Boston
housing data, with a group Lasso penalty on every unit's outgoing weights. Whole rows of
the kernels go to zero during training, and the number of active units (`neurons`) falls.

    python demo_tensorflow.py                      # the original run: 1500 full-batch steps
    python demo_tensorflow.py --solver proximal    # exact zeros (common/penalty/proximal.py)
    python demo_tensorflow.py --strategy mirrored  # every GPU of this machine
    python demo_tensorflow.py --help               # every flag (shared with demo_keras.py)
    tensorboard --logdir summaries                 # then open http://localhost:6006

Each run writes a new folder summaries/<UTC time>-tensorflow/ with the event files, a
run.json summary and pruned.keras, the network with the switched-off units removed.
"""

import sys

# Only the light modules here: a bad flag or file is reported before TensorFlow loads.
from common.backend import import_tensorflow_quietly, use_tensorflow_backend
from common.outputs.files import exit_on_output_error
from common.run.config import load_or_exit, parse_config
from common.run.rendezvous import meet_workers_or_exit

DEMO = "tensorflow"


def main(argv=None, on_progress=None, per_step_records=True):
    """Run the demo with command-line `argv`; returns the run summary (also in run.json).

    `on_progress(steps_done)` is called between chunks of training steps (a hook for tests
    and notebooks; raising KeyboardInterrupt there stops the run like Ctrl-C).
    `per_step_records` False leaves out each step's unit count and scalars (the benchmark's
    bare loop). Bad input exits with code 2 and one sentence; the exit code of a run is its
    status's (common.run.lifecycle.EXIT_CODES).
    """
    use_tensorflow_backend()  # TensorFlow by design, whatever KERAS_BACKEND says
    config = parse_config(argv, DEMO)
    data = load_or_exit(config)  # 1. the data: scaled on the training rows only
    if config.strategy == "multiworker":  # before TensorFlow, whose own wait is endless
        meet_workers_or_exit(config.connect_timeout)
    import_tensorflow_quietly()
    with exit_on_output_error():
        return train(config, data, on_progress, per_step_records)


def train(config, data, on_progress=None, per_step_records=True):
    import keras
    import tensorflow as tf

    from common.outputs.stepboard import StepBoard
    from common.penalty import GroupSparse, ProximalOptimizer, penalty_value
    from common.run.skeleton import Run
    from common.shrink import active_counts, prune_model
    from common.shrink.counting import unit_kernels
    from common.training import build_model, row_losses, training_batches

    run = Run(DEMO, config, data, on_progress)  # the seed, --strategy, the run folder
    strategy, proximal = run.strategy, config.solver == "proximal"

    def build_network():
        """2. The network: ReLU hidden layers, and on every kernel the group sparse penalty,
        one group per row (a unit's outgoing weights). With --solver proximal the penalty
        is not in the loss: the optimizer applies it as an exact proximal step."""
        return build_model(data, config.hidden, [
            GroupSparse(group, l1=l1, l2=config.l2, proximal=proximal)
            for group, l1 in config.kernel_strengths()])

    with strategy.scope():
        model = build_network()
        # 3. The optimizer: Adam, and with --solver proximal Adam's step on the data loss
        # followed by the penalty's proximal step, which sets whole rows to exactly zero.
        optimizer = keras.optimizers.Adam(config.lr)
        if proximal:
            optimizer = ProximalOptimizer(optimizer, freeze_zeros=config.freeze_zeros)
    run.start(model, optimizer, build_network)
    kernels = unit_kernels(model)
    # Each replica gets its piece of every global batch, and the global batch's row count.
    batches = training_batches(strategy, data.x_train, data.y_train, config.batch_size,
                               config.seed)
    batch_iterator, per_epoch = iter(batches.dataset), batches.steps_per_epoch
    board = StepBoard(run, kernels, run.total_epochs * per_epoch)

    # 4. The training loop: a GradientTape step, many of them in one tf.function call.
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
            if not proximal:  # the penalty in the loss: the kernel regularizers' losses
                penalty = tf.add_n(model.losses)
                objective = loss + tf.nn.scale_regularization_loss(penalty)
        gradients = tape.gradient(objective, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss, penalty

    @tf.function
    def train_steps(num_steps):
        """`num_steps` steps in one graph call: the steps taken, the last one's numbers."""
        taken, loss, penalty, counts = 0, 0.0, 0.0, tf.zeros([len(kernels)], tf.int32)
        for _ in tf.range(num_steps):
            losses, penalties = strategy.run(replica_step, args=next(batch_iterator))
            loss = strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)
            penalty = strategy.reduce(tf.distribute.ReduceOp.MEAN, penalties, axis=None)
            taken += 1
            if per_step_records:  # the step's active units and its TensorBoard scalars
                counts = active_counts(kernels, config.threshold)
                board.step(optimizer.iterations, loss, penalty, counts)
            if not tf.math.is_finite(loss + penalty):
                break
        return taken, loss, penalty, tf.reduce_sum(counts)

    def train_epochs(epochs):  # chunks of --eval-every epochs: a graph call, an evaluation
        return run.in_chunks(epochs * per_epoch, config.eval_every * per_epoch,
                             lambda size: train_steps(tf.constant(size)),
                             lambda done, end: board.chunk(done, end, run.evaluate()))

    def show(records):  # --path: steps the search trained, the model now at their end
        board.records(run.done, records, every=config.eval_every * per_epoch)
        board.chunk(run.done, run.done + len(records), run.evaluate())  # pictures when due
        run.shown(records)

    def retrace():  # --adaptive: the penalty's numbers are graph constants
        nonlocal train_steps
        train_steps = tf.function(train_steps.python_function)

    with run.stopping():  # Ctrl-C and SIGTERM stop training; the files are written whole
        # The loop above trains; with --path (--cv, --adaptive) the search trains instead
        # and leaves the chosen network in `model`.
        run.train(train_epochs, show, per_epoch, on_point=board.point, on_penalty_change=retrace)
        # 5. Pruning: the rows at zero go, and a smaller network predicts the same.
        pruned = (prune_model(model, config.threshold, data.feature_names)
                  if run.prunable() else None)
        # 6. The outputs: the table, run.json, pruned.keras, TensorBoard's last scalars. The
        # steps: this loop's (a stop may land before they are counted) and the search's.
        summary = run.finish(int(optimizer.iterations.numpy()) + run.engine_steps, pruned)
        board.close(summary, summary["steps"])
    return summary


if __name__ == "__main__":
    from common.run.lifecycle import run_as_script

    sys.exit(run_as_script(main))  # the run's exit code; a closed pipe loses nothing
