"""common.search.engine: K folds in one compiled computation against K separate runs of Keras' own
training (fit / train_on_batch with ProximalOptimizer), one compilation for a whole path,
the records against recounts and a NumPy forward pass, and the batches' definition."""

import keras
import numpy as np
import pytest

from common.training.batches import stage_indices
from common.shrink.counting import count_active_units
from common.data.datasets import load_dataset
from common.search.engine import FoldTrainer
from common.training.model import build_model
from common.penalty.penalties import GroupSparse
from common.penalty.proximal_optimizer import ProximalOptimizer
from tests.helpers import numpy_forward

pytestmark = pytest.mark.backends

STRENGTH = 1e-3


def folds_of(data, sizes, seed=0):
    """Folds of the given training sizes (ragged), each with its own validation rows."""
    rng = np.random.default_rng(seed)
    folds = []
    for size in sizes:
        rows = rng.permutation(len(data.x_train))
        folds.append((data.x_train[rows[:size]], data.y_train[rows[:size]],
                      data.x_train[rows[size:size + 40]], data.y_train[rows[size:size + 40]]))
    return folds


def network(data, proximal=True, hidden=(8, 6)):
    keras.utils.set_random_seed(0)
    regularizer = [GroupSparse(STRENGTH, proximal=proximal) for _ in range(len(hidden) + 1)]
    return build_model(data, hidden, regularizer)


def separate_run(data, start, x, y, scale, batches):
    """One fold trained as the demos train it without the engine: a Keras model with the
    proximal optimizer, one train_on_batch per batch of row indices."""
    model = network(data)
    model.set_weights(start)
    for regularizer in (layer.kernel_regularizer for layer in model.layers):
        regularizer.group_strength = STRENGTH * scale
    model.compile(optimizer=ProximalOptimizer(keras.optimizers.Adam(1e-3)), loss="mse")
    for rows in batches:
        model.train_on_batch(x[rows], y[rows])
    return model.get_weights()


@pytest.fixture(scope="module")
def boston():
    return load_dataset("boston", seed=0, val_fraction=0.2)


def test_folds_in_one_computation_equal_separate_runs(boston):
    """Two folds of 303 and 280 rows, full batch, the proximal solver at a strength that
    removes units: each fold's weights equal a separate Keras run's within 1e-5, with the
    same zero rows and counts."""
    folds = folds_of(boston, [303, 280])
    model = network(boston)
    start = model.get_weights()
    trainer = FoldTrainer(model, folds, "regression", 1e-3, None, seed=0, chunk_steps=100)
    trainer.train(150, stream=(0,), scale=8.0)
    for fold, (x, y, _, _) in enumerate(folds):
        expected = separate_run(boston, start, x, y, 8.0, [np.arange(len(x))] * 150)
        got = trainer.weights(fold)
        for want, have in zip(expected, got):
            np.testing.assert_allclose(have, want, atol=1e-5)
        zero_rows = [np.all(kernel == 0, axis=1) for kernel in expected[::2]]
        assert [np.all(kernel == 0, axis=1).tolist() for kernel in got[::2]] == \
            [rows.tolist() for rows in zero_rows]
        assert count_active_units(got[::2], 0.0).total < 13 + 8 + 6  # the penalty removed some


def test_ragged_minibatches_follow_their_definition_and_equal_separate_runs(boston):
    """Batches of 64 rows from a fresh permutation per epoch, drawn from the stage's stream:
    the rows of every step recomputed here with NumPy alone; folds of 150 and 130 rows
    (3 steps an epoch, the last one shorter) equal separate runs on those batches, each
    compiled call covering whole epochs."""
    folds = folds_of(boston, [150, 130], seed=1)
    seed, stream = 7, (1, 3)
    for fold, (x, _, _, _) in enumerate(folds):
        rng = np.random.default_rng(np.random.SeedSequence([seed, *stream, fold]))
        expected = []
        for _ in range(4):
            order = rng.permutation(len(x))
            expected.append([order[:64], order[64:128], order[128:]])
        got = stage_indices(len(x), 64, 4, seed, *stream, fold)
        assert [[rows.tolist() for rows in epoch] for epoch in got] == \
            [[rows.tolist() for rows in epoch] for epoch in expected]
    assert [len(rows) for rows in stage_indices(100, None, 1, seed)[0]] == [100]  # full batch
    model = network(boston)
    start = model.get_weights()
    trainer = FoldTrainer(model, folds, "regression", 1e-3, 64, seed=seed, chunk_steps=5,
                          xla=False)  # the plain graph: the same maths, a faster compile
    calls = []  # a compiled call covers whole epochs (3 steps of the 5 it could)
    trainer.train(4, stream=stream, scale=2.0, on_chunk=lambda done, _: calls.append(done))
    assert calls == [3, 6, 9, 12]
    for fold, (x, y, _, _) in enumerate(folds):
        batches = [rows for epoch in stage_indices(len(x), 64, 4, seed, *stream, fold)
                   for rows in epoch]
        expected = separate_run(boston, start, x, y, 2.0, batches)
        for want, have in zip(expected, trainer.weights(fold)):
            np.testing.assert_allclose(have, want, atol=1e-5)


