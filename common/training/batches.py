"""Training batches: one definition by row indices, delivered to every loop of the project.

The definition (`epoch_indices`): a full batch is every row, in order; otherwise each epoch
is a fresh NumPy permutation of the rows cut into batches of `batch_size`, the last one
shorter, drawn from a random stream derived from the run's seed and the stage
(`batch_stream`). So a seed gives the same rows at every step on TensorFlow and on JAX, in
the TF demo's loop, in Keras' fit (`IndexBatches`, TensorFlow-free) and in the engine
(`fold_plan`, every fold of a path side by side).

Every global batch holds the same rows, in the same order, whatever the number of
replicas. Under a strategy each global batch is split into one nearly equal
piece per replica. Each element carries the global batch's row count, so a replica's
loss is its rows' loss sum divided by that count (`tf.nn.compute_average_loss`) and the
replicas' summed gradients equal the single-device ones.
"""

import dataclasses

import numpy as np

# The stages' random streams, batch_stream(seed, stage, ...): the engine's dense stage, its
# path points and their fine-tuning (each with point and fold), the demos' own training
# loops (every stage of a run in one stream), and the final --finetune.
DENSE, POINT, FINETUNE, LOOP, FINAL = range(5)


def batch_rows(num_rows, batch_size):
    """Rows in one training batch: `batch_size`, or every row when it is None or larger."""
    return min(batch_size or num_rows, num_rows)


def count_epoch_steps(num_rows, batch_size):
    """Training steps in one pass over `num_rows` rows (the last batch may be smaller)."""
    return -(-num_rows // batch_rows(num_rows, batch_size))


def batch_stream(seed, *stream):
    """The random stream of one stage of one fold: NumPy's generator seeded by (seed, *stream),
    e.g. (seed, stage, point, fold). Independent streams, all derived from the run's seed."""
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def epoch_indices(num_rows, batch_size, rng):
    """The batches of one epoch as arrays of row indices. Full batch (batch_size None, or at
    least num_rows): one batch of every row, in order, and nothing drawn from `rng`; otherwise
    a fresh permutation of the rows cut into batches of batch_size, the last one shorter when
    batch_size does not divide num_rows."""
    batch = batch_rows(num_rows, batch_size)
    if batch == num_rows:
        return [np.arange(num_rows)]
    order = rng.permutation(num_rows)
    return [order[start:start + batch] for start in range(0, num_rows, batch)]


def stage_indices(num_rows, batch_size, epochs, seed, *stream):
    """Every batch of a stage of `epochs` epochs, as lists of index arrays, one list per
    epoch: epoch_indices on the stage's own stream (batch_stream(seed, *stream))."""
    rng = batch_stream(seed, *stream)
    return [epoch_indices(num_rows, batch_size, rng) for _ in range(epochs)]


def fold_plan(fold_rows, batch_size, epochs, seed, stream):
    """A stage's batches for folds of `fold_rows` rows trained in lockstep (common.search.engine):
    fold k's batches are stage_indices(..., seed, *stream, k), laid out in step slots so that
    every epoch has as many slots as the fold with the most steps; a fold with fewer steps
    skips the slots after its last one ("active" is False there). Arrays [slot, fold, row]:
    "indices" (padded with 0) and "mask" (1 for a real row). Full batch: no indices, one
    slot an epoch, every fold active."""
    folds = len(fold_rows)
    if all(batch_rows(rows, batch_size) == rows for rows in fold_rows):
        return {"steps_per_epoch": 1, "active": np.ones((epochs, folds), bool)}
    per_fold = [stage_indices(rows, batch_size, epochs, seed, *stream, fold)
                for fold, rows in enumerate(fold_rows)]
    steps = max(len(epoch) for fold in per_fold for epoch in fold)
    width = max(batch_rows(rows, batch_size) for rows in fold_rows)
    indices = np.zeros((epochs * steps, folds, width), np.int32)
    mask = np.zeros((epochs * steps, folds, width), np.float32)
    active = np.zeros((epochs * steps, folds), bool)
    for fold, fold_epochs in enumerate(per_fold):
        for epoch, batches in enumerate(fold_epochs):
            for slot, rows in enumerate(batches):
                step = epoch * steps + slot
                indices[step, fold, :len(rows)] = rows
                mask[step, fold, :len(rows)] = 1.0
                active[step, fold] = True
    return {"steps_per_epoch": steps, "active": active, "indices": indices, "mask": mask}


def chunk_of(plan, start, size, chunk_steps):
    """Slots start .. start + size of a fold_plan, padded to chunk_steps (a compiled chunk
    has one length; the padding slots never run): (active,), or (active, indices, mask)."""
    from keras import ops

    def padded(array):
        part = array[start:start + size]
        pad = np.zeros((chunk_steps - len(part), *part.shape[1:]), part.dtype)
        return ops.convert_to_tensor(np.concatenate([part, pad]))

    return tuple(padded(plan[key]) for key in ("active", "indices", "mask") if key in plan)


def epoch_batches(x, y, batch_size, seed, stream=(LOOP,)):
    """Endless batches of rows (x, y) as a tf.data stream: the epochs of epoch_indices on
    the stream batch_stream(seed, *stream), drawn afresh each time the stream is iterated.
    Full batch is one cached batch."""
    import tensorflow as tf

    num_rows = len(x)
    batch = batch_rows(num_rows, batch_size)
    if batch == num_rows:
        return tf.data.Dataset.from_tensors((x, y)).cache().repeat()
    x, y = tf.constant(x), tf.constant(y)

    def epochs():  # one epoch's batches end to end; .batch() below cuts them again
        rng = batch_stream(seed, *stream)
        while True:
            yield np.concatenate(epoch_indices(num_rows, batch_size, rng))

    orders = tf.data.Dataset.from_generator(
        epochs, output_signature=tf.TensorSpec([num_rows], tf.int64))
    return (orders.flat_map(lambda order: tf.data.Dataset.from_tensor_slices(order).batch(batch))
            .map(lambda rows: (tf.gather(x, rows), tf.gather(y, rows))))


@dataclasses.dataclass
class Batches:
    dataset: object  # endless; elements (x, y, global_rows), or (x, y) without with_rows
    steps_per_epoch: int  # global steps in one pass over the training rows


def training_batches(strategy, x, y, batch_size, seed, with_rows=True):
    """The TF demo's batches: each replica's piece of every global batch of (x, y),
    endlessly, as `Batches`. `with_rows`: each element also carries the global batch's row
    count (int64)."""
    import tensorflow as tf

    steps = count_epoch_steps(len(x), batch_size)

    def pieces_of(batches, replicas, first, local):
        def pieces(x, y):
            rows = tf.shape(x, out_type=tf.int64)[0]

            def piece(index):
                replica = first + index
                start, end = replica * rows // replicas, (replica + 1) * rows // replicas
                part = (x[start:end], y[start:end])
                return part + (rows,) if with_rows else part

            return tf.data.Dataset.range(local).map(piece)

        return batches.flat_map(pieces)

    if strategy.num_replicas_in_sync == 1:  # one device: every batch is one piece
        batches = pieces_of(epoch_batches(x, y, batch_size, seed), 1, 0, 1)
        return Batches(batches.prefetch(tf.data.AUTOTUNE), steps)

    def dataset_fn(context):
        local = context.num_replicas_in_sync // context.num_input_pipelines
        batches = epoch_batches(x, y, batch_size, seed)
        return pieces_of(batches, context.num_replicas_in_sync,
                         context.input_pipeline_id * local, local).prefetch(tf.data.AUTOTUNE)

    return Batches(strategy.distribute_datasets_from_function(dataset_fn), steps)
