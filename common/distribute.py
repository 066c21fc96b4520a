"""Many devices or machines with tf.distribute: the strategy, its data, who writes the files.

    python demo_tensorflow.py --strategy mirrored      # every GPU of this machine
    TF_CONFIG='{"cluster": {"worker": ["host1:2222", "host2:2222"]},
                "task": {"type": "worker", "index": 0}}' \\
        python demo_tensorflow.py --strategy multiworker   # one process per machine

Every global batch holds the same rows, in the same order, as on one device; it is split
into one nearly equal piece per replica. Each replica's data loss is its rows' loss sum
divided by the global batch's row count and the penalty is divided by the number of
replicas, so the summed gradients, and thus every update, equal the single-device ones.
"""

import json
import os


def make_strategy(name):
    """The tf.distribute strategy for --strategy none, mirrored or multiworker."""
    import tensorflow as tf

    if name == "none":
        return tf.distribute.get_strategy()  # the default: one device, no replication
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"unknown strategy {name!r}: choose none, mirrored or multiworker")


def is_chief(strategy):
    """True for the one process that writes summaries and files (always, on one machine)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def check_tf_config(name):
    """The one-sentence problem with TF_CONFIG for --strategy multiworker, or None."""
    if name != "multiworker":
        return None
    text = os.environ.get("TF_CONFIG")
    if not text:
        return ("--strategy multiworker needs the TF_CONFIG environment variable "
                "(the cluster's addresses and this process's task); see the README")
    try:
        config = json.loads(text)
        config["cluster"], config["task"]["type"], config["task"]["index"]
    except (ValueError, KeyError, TypeError):
        return ('TF_CONFIG must be JSON like {"cluster": {"worker": ["host:port", ...]}, '
                '"task": {"type": "worker", "index": 0}}')
    return None


def replica_batches(strategy, data, batch_size, seed, with_rows=False, even=False):
    """Each replica's piece of every global training batch, as a distributed dataset.

    The global batches are those of `common.model.training_batches` (full batch, or a
    seeded reshuffle per epoch). With `with_rows`, each element also carries the global
    batch's row count, to divide the replica's loss sum by. On a single replica this is the
    plain stream of `training_batches`, (x, y) only. With `even`, a global batch
    whose rows do not split evenly loses its last few rows (fewer than the number of
    replicas): Keras 3's fit fails on uneven pieces (keras-team/keras#19246).
    Returns (dataset, steps per epoch).
    """
    import tensorflow as tf

    from common.model import epoch_batches, steps_per_epoch, training_batches

    if strategy.num_replicas_in_sync == 1:  # one device: the plain stream, no pieces
        return training_batches(data, batch_size, seed)

    def dataset_fn(context):
        batches = epoch_batches(data.x_train, data.y_train, batch_size, seed).repeat()
        replicas = context.num_replicas_in_sync
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def pieces(x, y):
            rows = tf.shape(x, out_type=tf.int64)[0]
            if even:
                rows = rows // replicas * replicas

            def piece(index):
                replica = first + index
                start, end = replica * rows // replicas, (replica + 1) * rows // replicas
                part = (x[start:end], y[start:end])
                return part + (rows,) if with_rows else part

            return tf.data.Dataset.range(local).map(piece)

        return batches.flat_map(pieces).prefetch(tf.data.AUTOTUNE)

    return (strategy.distribute_datasets_from_function(dataset_fn),
            steps_per_epoch(len(data.x_train), batch_size))
