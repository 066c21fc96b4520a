"""The proximal solver: the operator against closed forms and a float64 solver, the optimizer
wrapper against a hand-made Adam step, and short proximal runs of both demos."""

import csv
import json
import math

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import demo_keras
import demo_tensorflow
from common.training.gradients import value_and_gradients
from common.training.model import build_model
from common.penalty.penalties import GroupSparse, penalty_value
from common.penalty.proximal import prox_group_sparse
from common.penalty.proximal_optimizer import ProximalOptimizer
from tests.helpers import group_prox_reference, steps_per_call

pytestmark = pytest.mark.backends  # the Keras side: every backend (the TF demo test skips)



def prox(v, step, group=0.0, **strengths):
    step = step if np.isscalar(step) else np.asarray(step, np.float32)
    return np.asarray(prox_group_sparse(np.asarray(v, np.float32), step, group_strength=group,
                                        **strengths))


def penalty_np(w, group=0.0, l1=0.0, l2=0.0):
    w = np.asarray(w, np.float64)
    return (group * math.sqrt(w.shape[1]) * np.linalg.norm(w, axis=1).sum()
            + l1 * np.abs(w).sum() + l2 * np.square(w).sum())


# ---------------------------------------------------------------- closed forms
def test_a_group_under_the_threshold_becomes_exactly_zero():
    # Rows of length 4: threshold t * lambda * sqrt(4) = 0.1 * 0.5 * 2 = 0.1.
    v = np.array([[0.03, -0.04, 0.0, 0.0],   # norm 0.05 < 0.1: dropped
                  [0.3, 0.4, 0.0, 0.0]])     # norm 0.5: shrunk by 1 - 0.1 / 0.5
    w = prox(v, 0.1, group=0.5)
    assert np.all(w[0] == 0.0)
    np.testing.assert_allclose(w[1], 0.8 * v[1], rtol=1e-6)


def test_a_group_exactly_at_the_threshold_is_dropped():
    w = prox([[0.06, 0.08, 0.0, 0.0]], 0.1, group=0.5)  # norm 0.1 == threshold
    assert np.all(w == 0.0)


def test_sparse_group_lasso_is_l1_then_group():
    v = np.array([[0.5, -0.02, 0.3], [0.05, 0.04, -0.03], [-1.0, 0.2, 0.01]])
    step, group, l1 = 0.2, 0.4, 0.1
    soft = np.sign(v) * np.maximum(np.abs(v) - step * l1, 0)  # threshold 0.02 per weight
    norms = np.linalg.norm(soft, axis=1, keepdims=True)
    expected = soft * np.maximum(0, 1 - step * group * math.sqrt(3) / np.maximum(norms, 1e-12))
    np.testing.assert_allclose(prox(v, step, group=group, l1=l1), expected, atol=1e-7)
    # The middle row survives L1 but not the group step; the first loses its -0.02.
    assert np.all(expected[1] == 0) and expected[0, 1] == 0


def test_l2_alone_is_a_scaling():
    v = np.array([[1.0, -2.0], [0.5, 0.25]])
    np.testing.assert_allclose(prox(v, 0.1, l2=0.5), v / (1 + 2 * 0.1 * 0.5), rtol=1e-6)


def test_equal_steps_per_weight_give_the_scalar_answer():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(8, 5)) * 0.1
    scalar = prox(v, 0.05, group=0.3, l1=0.05, l2=0.1)
    per_weight = prox(v, np.full(v.shape, 0.05), group=0.3, l1=0.05, l2=0.1)
    np.testing.assert_allclose(per_weight, scalar, atol=1e-7)


def test_per_weight_steps_match_a_float64_solver():
    # Adam's steps alpha / (sqrt(v) + eps) can differ by orders of magnitude within a row.
    rng = np.random.default_rng(2)
    for _ in range(40):
        v = rng.normal(size=(6, 5)) * rng.uniform(0.01, 1)
        step = 10.0 ** rng.uniform(-6, 0, size=v.shape)
        group = rng.uniform(0, 0.5)
        got = prox(v, step, group=group)
        expected = group_prox_reference(v, step, group)
        np.testing.assert_allclose(got, expected, atol=1e-6 * max(1, np.abs(expected).max()))
        assert np.all(got[np.all(expected == 0, axis=1)] == 0)


