"""L0 gates on units against NumPy float64: the hard concrete gate, its probability of being
open (the penalty) and that penalty's gradient by finite differences, the layer in training
and at test time, saving, and the folded network against a NumPy forward pass."""

import math

import numpy as np
import pytest

import keras
from keras import ops

from common.shrink.counting import count_active_units
from benchmarks.gates import UnitGates, fold_gates, gates_l0, hard_concrete, inference_gates
from common.training.gradients import gradient_numpy
from common.shrink.pruning import prune_model
from tests.helpers import numpy_forward

pytestmark = pytest.mark.backends

# The paper's constants, written out again here: beta 2/3, stretch to (-0.1, 1.1).
B, LOW, HIGH = 2 / 3, -0.1, 1.1


def numpy_gate(log_alpha, u):
    s = 1 / (1 + np.exp(-(np.log(u) - np.log1p(-u) + log_alpha) / B))
    return np.clip(s * (HIGH - LOW) + LOW, 0, 1)


def numpy_open(log_alpha):
    """P(gate != 0): the stretched s exceeds 0 iff the logistic noise exceeds a threshold."""
    threshold = B * np.log(-LOW / HIGH) - log_alpha  # log u - log(1 - u) > this
    return 1 / (1 + np.exp(threshold))


def test_gates_in_training_and_at_test_time_match_numpy():
    log_alpha = np.array([-4.0, -1.0, 0.0, 0.7, 3.0], np.float64)
    u = np.random.default_rng(0).uniform(1e-6, 1 - 1e-6, (200, 5))
    z = ops.convert_to_numpy(hard_concrete(ops.convert_to_tensor(log_alpha, "float32"),
                                           ops.convert_to_tensor(u, "float32")))
    np.testing.assert_allclose(z, numpy_gate(log_alpha, u), atol=1e-5)
    assert (z == 0).any() and (z == 1).any()  # exact zeros and ones, not only in between
    expected = np.clip(1 / (1 + np.exp(-log_alpha)) * (HIGH - LOW) + LOW, 0, 1)
    fixed = ops.convert_to_numpy(inference_gates(ops.convert_to_tensor(log_alpha, "float32")))
    np.testing.assert_allclose(fixed, expected, atol=1e-6)
    assert fixed[0] == 0.0 and fixed[-1] == 1.0  # closed below log(0.1 / 1.1) = -2.40


def test_a_gates_gradient_reaches_log_alpha_through_the_noise():
    """The reparameterised gradient: d z / d log_alpha for fixed draws, against central
    differences of the float64 formula (draws that leave the gate strictly inside (0, 1),
    where it has one; a clipped gate has none)."""
    log_alpha = np.array([-0.8, 0.1, 0.9], np.float64)
    u = np.array([0.35, 0.5, 0.3], np.float64)
    assert np.all((numpy_gate(log_alpha, u) > 0) & (numpy_gate(log_alpha, u) < 1))
    variable = keras.Variable(log_alpha.astype(np.float32))
    weights = np.array([1.0, -2.0, 0.5])  # a weighted sum: each gate's own derivative counts
    (gradient,) = gradient_numpy(
        lambda: ops.sum(hard_concrete(variable, ops.convert_to_tensor(u, "float32")) * weights),
        [variable])
    step = 1e-6
    numeric = [(numpy_gate(log_alpha + step * unit, u) - numpy_gate(log_alpha - step * unit, u))
               @ weights / (2 * step) for unit in np.eye(3)]
    np.testing.assert_allclose(gradient, numeric, rtol=1e-3)