def test_one_compilation_serves_a_path_with_fine_tuning_and_records_recount(boston):
    """Dense training, growing lambdas and a fine-tuning with frozen rows and early stopping
    all run in the one compiled chunk; units fall as lambda grows; each record's units are
    the weights' recount, its data loss a NumPy forward pass of the weights before the step."""
    folds = folds_of(boston, [303, 302, 301])
    model = network(boston)
    trainer = FoldTrainer(model, folds, "regression", 1e-3, None, seed=0, chunk_steps=50)
    before = [trainer.weights(fold) for fold in range(3)]
    records = trainer.train(60, stream=(0,))
    for fold, (x, y, _, _) in enumerate(folds):
        first = np.mean(np.sum((numpy_forward(before[fold], x) - y) ** 2, axis=1))
        assert records[fold][0, 0] == pytest.approx(first, rel=1e-4)
    units = []
    for scale in (3.0, 12.0, 40.0):
        records = trainer.train(80, stream=(1, int(scale)), scale=scale)
        for fold in range(3):
            recount = count_active_units(trainer.kernels(fold), 0.0)
            assert records[fold][-1, 2:].tolist() == [recount.inputs, *recount.hidden]
        units.append(sum(records[0][-1, 2:]))
    assert units[0] > units[-1]  # lambda changes the step: units fall along the path
    keep = [[(np.abs(kernel).sum(axis=1) > 0).astype(np.float32)
             for kernel in trainer.kernels(fold)] for fold in range(3)]
    trainer.reset_optimizer()
    trainer.train(30, stream=(2, 1), keep=keep, patience=2, check_epochs=5)
    for fold in range(3):  # the removed rows stayed at zero without the penalty
        for kernel, rows in zip(trainer.kernels(fold), keep[fold]):
            assert np.all(kernel[rows == 0] == 0)
    assert trainer.traces == 1


def test_early_stopping_stops_one_fold_and_leaves_it_at_its_best(boston):
    """Fold 1 is scored on its training rows with the targets flipped, so its validation
    loss rises as it learns and it stops at its first check; fold 0 goes on. A stopped fold
    never moves again, and ends with its best weights, as a run of it alone does."""
    (x0, y0, _, _), (x1, y1, _, _) = folds_of(boston, [200, 200])
    folds = [(x0, y0, x0, y0), (x1, y1, x1, 1.0 - y1)]
    model = network(boston, proximal=False)
    trainer = FoldTrainer(model, folds, "regression", 1e-2, None, seed=0, chunk_steps=40,
                          xla=False)
    start = trainer.weights(1)
    trainer.train(200, stream=(2,), patience=2, check_epochs=10)
    steps = keras.ops.convert_to_numpy(trainer.steps)
    assert steps[0] == 200 and steps[1] == 30  # checks at 10 (best), 20 and 30 (stop)
    alone = FoldTrainer(model, folds[1:], "regression", 1e-2, None, seed=0, chunk_steps=40,
                        xla=False)
    alone.train(10, stream=(2,))
    for have, want in zip(trainer.weights(1), alone.weights(0)):
        np.testing.assert_allclose(have, want, atol=1e-6)
    assert any(np.any(have != was) for have, was in zip(trainer.weights(1), start))


def test_early_stopping_on_marked_rows_equals_a_fold_holding_only_those_rows(boston):
    """`stop_rows` (the path's cross-fitted scoring): early stopping that reads the marked
    half of each fold's validation rows (41 and 35 rows: padded to one length) trains
    exactly as a trainer whose folds hold only that half, and not as one that reads them
    all (the other half's targets are -5 times the true ones, so a fold reading them stops
    sooner). One compilation serves every choice of rows; a vector that does not cover a
    fold's validation rows is a ValueError."""
    rows = np.random.default_rng(1).permutation(len(boston.x_train))
    x, y = boston.x_train, boston.y_train
    folds = [(x[rows[:200]], y[rows[:200]], x[rows[200:241]], y[rows[200:241]]),
             (x[rows[241:421]], y[rows[241:421]], x[rows[421:456]], y[rows[421:456]])]
    marks = [np.arange(len(x_val)) % 2 == 0 for _, _, x_val, _ in folds]
    halved = [(x, y, x_val[mark], y_val[mark])
              for (x, y, x_val, y_val), mark in zip(folds, marks)]
    read = [(x, y, x_val, np.where(mark[:, None], y_val, -5.0 * y_val))
            for (x, y, x_val, y_val), mark in zip(folds, marks)]
    model = network(boston, proximal=False)
    start = model.get_weights()

    def trainer_of(folds):
        return FoldTrainer(model, folds, "regression", 1e-2, None, seed=0, chunk_steps=40,
                           xla=False)

    def steps(trainer):
        return keras.ops.convert_to_numpy(trainer.steps).tolist()

    marked, alone = trainer_of(read), trainer_of(halved)
    marked.train(150, stream=(2,), patience=3, check_epochs=5,
                 stop_rows=[mark.astype(np.float32) for mark in marks])
    alone.train(150, stream=(2,), patience=3, check_epochs=5)
    assert steps(marked) == steps(alone) and max(steps(alone)) < 150
    for fold in range(2):
        for have, want in zip(marked.weights(fold), alone.weights(fold)):
            np.testing.assert_allclose(have, want, atol=1e-6)
    for fold in range(2):  # the same trainer, every row read: a new run, the same compilation
        marked.set_weights(fold, start)
    marked.reset_optimizer()
    marked.train(150, stream=(2,), patience=3, check_epochs=5)
    assert marked.traces == 1
    assert steps(marked) != steps(alone)  # fold 0 stops sooner: 25 steps against 75
    with pytest.raises(ValueError, match="validation rows"):
        marked.train(5, stream=(2,), patience=3, stop_rows=[np.ones(41, np.float32)])
