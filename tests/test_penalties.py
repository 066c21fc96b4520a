"""The penalty against NumPy, its gradient against finite differences, and the regularizer."""

import math

import keras
import numpy as np
import pytest
from keras import ops

from common import GroupSparse, group_lasso, sparse_group_lasso
from common.training.gradients import gradient_numpy
from common.penalty.penalties import penalty_value
from tests.helpers import float64

pytestmark = pytest.mark.backends  # the Keras side: every backend



def numpy_group_lasso(kernel):
    """Reference: one group per input unit (axis -2), everything else in the group."""
    groups = np.moveaxis(kernel, -2, 0).reshape(kernel.shape[-2], -1)
    return math.sqrt(groups.shape[1]) * np.sum(np.sqrt(np.sum(groups**2, axis=1)))


@pytest.mark.parametrize("shape", [(13, 20), (20, 15), (15, 1), (3, 3, 4, 8), (5, 2, 6)])
def test_group_lasso_matches_numpy(shape):
    kernel = np.random.default_rng(sum(shape)).normal(size=shape).astype(np.float32)
    expected = numpy_group_lasso(kernel.astype(np.float64))
    assert float(group_lasso(kernel)) == pytest.approx(expected, rel=1e-5)
    assert float(sparse_group_lasso(kernel)) == pytest.approx(
        expected + np.abs(kernel).sum(), rel=1e-5)


def test_original_hand_example():
    kernel = np.array([[0, 0.1], [-0.3, 0.6], [0, 0]], dtype=np.float32)
    expected = math.sqrt(2) * (0.1 + math.sqrt(0.45))
    assert float(group_lasso(kernel)) == pytest.approx(expected, rel=1e-6)


def test_conv_group_is_everything_leaving_one_input_channel():
    kernel = np.zeros((3, 3, 4, 8), np.float32)
    kernel[:, :, 1, :] = 1.0  # only input channel 1 is alive: one group of 3*3*8 weights
    assert float(group_lasso(kernel)) == pytest.approx(math.sqrt(72) * math.sqrt(72), rel=1e-6)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 4))
    regularizer = GroupSparse(group_strength=0.7, l1=0.2, l2=0.1)
    with float64():
        kernel = keras.Variable(base, dtype="float64")
        gradient, = gradient_numpy(lambda: regularizer(kernel), [kernel])
        step = 1e-6
        numeric = np.zeros_like(base)
        for index in np.ndindex(base.shape):
            plus, minus = base.copy(), base.copy()
            plus[index] += step
            minus[index] -= step
            numeric[index] = (float(regularizer(ops.convert_to_tensor(plus))) -
                              float(regularizer(ops.convert_to_tensor(minus)))) / (2 * step)
    assert gradient.dtype == np.float64
    np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-7)


def test_conv_kernel_gradient_matches_finite_differences_and_is_zero_on_a_zero_channel():
    # The written-out gradient broadcasts one value per input channel over the whole group.
    rng = np.random.default_rng(1)
    base = rng.normal(size=(2, 3, 4, 5))
    base[:, :, 2, :] = 0.0  # input channel 2 removed
    with float64():
        kernel = keras.Variable(base, dtype="float64")
        gradient, = gradient_numpy(lambda: group_lasso(kernel), [kernel])
        step, numeric = 1e-6, np.zeros_like(base)
        for index in np.ndindex(base.shape):
            if index[2] == 2:
                continue  # not differentiable there: the subgradient 0 is checked below
            plus, minus = base.copy(), base.copy()
            plus[index] += step
            minus[index] -= step
            numeric[index] = (numpy_group_lasso(plus) - numpy_group_lasso(minus)) / (2 * step)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-7)
    assert np.all(gradient[:, :, 2, :] == 0.0)