def test_the_penalty_is_the_chance_each_gate_is_open_and_its_gradient_is_right():
    log_alpha = np.array([-3.0, -0.5, 0.2, 2.5], np.float64)
    # The chance, by sampling: the share of NumPy-drawn gates that are not zero.
    u = np.random.default_rng(1).uniform(0, 1, (200_000, 4))
    sampled = (numpy_gate(log_alpha, u) > 0).mean(axis=0)
    np.testing.assert_allclose(sampled, numpy_open(log_alpha), atol=4e-3)
    model = keras.Sequential([keras.Input((4,)), UnitGates(), keras.layers.Dense(1)])
    gates = model.layers[0]
    gates.log_alpha.assign(log_alpha.astype(np.float32))
    value = float(ops.convert_to_numpy(gates_l0(model)))
    assert value == pytest.approx(numpy_open(log_alpha).sum(), rel=1e-6)
    (gradient,) = gradient_numpy(lambda: gates_l0(model), [gates.log_alpha])
    step = 1e-6
    for index in range(4):  # central differences of the float64 formula
        up, down = log_alpha.copy(), log_alpha.copy()
        up[index] += step
        down[index] -= step
        numeric = (numpy_open(up).sum() - numpy_open(down).sum()) / (2 * step)
        assert gradient[index] == pytest.approx(numeric, rel=1e-4)


def test_the_layer_draws_gates_per_row_in_training_and_is_fixed_at_test_time():
    layer = UnitGates(droprate=0.2, seed=3)
    x = np.ones((64, 6), np.float32)
    start = math.log(0.8 / 0.2)
    first = ops.convert_to_numpy(layer(x, training=True))
    np.testing.assert_allclose(ops.convert_to_numpy(layer.log_alpha), [start] * 6, rtol=1e-6)
    assert len({tuple(row) for row in first}) > 1  # rows draw their own gates
    assert 0.0 < first.mean() < 1.0
    fixed = ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(fixed, np.clip(0.8 * 1.2 - 0.1, 0, 1), rtol=1e-6)


def test_a_gated_model_saves_loads_and_folds_into_a_plain_network(tmp_path):
    import common  # noqa: F401  (registers UnitGates for loading)

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), UnitGates(), keras.layers.Dense(4, "relu"),
                              UnitGates(), keras.layers.Dense(1)])
    first, second = model.layers[0], model.layers[2]
    first.log_alpha.assign(np.array([3.0, -5.0, 0.5, 3.0, -3.0], np.float32))  # 2 closed
    second.log_alpha.assign(np.array([-4.0, 3.0, 1.0, 3.0], np.float32))  # 1 closed
    x = np.random.default_rng(2).normal(size=(30, 5)).astype(np.float32)
    path = tmp_path / "gated.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6)
    plain = fold_gates(model)
    assert [type(layer).__name__ for layer in plain.layers] == ["Dense", "Dense"]
    # A NumPy forward pass with the gates applied by hand, against the folded network.
    weights = [ops.convert_to_numpy(weight) for weight in model.layers[1].weights +
               model.layers[3].weights]
    gate_values = [np.clip(1 / (1 + np.exp(-ops.convert_to_numpy(layer.log_alpha)))
                           * 1.2 - 0.1, 0, 1) for layer in (first, second)]
    hidden = np.maximum((x * gate_values[0]) @ weights[0] + weights[1], 0)
    expected = (hidden * gate_values[1]) @ weights[2] + weights[3]
    np.testing.assert_allclose(plain.predict(x, verbose=0), expected, atol=1e-5)
    counts = count_active_units(plain, 1e-3)
    assert counts.as_dict() == {"inputs": 3, "hidden": [3]}
    pruned, report = prune_model(plain, 1e-3)
    assert report.architecture == "5-4-1 → 3-3-1"
    np.testing.assert_allclose(
        numpy_forward(pruned.get_weights(), x[:, report.kept_inputs]), expected, atol=1e-5)


def test_fold_gates_refuses_what_it_cannot_fold():
    dropout = keras.Sequential([keras.Input((3,)), keras.layers.Dropout(0.1),
                                keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="UnitGates and Dense layers"):
        fold_gates(dropout)
    trailing = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), UnitGates()])
    with pytest.raises(ValueError, match="no Dense layer after it"):
        fold_gates(trailing)
