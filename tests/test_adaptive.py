"""The adaptive (weighted) group Lasso: the weighted penalty and its proximal step against
NumPy float64, the weights against their formula, and the weights saved with the model."""

import math

import keras
import numpy as np
import pytest

from common.run.config import load_or_exit, parse_config
from common.penalty.penalties import GroupSparse, adaptive_weights, group_lasso
from common.penalty.proximal import prox_group_sparse
from tests.helpers import group_prox_reference, raw_inputs

pytestmark = pytest.mark.backends  # the Keras side: every backend


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
        expected = group_prox_reference(v, step, group, weights)
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


# ---------------------------------------------------------------- stages in a model
def relu_net_loss(weights, x, y):
    """Mean squared error of a ReLU network in NumPy float64 (the oracle's forward pass)."""
    out = x
    for index in range(0, len(weights), 2):
        out = out @ weights[index] + weights[index + 1]
        if index + 2 < len(weights):
            out = np.maximum(out, 0.0)
    return np.mean(np.sum((out - y) ** 2, axis=1))


def test_layer_lambda_max_against_finite_differences(boston):
    """Each kernel's lambda_max: the largest ||dL/dW_g|| / (sqrt(n) a_g) with W_g = 0,
    the gradient by central differences of a float64 NumPy forward pass."""
    from common.search.adaptive import set_adaptive_weights
    from common.training.model import build_model
    from common.search.path import layer_lambda_max

    keras.utils.set_random_seed(3)
    model = build_model(boston, (5, 4), GroupSparse(1e-3))
    x, y = boston.x_train[:60], boston.y_train[:60]
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    model.fit(x, y, epochs=30, batch_size=60, verbose=0)
    weights = set_adaptive_weights(model, gamma=1.0)
    tops = layer_lambda_max(model, x, y, boston.task)
    trained = [np.asarray(w, np.float64) for w in model.get_weights()]
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    for layer, top in enumerate(tops):
        kernel = trained[2 * layer]
        expected = 0.0
        for row in range(kernel.shape[0]):
            base = [w.copy() for w in trained]
            base[2 * layer][row] = 0.0
            gradient = np.zeros(kernel.shape[1])
            for column in range(kernel.shape[1]):
                plus, minus = [w.copy() for w in base], [w.copy() for w in base]
                plus[2 * layer][row, column] += 1e-6
                minus[2 * layer][row, column] -= 1e-6
                gradient[column] = (relu_net_loss(plus, x64, y64)
                                    - relu_net_loss(minus, x64, y64)) / 2e-6
            expected = max(expected, np.linalg.norm(gradient)
                           / (math.sqrt(kernel.shape[1]) * weights[layer][row]))
        assert top == pytest.approx(expected, rel=2e-3)


def test_adaptive_stage_weighs_the_trained_kernels_and_fit_uses_the_weights(boston):
    """set_adaptive_weights splits a shared regularizer, sets 1/||W_g|| per row, and the next
    fit's recorded penalty is the weighted one (the compiled step was traced again)."""
    from common.search.adaptive import set_adaptive_weights
    from common.training.model import build_model
    from common.training.monitor import UnitHistory

    keras.utils.set_random_seed(0)
    shared = GroupSparse(1e-3)
    model = build_model(boston, (8,), shared)
    history = UnitHistory(model, boston.task, 1e-3)
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=[history.recorder])
    fit = dict(x=boston.x_train, y=boston.y_train, batch_size=len(boston.x_train), verbose=0,
               callbacks=[history], shuffle=False)
    model.fit(epochs=5, **fit)
    before = [keras.ops.convert_to_numpy(layer.kernel).astype(np.float64)
              for layer in model.layers]
    weights = set_adaptive_weights(model, gamma=1.0)
    regularizers = [layer.kernel_regularizer for layer in model.layers]
    assert regularizers[0] is not regularizers[1]
    for kernel, row_weights in zip(before, weights):
        np.testing.assert_allclose(row_weights, 1 / np.linalg.norm(kernel, axis=1), rtol=1e-5)
    model.fit(epochs=1, **fit)
    after = [keras.ops.convert_to_numpy(layer.kernel).astype(np.float64)
             for layer in model.layers]
    expected = sum(1e-3 * math.sqrt(k.shape[1]) * np.sum(np.array(w) * np.linalg.norm(k, axis=1))
                   for k, w in zip(after, weights))
    assert history.records["penalty"][-1] == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("demo_name", [
    pytest.param("demo_tensorflow", marks=pytest.mark.tensorflow_only), "demo_keras"])