def test_gradient_is_finite_at_a_zero_group():
    kernel = keras.Variable([[0.0, 0.0], [0.3, -0.4], [0.0, 0.0]])
    gradient, = gradient_numpy(lambda: group_lasso(kernel), [kernel])
    assert np.all(np.isfinite(gradient))
    np.testing.assert_allclose(gradient[0], 0.0)
    # d/dw of sqrt(2) * ||w|| is sqrt(2) * w / ||w|| on the live row.
    np.testing.assert_allclose(gradient[1], math.sqrt(2) * np.array([0.6, -0.8]), rtol=1e-6)
    # The plain formula really is NaN there: the reason for the safe norm.
    naive, = gradient_numpy(lambda: ops.sum(ops.sqrt(ops.sum(kernel**2, axis=1))), [kernel])
    assert np.isnan(naive).any()


@pytest.mark.parametrize("argument", ["group_strength", "l1", "l2"])
@pytest.mark.parametrize("bad", [-1e-3, float("nan"), float("inf"), "strong"])
def test_bad_strength_raises_value_error_naming_the_argument(argument, bad):
    with pytest.raises(ValueError, match=argument):
        GroupSparse(**{argument: bad})


def test_regularizer_value_and_config():
    kernel = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    regularizer = GroupSparse(group_strength=1e-2, l1=1e-3, l2=1e-4)
    expected = (1e-2 * numpy_group_lasso(kernel) + 1e-3 * np.abs(kernel).sum()
                + 1e-4 * np.square(kernel).sum())
    assert float(regularizer(kernel)) == pytest.approx(expected, rel=1e-5)
    rebuilt = GroupSparse.from_config(regularizer.get_config())
    assert rebuilt.get_config() == {"group_strength": 1e-2, "l1": 1e-3, "l2": 1e-4,
                                    "proximal": False, "weights": None, "mcp_gamma": None}
    # Files saved before the strength was renamed name it "group".
    legacy = GroupSparse.from_config({"group": 2e-2, "l1": 0.0, "l2": 0.0, "proximal": True})
    assert legacy.group_strength == 2e-2 and legacy.proximal
    assert keras.regularizers.deserialize(keras.regularizers.serialize(regularizer)).l1 == 1e-3


def test_a_proximal_regularizer_adds_nothing_to_the_loss_but_keeps_its_value():
    kernel = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)
    subgradient = GroupSparse(group_strength=1e-2, l1=1e-3)
    proximal = GroupSparse(group_strength=1e-2, l1=1e-3, proximal=True)
    assert float(proximal(kernel)) == 0.0
    assert float(proximal.value(kernel)) == pytest.approx(float(subgradient(kernel)), rel=1e-7)
    rebuilt = keras.regularizers.deserialize(keras.regularizers.serialize(proximal))
    assert rebuilt.proximal and rebuilt.group_strength == 1e-2


def test_penalty_value_sums_every_regularized_weight():
    keras.utils.set_random_seed(4)
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(3, kernel_regularizer=GroupSparse(0.01, proximal=True)),
        keras.layers.Dense(2, kernel_regularizer=keras.regularizers.L2(0.1)),
        keras.layers.Dense(1)])
    kernels = [layer.kernel.numpy() for layer in model.layers]
    expected = 0.01 * numpy_group_lasso(kernels[0]) + 0.1 * np.square(kernels[1]).sum()
    assert float(penalty_value(model)) == pytest.approx(expected, rel=1e-6)
    assert float(sum(model.losses)) == pytest.approx(0.1 * np.square(kernels[1]).sum(), rel=1e-6)


def test_model_with_group_sparse_saves_and_loads_with_the_same_penalty(tmp_path):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)),
                              keras.layers.Dense(3, kernel_regularizer=GroupSparse(0.01, l1=0.002)),
                              keras.layers.Dense(1, kernel_regularizer=GroupSparse(0.02))])
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.layers[0].kernel_regularizer, GroupSparse)
    # The loaded penalty against NumPy on the loaded kernels, not against the original model.
    first, second = (layer.kernel.numpy().astype(np.float64) for layer in loaded.layers)
    expected = (0.01 * numpy_group_lasso(first) + 0.002 * np.abs(first).sum()
                + 0.02 * numpy_group_lasso(second))
    assert float(sum(loaded.losses)) == pytest.approx(expected, rel=1e-6)
