"""The one batch definition, as each loop receives it: Keras' fit through IndexBatches (every
backend, no TensorFlow), the TF demo's tf.data stream; the rows of every step recomputed
here from the seed with NumPy alone."""

import keras
import numpy as np
import pytest

from common.training.batches import FINAL, LOOP
from common.training.fitting import IndexBatches, fit_in_chunks

pytestmark = pytest.mark.backends


def expected_batches(rows, batch, epochs, seed, *stream):
    """Each epoch a fresh permutation of the rows from the stream's own generator, cut into
    batches of `batch` rows, the last one shorter."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, *stream]))
    steps = []
    for _ in range(epochs):
        order = rng.permutation(rows)
        steps += [order[start:start + batch] for start in range(0, rows, batch)]
    return steps


def rows_data(rows):
    x = np.arange(rows, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    return x, np.arange(rows, dtype=np.float32)[:, None]


def test_fit_batches_follow_the_definition_across_calls():
    """130 rows in batches of 64 (two of 64, one of 2): batch i of the stream, whichever
    fit() call asks for it; the stream goes on where the last call stopped."""
    x, y = rows_data(130)
    batches = IndexBatches(x, y, 64, seed=7, stream=(LOOP,))
    expected = expected_batches(130, 64, 5, 7, LOOP)
    assert batches.steps_per_epoch == 3
    for index in [0, 1, 2, 3, 7, 4]:  # out of order too, as a prefetching loader may ask
        got_x, got_y = batches[index]
        np.testing.assert_array_equal(got_y[:, 0], expected[index])
        np.testing.assert_array_equal(got_x[:, 0], expected[index])
    batches.start = 6  # what fit_in_chunks does after a call that trained 6 batches
    np.testing.assert_array_equal(batches[2][1][:, 0], expected[8])
    full = IndexBatches(x, y, None, seed=7, stream=(LOOP,))
    np.testing.assert_array_equal(full[5][1][:, 0], np.arange(130))  # full batch: in order


def test_batches_split_evenly_over_replicas_lose_a_few_rows():
    x, y = rows_data(130)
    batches = IndexBatches(x, y, 64, seed=3, stream=(LOOP,), replicas=4)
    expected = expected_batches(130, 64, 1, 3, LOOP)
    assert [len(batches[index][1]) for index in range(3)] == [64, 64, 0]
    np.testing.assert_array_equal(batches[1][1][:, 0], expected[1])
    assert batches.dropped_rows == 2


class Logged(IndexBatches):
    """IndexBatches that note the stream position of every batch asked for."""

    asked = None

    def __getitem__(self, index):
        self.asked.append(self.start + index)
        return super().__getitem__(index)


def test_fit_in_two_calls_goes_on_along_the_stream():
    """fit_in_chunks asks for batches 0 .. 11 of the stream (4 epochs of 3 steps), and the
    next call for 12 .. 17, not 0 .. 5 again."""
    x, y = rows_data(130)
    batches = Logged(x, y, 64, seed=11, stream=(FINAL,))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    batches.asked = []
    fit_in_chunks(model, batches, 4, 2, dict(optimizer="sgd", loss="mse"))
    assert set(range(12)) <= set(batches.asked)
    batches.asked = []
    fit_in_chunks(model, batches, 2, 2, dict(optimizer="sgd", loss="mse"))
    assert min(batches.asked) == 12 and set(range(12, 18)) <= set(batches.asked)
    assert batches.start == 18


@pytest.mark.tensorflow_only
def test_the_tf_demo_stream_follows_the_same_definition():
    from common.training.batches import epoch_batches

    x, y = rows_data(130)
    stream = iter(epoch_batches(x, y, 64, 5))
    for want in expected_batches(130, 64, 3, 5, LOOP):
        got_x, got_y = next(stream)
        np.testing.assert_array_equal(got_y.numpy()[:, 0], want)
        np.testing.assert_array_equal(got_x.numpy()[:, 0], want)
    stream = iter(epoch_batches(x, y, 64, 5))  # iterated again: the stream starts again
    np.testing.assert_array_equal(next(stream)[1].numpy()[:, 0],
                                  expected_batches(130, 64, 1, 5, LOOP)[0])