# ---------------------------------------------------------------- optimality (hypothesis)
def objective(w, v, step, strengths):
    return 0.5 * np.sum((np.asarray(w, np.float64) - v) ** 2 / step) + penalty_np(w, **strengths)


@settings(max_examples=60, deadline=None)
@given(v=arrays(np.float64, (4, 3), elements=st.floats(-2, 2)),
       log_step=st.floats(-3, 0), group=st.floats(0, 1), l1=st.floats(0, 1),
       l2=st.floats(0, 1), seed=st.integers(0, 2**16), per_weight=st.booleans())
def test_prox_output_beats_random_perturbations(v, log_step, group, l1, l2, seed, per_weight):
    rng = np.random.default_rng(seed)
    step = 10.0**log_step
    if per_weight:
        step = step * 10.0 ** rng.uniform(-1, 1, size=v.shape)
    strengths = dict(group=group, l1=l1, l2=l2)
    w = prox(v, step, **strengths).astype(np.float64)
    best = objective(w, v, step, strengths)
    for scale in (1e-1, 1e-2, 1e-3):
        for _ in range(10):
            other = w + rng.normal(size=w.shape) * scale
            assert best <= objective(other, v, step, strengths) + 1e-5 * (1 + abs(best))
    # Zeroing a whole row, or the whole kernel, never helps either.
    for row in range(v.shape[0]):
        other = w.copy()
        other[row] = 0
        assert best <= objective(other, v, step, strengths) + 1e-5 * (1 + abs(best))


# ---------------------------------------------------------------- the optimizer wrapper
def small_model(data, group=0.05, l1=0.0, proximal=True):
    keras.utils.set_random_seed(3)
    return build_model(data, (6,), GroupSparse(group, l1=l1, proximal=proximal))


def test_one_step_is_adam_then_the_prox_in_adams_metric(boston):
    """The wrapper's step, recomputed by hand: Adam's update, then the prox with
    t_i = alpha / (sqrt(v_i) + eps), alpha = lr * sqrt(1 - b2^t) / (1 - b1^t)."""
    model = small_model(boston, group=0.05, l1=0.01)
    x, y = boston.x_train[:64], boston.y_train[:64]
    lr = 0.05
    optimizer = ProximalOptimizer(keras.optimizers.Adam(lr))
    reference = keras.optimizers.Adam(lr)
    twin = small_model(boston, group=0.05, l1=0.01)
    twin.set_weights(model.get_weights())
    for step in range(1, 4):
        for net, opt in ((model, optimizer), (twin, reference)):
            _, grads = value_and_gradients(
                lambda: keras.ops.mean(keras.ops.square(net(x) - keras.ops.convert_to_tensor(y))),
                net.trainable_variables)
            opt.apply_gradients(zip(grads, net.trainable_variables))
        # Apply the prox to the twin by hand, from Adam's own second moments.
        # In float32, as Keras' Adam computes it (1 - 0.999 is not exact in float32).
        beta_1, beta_2 = np.float32(0.9), np.float32(0.999)
        alpha = np.float32(lr) * np.sqrt(1 - beta_2**step) / (1 - beta_1**step)
        for variable in twin.trainable_variables:
            regularizer = variable.regularizer
            if regularizer is None:
                continue
            moments = reference._velocities[reference._get_variable_index(variable)].numpy()
            t = alpha / (np.sqrt(moments) + reference.epsilon)
            variable.assign(prox(variable.numpy(), t, group=0.05, l1=0.01))
        for mine, expected in zip(model.get_weights(), twin.get_weights()):
            np.testing.assert_allclose(mine, expected, rtol=1e-5, atol=1e-7)
    assert int(optimizer.iterations) == 3