def test_adaptive_path_then_fine_tuning_end_to_end(demo_name, tmp_path):
    """The path with adaptive weights, the chosen network pruned and fine-tuned with early
    stopping on validation (a stage of the run, not of its ending): all in run.json."""
    import importlib

    demo = importlib.import_module(demo_name)
    finetune_epochs = 3000
    summary = demo.main(["--path", "--adaptive", "--epochs", "100", "--path-epochs", "25",
                         "--path-points", "4", "--finetune", str(finetune_epochs),
                         "--patience", "30", "--no-show", "--logdir", str(tmp_path)])
    assert summary["status"] == "completed" and summary["adaptive_gamma"] == 1.0
    pruned = summary["pruned"]
    assert 0 < pruned["finetuned_epochs"] < finetune_epochs  # early stopping on validation
    assert set(pruned["finetuned_test"]) == set(summary["test"])
    (run_dir,) = tmp_path.iterdir()
    chosen = keras.saving.load_model(run_dir / "pruned.keras")
    tuned = keras.saving.load_model(run_dir / "pruned_finetuned.keras")
    dense = [[layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
             for model in (chosen, tuned)]
    assert [layer.units for layer in dense[1]] == [layer.units for layer in dense[0]]
    assert not np.allclose(dense[1][0].kernel, dense[0][0].kernel)
    # The fine-tuned network's reported test metric is its own, recomputed here.
    data = load_or_exit(parse_config(["--path"]))  # the run's split: seed 0, --path
    kept = [data.feature_names.index(name) for name in summary["surviving_features"]]
    predictions = tuned.predict(raw_inputs(data, data.x_test, kept), verbose=0)  # in $1000s
    truth = data.inverse_transform_target(data.y_test)
    rmse = float(np.sqrt(np.mean((np.asarray(predictions, np.float64) - truth) ** 2)))
    assert rmse == pytest.approx(pruned["finetuned_test"]["rmse"], rel=1e-4)


# ---------------------------------------------------------------- group MCP
def mcp_numpy(norm, c, gamma):
    """One row's MCP at norm(s) `norm` (a number or an array of radii)."""
    return np.where(norm <= gamma * c, c * norm - norm**2 / (2 * gamma), gamma * c**2 / 2)


def test_group_mcp_matches_numpy_and_saves():
    from common.penalty.penalties import group_mcp

    rng = np.random.default_rng(4)
    kernel = rng.normal(size=(8, 3)) * rng.uniform(0.01, 2, size=(8, 1))
    weights = rng.uniform(0.5, 2, size=8)
    c = 0.3 * math.sqrt(3) * weights
    expected = sum(mcp_numpy(np.linalg.norm(row), cg, 2.5) for row, cg in zip(kernel, c))
    assert float(group_mcp(kernel.astype("float32"), 0.3, 2.5, weights)) == pytest.approx(
        expected, rel=1e-5)
    regularizer = GroupSparse(0.3, l1=0.01, weights=weights, mcp_gamma=2.5)
    assert float(regularizer(kernel.astype("float32"))) == pytest.approx(
        expected + 0.01 * np.abs(kernel).sum(), rel=1e-5)
    assert GroupSparse.from_config(regularizer.get_config()).mcp_gamma == 2.5


def test_group_mcp_prox_with_one_step_is_the_exact_minimizer():
    """Against a float64 grid search over each row's radius (the minimizer lies along v):
    argmin_r (r - ||v||)**2 / (2 t) + MCP(r)."""
    rng = np.random.default_rng(5)
    v = rng.normal(size=(12, 4)) * rng.uniform(0.01, 1.5, size=(12, 1))
    t, strength, gamma = 0.2, 0.25, 3.0
    got = np.asarray(prox_group_sparse(v.astype("float32"), t, group_strength=strength,
                                       mcp_gamma=gamma), np.float64)
    c = strength * math.sqrt(4)
    for row in range(12):
        norm = np.linalg.norm(v[row])
        radii = np.linspace(0, norm, 200001)
        objective = (radii - norm) ** 2 / (2 * t) + mcp_numpy(radii, c, gamma)
        best = radii[np.argmin(objective)]
        assert np.linalg.norm(got[row]) == pytest.approx(best, abs=2e-5 + 1e-5 * norm)
    sizes = np.linalg.norm(v, axis=1)
    assert np.any(sizes > gamma * c) and np.any(sizes < t * c)  # every regime was hit
    np.testing.assert_allclose(got[sizes > gamma * c], v[sizes > gamma * c], rtol=1e-6)


def test_group_mcp_with_per_weight_steps_is_one_local_linear_step():
    """With Adam's per-weight steps: the weighted group Lasso prox with each row's threshold
    scaled by MCP's slope max(0, 1 - ||v_g|| / (gamma c_g)) (tests.helpers.group_prox_reference)."""
    rng = np.random.default_rng(6)
    v = rng.normal(size=(10, 5)) * rng.uniform(0.05, 1, size=(10, 1))
    step = 10.0 ** rng.uniform(-2, -0.5, size=v.shape)
    strength, gamma = 0.2, 3.0
    c = strength * math.sqrt(5)
    slopes = np.maximum(1 - np.linalg.norm(v, axis=1) / (gamma * c), 0)
    got = np.asarray(prox_group_sparse(v.astype("float32"), step.astype("float32"),
                                       group_strength=strength, mcp_gamma=gamma))
    expected = group_prox_reference(v, step, strength, slopes)
    np.testing.assert_allclose(got, expected, atol=2e-6 * max(1, np.abs(expected).max()))


@pytest.mark.slow
@pytest.mark.tensorflow_only
def test_preset_compact_runs_the_relaxed_adaptive_path(tmp_path):
    """--preset compact end to end: adaptive weights from the dense start, every path point
    fine-tuned before it is scored on validation, and the chosen network fine-tuned."""
    import demo_tensorflow

    summary = demo_tensorflow.main(["--preset", "compact", "--epochs", "100", "--path-epochs",
                                    "20", "--path-points", "3", "--finetune", "200",
                                    "--val-fraction", "0.2", "--logdir", str(tmp_path)])
    assert summary["status"] == "completed" and summary["adaptive_gamma"] == 1.0
    assert summary["config"]["patience"] == 50 and summary["path"]
    # The preset's --cv 5 is checked in tests/test_config.py and run in test_crossval.py;
    # --val-fraction keeps this run on one split, to keep it short.
    assert "cv" not in summary and summary["selected"]["rule"] == "1se"
    assert set(summary["pruned"]["finetuned_test"]) == set(summary["test"])
    assert 0 < summary["pruned"]["finetuned_epochs"] <= 200
