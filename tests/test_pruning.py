"""Pruning: the smaller model predicts what the thresholded original predicts."""

import keras
import numpy as np
import pytest

from common import GroupSparse, prune_model
from tests.helpers import run_script

# The oracle: the trained weights with every inactive row zeroed, run forward in NumPy.
# It shares no code with common.shrink.pruning (which builds a smaller Keras model instead).
ACTIVATIONS = {
    None: lambda z: z, "linear": lambda z: z, "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "softmax": lambda z: np.exp(z - z.max(axis=1, keepdims=True))
    / np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1, keepdims=True),
}

pytestmark = pytest.mark.backends  # the Keras side: every backend



def numpy_forward(weights, activations, x, threshold):
    out = np.asarray(x, np.float64)
    for layer, activation in enumerate(activations):
        kernel = np.array(weights[2 * layer], np.float64)
        kernel[np.abs(kernel).sum(axis=1) <= threshold] = 0.0
        out = ACTIVATIONS[activation](out @ kernel + weights[2 * layer + 1])
    return out


def dense_model(widths, activations, weights):
    model = keras.Sequential([keras.Input((widths[0],))])
    for width, activation in zip(widths[1:], activations):
        model.add(keras.layers.Dense(width, activation=activation,
                                     kernel_regularizer=GroupSparse(1e-3)))
    model.set_weights(weights)
    model.test_activations, model.test_weights = activations, weights  # for the oracle
    return model


def assert_same_predictions(model, pruned, report, threshold=1e-3, rows=200, seed=0):
    x = np.random.default_rng(seed).uniform(-1, 1, size=(rows, model.input_shape[1]))
    x = x.astype(np.float32)
    expected = numpy_forward(model.test_weights, model.test_activations, x, threshold)
    got = pruned.predict(x[:, report.kept_inputs], verbose=0)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_hand_built_dead_rows_and_constant_unit_fold():
    rng = np.random.default_rng(0)
    first, second, third = (rng.normal(size=shape).astype(np.float32)
                            for shape in [(5, 4), (4, 3), (3, 2)])
    first[1] = 0.0  # input 1 is dead
    second[2] = 0.0  # hidden_1 unit 2 is dead
    first[:, 0] = 0.0  # hidden_1 unit 0 has no incoming weight: outputs relu(bias) constantly
    biases = [np.array([0.7, 0.1, -0.2, 0.3], np.float32), rng.normal(size=3).astype(np.float32),
              rng.normal(size=2).astype(np.float32)]
    model = dense_model([5, 4, 3, 2], ["relu", "relu", None],
                        [first, biases[0], second, biases[1], third, biases[2]])
    pruned, report = prune_model(model, 1e-3, feature_names=list("abcde"))
    assert report.architecture == "5-4-3-2 → 4-2-3-2"
    assert report.kept_inputs == [0, 2, 3, 4] and report.kept_feature_names == list("acde")
    assert report.folded_units == 1
    assert report.params_before == 5 * 4 + 4 + 4 * 3 + 3 + 3 * 2 + 2
    assert report.params_after == pruned.count_params() == 4 * 2 + 2 + 2 * 3 + 3 + 3 * 2 + 2
    # The fold: hidden_2's bias took relu(0.7) times unit 0's outgoing row.
    np.testing.assert_allclose(pruned.layers[1].bias.numpy(), biases[1] + 0.7 * second[0],
                               rtol=1e-6)
    assert_same_predictions(model, pruned, report)


@pytest.mark.parametrize("seed", range(6))
def test_random_models_with_random_rows_zeroed(seed):
    rng = np.random.default_rng(seed)
    widths = [int(rng.integers(3, 12)) for _ in range(4)]
    activations = ["relu", "tanh", "softmax"] if seed % 2 else ["relu", "relu", None]
    weights = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        kernel = rng.normal(size=(fan_in, fan_out)).astype(np.float32)
        kernel[rng.random(fan_in) < 0.4] = rng.uniform(0, 1e-3 / fan_out)  # inactive rows
        weights += [kernel, rng.normal(size=fan_out).astype(np.float32)]
    model = dense_model(widths, activations, weights)
    pruned, report = prune_model(model, 1e-3)
    assert report.params_after <= report.params_before
    assert_same_predictions(model, pruned, report, seed=seed)


def test_nothing_prunable_keeps_the_architecture_and_says_so():
    rng = np.random.default_rng(1)
    weights = [rng.normal(size=shape).astype(np.float32) for shape in [(3, 4), (4,), (4, 1), (1,)]]
    model = dense_model([3, 4, 1], ["relu", None], weights)
    pruned, report = prune_model(model)
    assert report.architecture_after == report.architecture_before == [3, 4, 1]
    assert any("nothing to prune" in note for note in report.notes)
    assert_same_predictions(model, pruned, report)