@pytest.mark.tensorflow_only
def test_inside_a_tensorflow_graph_the_step_is_fused_by_xla_and_unchanged(boston):
    """In a tf.function (fit, the TF demo) each proximal step is one XLA-compiled call, and
    the weights it gives equal those of the same steps taken eagerly, the prox unfused:
    per-weight steps, per-row weights, the path's strength scale and the group MCP."""
    import tensorflow as tf

    weights = [0.5 + 0.1 * row for row in range(boston.num_features)]
    x, y = boston.x_train[:64], boston.y_train[:64]

    def make():
        keras.utils.set_random_seed(3)
        model = build_model(boston, (6,), GroupSparse(0.05, l1=0.01, proximal=True))
        model.layers[0].kernel.regularizer = GroupSparse(0.2, proximal=True, weights=weights,
                                                         mcp_gamma=3.0)
        for layer in model.layers:
            layer.kernel.regularizer.scale = keras.Variable(0.7, trainable=False)
        return model, ProximalOptimizer(keras.optimizers.Adam(0.05))

    def step(model, optimizer):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x) - y))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    eager, eager_optimizer = make()
    graph, graph_optimizer = make()
    traced = tf.function(lambda: step(graph, graph_optimizer))
    for _ in range(5):
        step(eager, eager_optimizer)
        traced()
    for fused, plain in zip(graph.get_weights(), eager.get_weights()):
        np.testing.assert_allclose(fused, plain, rtol=1e-5, atol=1e-7)
    kernels = [layer.kernel.numpy() for layer in graph.layers]
    assert any(np.any(np.all(kernel == 0, axis=1)) for kernel in kernels)  # rows dropped
    compiled = [op for op in traced.get_concrete_function().graph.get_operations()
                if op.node_def.attr.get("_XlaMustCompile") and op.node_def.attr[
                    "_XlaMustCompile"].b]
    assert len(compiled) == len(graph.layers)  # one fused prox per kernel


def test_groups_reach_exact_zero_and_the_loss_carries_no_penalty(boston):
    model = small_model(boston, group=0.01)
    assert all(float(loss) == 0.0 for loss in model.losses)  # applied by the optimizer only
    assert float(penalty_value(model)) > 0
    model.compile(optimizer=ProximalOptimizer(keras.optimizers.Adam(0.01)), loss="mse",
                  steps_per_execution=steps_per_call(20))
    model.fit(boston.x_train, boston.y_train, batch_size=len(boston.x_train), epochs=100,
              verbose=0)
    rows = np.concatenate([layer.kernel.numpy() for layer in model.layers[:1]])
    zero_rows = np.all(rows == 0.0, axis=1)
    assert zero_rows.any() and not zero_rows.all()
    # Nothing hovers near zero: a row is exactly zero or clearly not.
    assert np.abs(rows[~zero_rows]).sum(axis=1).min() > 1e-3


def test_a_model_without_proximal_penalties_is_refused(boston):
    model = small_model(boston, proximal=False)
    optimizer = ProximalOptimizer(keras.optimizers.Adam())
    with pytest.raises(ValueError, match="no weight with a GroupSparse"):
        optimizer.build(model.trainable_variables)


