"""The adaptive (weighted) group Lasso: the weighted penalty and its proximal step against
NumPy float64, the weights against their formula, and the weights saved with the model."""

import math

import keras
import numpy as np
import pytest

from common.penalties import GroupSparse, adaptive_weights, group_lasso
from common.proximal import prox_group_sparse

pytestmark = pytest.mark.backends  # the Keras side: every backend


def weighted_prox_reference(v, step, group, weights):
    """Row by row in float64, with per-weight steps: zero when ||D v_g|| <= c_g, else the
    radius r solving sum_i (d_i v_i / (d_i r + c_g))**2 = 1 by bisection."""
    inverse = 1.0 / np.broadcast_to(step, v.shape)
    out = np.zeros_like(v)
    for row in range(v.shape[0]):
        c = group * weights[row] * math.sqrt(v.shape[1])
        scaled = inverse[row] * v[row]
        if np.linalg.norm(scaled) <= c:
            continue
        low, high = 0.0, np.linalg.norm(v[row])
        for _ in range(200):
            radius = (low + high) / 2
            if np.sum((scaled / (inverse[row] * radius + c)) ** 2) > 1:
                low = radius
            else:
                high = radius
        out[row] = scaled * radius / (inverse[row] * radius + c)
    return out


def test_the_weighted_penalty_matches_numpy():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(7, 4))
    weights = rng.uniform(0.1, 5, size=7)
    expected = math.sqrt(4) * np.sum(weights * np.linalg.norm(kernel, axis=1))
    assert float(group_lasso(kernel.astype("float32"), weights)) == pytest.approx(expected,
                                                                                  rel=1e-5)
    regularizer = GroupSparse(0.3, l1=0.1, weights=weights)
    assert float(regularizer(kernel.astype("float32"))) == pytest.approx(
        0.3 * expected + 0.1 * np.abs(kernel).sum(), rel=1e-5)


@pytest.mark.parametrize("per_weight", [False, True])
def test_the_weighted_prox_uses_one_threshold_per_row(per_weight):
    rng = np.random.default_rng(1)
    for _ in range(20):
        v = rng.normal(size=(6, 5)) * rng.uniform(0.05, 1)
        step = 10.0 ** rng.uniform(-3, 0, size=v.shape) if per_weight else 0.1
        weights = 10.0 ** rng.uniform(-1, 1, size=6)
        group = rng.uniform(0.01, 0.5)
        got = np.asarray(prox_group_sparse(
            v.astype("float32"), np.asarray(step, "float32") if per_weight else step,
            group_strength=group, weights=weights.astype("float32")))
        expected = weighted_prox_reference(v, step, group, weights)
        np.testing.assert_allclose(got, expected, atol=2e-6 * max(1, np.abs(expected).max()))
        assert np.all(got[np.all(expected == 0, axis=1)] == 0)


def test_the_weighted_prox_satisfies_its_optimality_condition():
    """At the answer w: a zero row has ||v_g - 0|| / t <= c_g; a live row has
    (v_g - w_g) / t = c_g * w_g / ||w_g|| (the gradient of c_g ||w_g||), in float64."""
    rng = np.random.default_rng(2)
    v = rng.normal(size=(10, 4)) * 0.1
    weights = 10.0 ** rng.uniform(-1, 1, size=10)
    step, group = 0.2, 0.4
    w = np.asarray(prox_group_sparse(v.astype("float32"), step, group_strength=group,
                                     weights=weights.astype("float32")), np.float64)
    c = group * weights * math.sqrt(4)
    for row in range(10):
        if np.all(w[row] == 0):
            assert np.linalg.norm(v[row]) / step <= c[row] * (1 + 1e-5)
        else:
            np.testing.assert_allclose((v[row] - w[row]) / step,
                                       c[row] * w[row] / np.linalg.norm(w[row]), rtol=1e-4)
    assert 0 < np.sum(np.all(w == 0, axis=1)) < 10  # the weights matter here


def test_adaptive_weights_are_inverse_norms_and_zero_rows_stay_removed():
    kernel = np.array([[3.0, 4.0], [0.0, 0.0], [0.6, 0.8], [0.0, 0.5]], np.float32)
    weights = adaptive_weights(kernel, gamma=1.0)
    np.testing.assert_allclose(weights[0::2], [1 / 5, 1 / 1], rtol=1e-6)
    assert weights[3] == pytest.approx(2.0) and weights[1] == pytest.approx(1e3 * 2.0)
    np.testing.assert_allclose(adaptive_weights(kernel, gamma=2.0)[0], 1 / 25, rtol=1e-6)
    # A zero row stays zero under the proximal step whatever a moderate data gradient does.
    moved = kernel + 0.05
    out = np.asarray(prox_group_sparse(moved, 0.1, group_strength=0.1, weights=weights))
    assert np.all(out[1] == 0) and np.all(out[0] != 0)


def test_weights_are_saved_and_loaded_with_the_model(tmp_path):
    weights = [0.5, 2.0, 1.0]
    model = keras.Sequential([keras.Input((3,)),
                              keras.layers.Dense(2, kernel_regularizer=GroupSparse(
                                  1e-2, proximal=True, weights=weights))])
    model.save(tmp_path / "weighted.keras")
    loaded = keras.saving.load_model(tmp_path / "weighted.keras")
    regularizer = loaded.layers[0].kernel_regularizer
    assert regularizer.weights == tuple(weights) and regularizer.proximal
    kernel = keras.ops.convert_to_numpy(loaded.layers[0].kernel).astype(np.float64)
    expected = 1e-2 * math.sqrt(2) * np.sum(np.array(weights) * np.linalg.norm(kernel, axis=1))
    assert float(regularizer.value(loaded.layers[0].kernel)) == pytest.approx(expected, rel=1e-5)


def test_bad_weights_are_refused():
    with pytest.raises(ValueError, match="weights"):
        GroupSparse(1e-3, weights=[1.0, -1.0])
