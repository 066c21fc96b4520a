"""What the pieces do with what a user hands them: choose_lambda's arrays, settings and layers
(checked as scikit-learn's check_X_y checks, one sentence each, before training), class
labels of any kind, a proximal penalty with an optimizer that would never apply it, and
run.json as strict JSON."""

import json
import math

import keras
import numpy as np
import pytest

from common import GroupSparse, ProximalOptimizer, UnitHistory, choose_lambda
from common.outputs.files import write_json

pytestmark = pytest.mark.backends  # the Keras side: every backend

QUICK = dict(points=2, epochs=3, point_epochs=3)


def network(inputs=4, outputs=1, extra=()):
    """A builder of an inputs-6-outputs network, GroupSparse (proximal) on both kernels; with
    several outputs, class probabilities (softmax), as the cross-entropy loss reads them."""
    return lambda: keras.Sequential([
        keras.Input((inputs,)),
        keras.layers.Dense(6, "relu", kernel_regularizer=GroupSparse(1e-3, proximal=True)),
        *[layer() for layer in extra],
        keras.layers.Dense(outputs, "softmax" if outputs > 1 else None,
                           kernel_regularizer=GroupSparse(1e-3, proximal=True))])


def rows(n=40, features=4, seed=0):
    generator = np.random.default_rng(seed)
    x = generator.normal(size=(n, features)).astype(np.float32)
    return x, x[:, :1] * 2.0


def refused(message, build=None, x=None, y=None, **settings):
    """choose_lambda's ValueError: one sentence matching `message`."""
    default_x, default_y = rows()
    x = default_x if x is None else x
    y = default_y if y is None else y
    with pytest.raises(ValueError, match=message) as raised:
        choose_lambda(build or network(), x, y, **{**QUICK, **settings})
    assert "\n" not in str(raised.value)


def test_lengths_shapes_and_values_of_the_arrays_are_checked():
    x, y = rows()
    # len(y) a multiple of len(x) was reshaped into several targets and trained on.
    refused(r"x has 40 rows and y has 80: one target row per row of x",
            y=np.concatenate([y, y]).reshape(-1))
    refused(r"y must be 40 rows of as many targets as the network has outputs \(1\), got "
            r"shape \(40, 2\)", y=np.concatenate([y, y], axis=1))
    refused(r"x has 40 rows and y has 0", y=np.float32(1.0))
    refused(r"y must be one target row per row of x, all of one length",
            y=[[1.0], [1.0, 2.0]] * 20)
    refused(r"x must be 2-D \(rows, features\)", x=x[:, 0])
    nan_x = x.copy()
    nan_x[3, 2] = np.nan  # surfaced as "Geometric sequence cannot include zero"
    refused(r"x\[3, 2\] is nan: every value must be a finite number that fits float32", x=nan_x)
    refused(r"y's row 5 is not a finite number", y=np.where(np.arange(40)[:, None] == 5, np.inf, y))
    refused(r"x must hold numbers only", x=np.array([["a"] * 4] * 40))


def test_settings_are_checked_with_the_numbers_asked():
    refused(r"points must be a whole number of at least 1, got 0", points=0)
    refused(r"epochs must be a whole number of at least 1, got 0", epochs=0)
    refused(r"point_epochs must be a whole number of at least 1, got -2", point_epochs=-2)
    refused(r"folds must be None or a whole number of at least 2, got 1", folds=1)
    refused(r"folds=50 needs at least that many rows; x has 40", folds=50)
    refused(r"task must be 'regression' or 'classification', got 'clustering'",
            task="clustering")
    refused(r"val_fraction must be between 0 and 1", val_fraction=1.0)
    refused(r"finetune must be at least 0", finetune=None)


def test_layers_the_search_cannot_train_are_refused_before_training():
    for layer, name in [(lambda: keras.layers.Dropout(0.1), "Dropout"),
                        (keras.layers.BatchNormalization, "BatchNormalization")]:
        refused(rf"choose_lambda trains and prunes a chain of Dense layers; layer '\w+' is a "
                rf"{name}, which it cannot", build=network(extra=[layer]))


def test_class_labels_are_refused_with_the_labels_and_the_width_or_encoded():
    x, _ = rows()
    labels = np.where(x[:, 0] > 0, 5, 1)
    refused(r"y holds 3 classes \(-1, 1, 5\), more than the network's 2 outputs",
            build=network(outputs=2), y=np.where(np.arange(40) == 0, -1, labels),
            task="classification")
    refused(r"classification reads class probabilities: give the last layer \('\w+'\) "
            r"activation='softmax'", build=lambda: keras.Sequential([
                keras.Input((4,)), keras.layers.Dense(2, kernel_regularizer=GroupSparse(1e-3))]),
            y=labels, task="classification")
    refused(r"y's row 0 is not a finite label", build=network(outputs=2),
            y=np.where(np.arange(40) == 0, np.nan, 1.0), task="classification")
    found = choose_lambda(network(outputs=2), x, labels, task="classification", **QUICK)
    assert found.classes == [1, 5]  # output k is the label classes[k]
    # Labels 0 .. outputs-1 keep their meaning: output k is label k, also where one is absent.
    found = choose_lambda(network(outputs=3), x, (labels == 5) * 2, task="classification",
                          **QUICK)
    assert found.classes == [0, 1, 2]
    words = np.where(labels == 5, "high", "low")
    found = choose_lambda(network(outputs=2), x, words, task="classification", **QUICK)
    assert found.classes == ["high", "low"]
    predicted = np.asarray(found.classes)[np.argmax(
        keras.ops.convert_to_numpy(found.model(x)), axis=1)]
    assert set(predicted) <= {"high", "low"}


def test_a_proximal_penalty_with_a_plain_optimizer_is_said_once():
    """GroupSparse(..., proximal=True) adds nothing to the loss: only a ProximalOptimizer
    applies it. Compiled with "adam", nothing would be pruned and nothing said."""
    x, y = rows()
    model = network()()
    history = UnitHistory(model, task="regression", threshold=0.0)
    model.compile(optimizer="adam", loss="mse", metrics=[history.recorder])
    with pytest.warns(UserWarning, match=r"nothing applies it \(wrap it: ProximalOptimizer"):
        model.fit(x, y, epochs=2, batch_size=40, callbacks=[history], verbose=0)
    model = network()()
    history = UnitHistory(model, task="regression", threshold=0.0)
    model.compile(optimizer=ProximalOptimizer(keras.optimizers.Adam()), loss="mse",
                  metrics=[history.recorder])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no such warning with the right one
        model.fit(x, y, epochs=2, batch_size=40, callbacks=[history], verbose=0)


def test_run_json_is_strict_json_with_null_for_what_is_not_finite(tmp_path):
    path = tmp_path / "run.json"
    write_json(path, {"test": {"rmse": math.nan}, "rows": [1.0, math.inf, -math.inf],
                      "array": np.array([0.5, np.nan]), "steps": 3, "name": "x"})

    def refuse(constant):
        raise AssertionError(f"{constant} in run.json")

    record = json.loads(path.read_text(), parse_constant=refuse)
    assert record == {"test": {"rmse": None}, "rows": [1.0, None, None],
                      "array": [0.5, None], "steps": 3, "name": "x"}