def test_save_and_load_a_model_trained_this_way(boston, tmp_path):
    model = small_model(boston, group=0.05)
    model.compile(optimizer=ProximalOptimizer(keras.optimizers.Adam(0.01), freeze_zeros=True),
                  loss="mse")
    fit = dict(x=boston.x_train, y=boston.y_train, batch_size=len(boston.x_train), verbose=0)
    model.fit(epochs=30, **fit)
    model.save(tmp_path / "proximal.keras")
    loaded = keras.saving.load_model(tmp_path / "proximal.keras")
    assert isinstance(loaded.optimizer, ProximalOptimizer)
    assert loaded.optimizer.freeze_zeros and isinstance(loaded.optimizer.inner_optimizer,
                                                        keras.optimizers.Adam)
    assert loaded.layers[0].kernel_regularizer.proximal
    np.testing.assert_array_equal(loaded.predict(boston.x_test, verbose=0),
                                  model.predict(boston.x_test, verbose=0))
    # The optimizer's state came back too: ten more epochs give the same weights.
    model.fit(epochs=10, **fit)
    loaded.fit(epochs=10, **fit)
    assert int(loaded.optimizer.iterations) == 40
    for mine, theirs in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(theirs, mine, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- both demos, end to end
PROXIMAL_RUN = ["--solver", "proximal", "--freeze-zeros", "--group", "3e-3", "--lr", "0.01",
                "--epochs", "200"]


def check_exact_zeros(record, run_dir):
    assert record["config"]["threshold"] == 0.0
    assert record["pruned"]["max_abs_difference_from_trained"] <= 1e-6
    assert record["thresholded_test"] == record["test"]
    before, after = record["units_before"], record["units_after"]
    assert after["inputs"] + sum(after["hidden"]) < before["inputs"] + sum(before["hidden"])
    pruned = keras.saving.load_model(run_dir / "pruned.keras")
    assert pruned.count_params() == record["pruned"]["params_after"]


@pytest.mark.tensorflow_only
def test_tensorflow_demo_proximal_run(tmp_path):
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    record = demo_tensorflow.main([*PROXIMAL_RUN, "--logdir", str(tmp_path)])
    (run_dir,) = tmp_path.iterdir()
    check_exact_zeros(record, run_dir)
    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    events.Reload()
    neurons = [float(tf.make_ndarray(event.tensor_proto)) for event in events.Tensors("neurons")]
    penalties = [float(tf.make_ndarray(event.tensor_proto))
                 for event in events.Tensors("reg_loss")]
    assert len(neurons) == 200 and neurons[-1] < neurons[0]
    assert all(later <= earlier for earlier, later in zip(neurons, neurons[1:]))
    assert min(penalties) > 0  # the penalty's value is logged though it is not in the loss


def test_keras_demo_proximal_run(tmp_path):
    record = demo_keras.main([*PROXIMAL_RUN, "--no-show", "--logdir", str(tmp_path)])
    (run_dir,) = tmp_path.iterdir()
    check_exact_zeros(record, run_dir)
    with open(run_dir / "history.csv") as file:
        rows = list(csv.DictReader(file))
    neurons = [int(row["neurons"]) for row in rows]
    assert len(neurons) == 200 and neurons[-1] < neurons[0]
    assert all(later <= earlier for earlier, later in zip(neurons, neurons[1:]))
    assert min(float(row["penalty"]) for row in rows) > 0
    assert json.loads((run_dir / "run.json").read_text())["config"]["solver"] == "proximal"


def test_the_optimizer_holds_no_copy_of_the_model_weights(boston, tmp_path):
    """Its variables are its own and the inner optimizer's (a tracked list of the kernels
    once made them optimizer state: JAX refused the step, and saved files carried copies)."""
    model = small_model(boston, group=0.05)
    optimizer = ProximalOptimizer(keras.optimizers.Adam(0.01))
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(boston.x_train, boston.y_train, batch_size=len(boston.x_train), epochs=2, verbose=0)
    weights = {id(variable) for variable in model.weights}
    assert not any(id(variable) in weights for variable in optimizer.variables)
    assert len(optimizer.variables) == 2 + len(optimizer.inner_optimizer.variables)


def test_a_file_saved_with_the_old_optimizer_state_loads_with_a_note(boston):
    """tests/data/proximal_optimizer_old_state.keras was saved (TensorFlow) before the fix:
    its optimizer entry holds copies of the two kernels. It loads, says so, and trains on."""
    path = "tests/data/proximal_optimizer_old_state.keras"
    with pytest.warns(UserWarning, match="saved before copies of the kernels were removed"):
        model = keras.saving.load_model(path)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 3  # Adam's state
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    before = model.get_weights()
    model.fit(x, 2 * x[:, :1], epochs=2, verbose=0)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 5
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_a_file_saved_before_common_became_sub_packages_loads(boston):
    """tests/data/saved_before_the_move.keras was written by `demo_keras.py --solver proximal
    --epochs 30 --save-model` when common/ was flat (its config names common.penalty.penalties and
    common.penalty.proximal_optimizer). It loads with GroupSparse on every kernel and the proximal
    optimizer, and predicts what a NumPy forward pass of its weights predicts."""
    model = keras.saving.load_model("tests/data/saved_before_the_move.keras")
    kernels = [layer for layer in model.layers if hasattr(layer, "kernel")]
    assert len(kernels) == 3
    for layer in kernels:
        assert isinstance(layer.kernel_regularizer, GroupSparse)
        assert layer.kernel_regularizer.proximal
        assert layer.kernel_regularizer.group_strength == pytest.approx(1e-3)
    assert isinstance(model.optimizer, ProximalOptimizer)
    x = boston.x_test[:16]
    expected = np.asarray(x, np.float64)
    for index, layer in enumerate(kernels):
        kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
        expected = expected @ kernel + bias
        if index < len(kernels) - 1:
            expected = np.maximum(expected, 0.0)
    got = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
