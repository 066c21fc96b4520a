"""Counting active units on hand-built kernels, and the per-epoch history of a short fit."""

import keras
import numpy as np
import pytest

from common import GroupSparse, build_model, count_active_units
from common.training.batches import LOOP
from common.training.fitting import IndexBatches
from common.training.model import loss_name
from common.training.monitor import UnitHistory
from tests.helpers import steps_per_call

pytestmark = pytest.mark.backends  # the Keras side: every backend



def test_counts_rows_whose_absolute_sum_exceeds_the_threshold():
    first = np.ones((13, 20), np.float32)
    first[[2, 5]] = 0.0  # two dead input features
    first[7] = 2e-4  # 20 * 2e-4 = 4e-3 > 1e-3: still active
    first[8] = 4e-5  # 20 * 4e-5 = 8e-4 <= 1e-3: inactive
    second = np.ones((20, 15), np.float32)
    second[:4] = 0.0
    third = np.ones((15, 1), np.float32)
    third[[0, 1, 2]] = 1e-4
    counts = count_active_units([first, second, third], threshold=1e-3)
    assert counts.inputs == 10 and counts.hidden == [16, 12] and counts.total == 38
    names = [f"f{index}" for index in range(13)]
    assert counts.surviving_features(names) == [n for i, n in enumerate(names) if i not in (2, 5, 8)]
    assert count_active_units([np.ones((13, 20)), np.ones((20, 15)), np.ones((15, 1))]).total == 48


def test_history_has_one_point_per_epoch_matching_a_recount(boston):
    keras.utils.set_random_seed(0)
    model = build_model(boston, (8, 6), GroupSparse(group_strength=0.05))
    batches = IndexBatches(boston.x_train, boston.y_train, 100, seed=0, stream=(LOOP,))
    steps_per_epoch = batches.steps_per_epoch  # 4 steps per epoch
    history = UnitHistory(model, boston.task, 1e-3, steps_per_epoch, capacity=5 * steps_per_epoch)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss_name(boston.task),
                  metrics=[history.recorder], steps_per_execution=steps_per_call(5 * steps_per_epoch))
    model.fit(batches, epochs=3, steps_per_epoch=5 * steps_per_epoch, verbose=0, shuffle=False,
              callbacks=[history])
    assert steps_per_epoch == 4 and history.records["epoch"] == list(range(1, 16))
    final = count_active_units(model)
    assert history.records["units"][-1] == [final.inputs, *final.hidden]
    assert float(sum(model.losses)) == pytest.approx(history.records["penalty"][-1], rel=1e-6)
    assert all(np.isfinite(history.records["loss"]))