def test_a_dead_hidden_layer_leaves_a_correct_constant_model(tmp_path):
    rng = np.random.default_rng(2)
    first = rng.normal(size=(4, 3)).astype(np.float32)
    second = np.zeros((3, 2), np.float32)  # every hidden unit's outgoing row is zero
    model = dense_model([4, 3, 2], ["relu", "softmax"],
                        [first, np.ones(3, np.float32), second, np.array([0.5, -0.5], np.float32)])
    pruned, report = prune_model(model)
    assert any("predicts a constant" in note for note in report.notes)
    assert report.kept_inputs == [0] and report.params_after == 1 * 2 + 2
    assert_same_predictions(model, pruned, report)
    pruned.save(tmp_path / "constant.keras")
    loaded = keras.saving.load_model(tmp_path / "constant.keras")
    np.testing.assert_allclose(loaded.predict(np.full((3, 1), 5.0, np.float32), verbose=0),
                               [[0.7310586, 0.26894143]] * 3, rtol=1e-5)


def test_pruned_model_loads_with_plain_keras_and_has_no_regularizer(tmp_path):
    rng = np.random.default_rng(3)
    first = rng.normal(size=(6, 5)).astype(np.float32)
    first[[0, 4]] = 0.0
    weights = [first, np.zeros(5, np.float32), rng.normal(size=(5, 1)).astype(np.float32),
               np.zeros(1, np.float32)]
    model = dense_model([6, 5, 1], ["relu", None], weights)
    pruned, report = prune_model(model)
    assert all(layer.kernel_regularizer is None for layer in pruned.layers)
    pruned.save(tmp_path / "pruned.keras")
    x = rng.uniform(-1, 1, size=(7, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x[:, report.kept_inputs])
    np.save(tmp_path / "expected.npy", pruned.predict(x[:, report.kept_inputs], verbose=0))
    # A fresh interpreter that never imports this repository's code.
    check = ("import numpy as np, keras, sys\n"
             f"m = keras.saving.load_model(r'{tmp_path / 'pruned.keras'}')\n"
             f"p = m.predict(np.load(r'{tmp_path / 'x.npy'}'), verbose=0)\n"
             f"assert np.allclose(p, np.load(r'{tmp_path / 'expected.npy'}'), atol=1e-6)\n"
             "assert 'common' not in sys.modules\nprint('ok')\n")
    result = run_script("-c", check, cwd=tmp_path)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


def test_scaling_layers_are_carried_through_and_the_inputs_keep_their_statistics(tmp_path):
    """A saved network that takes raw values (Normalization before the Dense chain) and
    predicts in raw units (an inverted Normalization after it) prunes to one that still
    does: the input layer keeps the kept features' means and variances. NumPy is the oracle."""
    from common.shrink.pruning import with_scaling

    rng = np.random.default_rng(11)
    first = rng.normal(size=(6, 5)).astype(np.float32)
    first[[1, 4]] = 0.0  # features 1 and 4 are switched off
    weights = [first, rng.normal(size=5).astype(np.float32),
               rng.normal(size=(5, 1)).astype(np.float32), np.float32([0.3])]
    center, spread = rng.normal(size=6) * 50, rng.uniform(1, 30, size=6)
    model = with_scaling(dense_model([6, 5, 1], ["relu", None], weights), center, spread,
                         22.5, 45.0)
    pruned, report = prune_model(model)
    assert report.kept_inputs == [0, 2, 3, 5]
    assert [type(layer).__name__ for layer in pruned.layers] == [
        "Normalization", "Dense", "Dense", "Normalization"]
    pruned.save(tmp_path / "pruned.keras")
    loaded = keras.saving.load_model(tmp_path / "pruned.keras", safe_mode=True)
    raw = rng.normal(size=(50, 6)) * spread * 2 + center
    hidden = np.maximum((raw - center) / spread @ first.astype(np.float64) + weights[1], 0)
    expected = (hidden @ weights[2].astype(np.float64) + weights[3]) * 45.0 + 22.5
    got = loaded.predict(raw[:, report.kept_inputs].astype(np.float32), verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="'misplaced' is a Normalization where it cannot be"):
        prune_model(keras.Sequential([keras.Input((2,)), keras.layers.Dense(3),
                                      keras.layers.Normalization(mean=0.0, variance=1.0),
                                      keras.layers.Normalization(mean=0.0, variance=1.0,
                                                                 name="misplaced")]))


def test_a_scalar_input_normalization_is_carried_through_per_kept_feature():
    """A Normalization with one mean and variance for every input still prunes: the kept
    inputs each get that statistic. NumPy is the oracle."""
    rng = np.random.default_rng(4)
    first = rng.normal(size=(4, 3)).astype(np.float32)
    first[1] = 0.0
    weights = [first, np.zeros(3, np.float32), rng.normal(size=(3, 1)).astype(np.float32),
               np.zeros(1, np.float32)]
    model = dense_model([4, 3, 1], ["relu", None], weights)
    scaled = keras.Sequential([keras.Input((4,)),
                               keras.layers.Normalization(mean=2.0, variance=9.0),
                               *model.layers])
    pruned, report = prune_model(scaled)
    assert report.kept_inputs == [0, 2, 3]
    raw = rng.normal(size=(20, 4)) * 3 + 2
    expected = np.maximum((raw - 2) / 3 @ first.astype(np.float64), 0) @ weights[2]
    got = pruned.predict(raw[:, report.kept_inputs].astype(np.float32), verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
