"""Many devices or machines with tf.distribute: the strategy, its data, who writes the files.

    python demo_tensorflow.py --strategy mirrored      # every GPU of this machine
    TF_CONFIG='{"cluster": {"worker": ["host1:2222", "host2:2222"]},
                "task": {"type": "worker", "index": 0}}' \\
        python demo_tensorflow.py --strategy multiworker   # one process per machine

The data each replica trains on comes from common.training.batches; this module makes the
strategy and says which process writes the files (the command line checks TF_CONFIG before
TensorFlow loads, common.run.arguments; the workers meet first, common.run.rendezvous).
"""


class OneDevice:
    """--strategy none off TensorFlow: one device, in the words of tf.distribute's default
    strategy that the Keras demo uses."""

    cluster_resolver = None
    num_replicas_in_sync = 1

    def scope(self):
        import contextlib

        return contextlib.nullcontext()


class KerasDataParallel:
    """--strategy mirrored on JAX: Keras' own `keras.distribution.DataParallel` over every
    local device, in the few words of a tf.distribute strategy the Keras demo uses. Each
    global batch is sharded over the devices by Keras; the batches come whole."""

    cluster_resolver = None

    def __init__(self):
        import contextlib

        import keras

        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        self.num_replicas_in_sync = len(devices)
        self.scope = contextlib.nullcontext


def make_strategy(name):
    """The tf.distribute strategy for --strategy none, mirrored or multiworker (on JAX,
    mirrored is Keras' DataParallel).

    For multiworker, call `meet_workers` first: TensorFlow's own wait for the other workers
    has no time limit and cannot be interrupted.
    """
    import keras

    if name == "mirrored" and keras.backend.backend() == "jax":
        return KerasDataParallel()
    if name == "none" and keras.backend.backend() != "tensorflow":
        return OneDevice()  # TensorFlow is not needed, and maybe not installed
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
