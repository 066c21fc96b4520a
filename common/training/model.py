"""The network of the original demos, its data loss and its test metrics."""

import keras
import numpy as np
from keras import ops

from common.data.datasets import metric_name


def build_model(data, hidden, regularizer=None):
    """A Dense stack: ReLU hidden layers, linear output (regression) or softmax (classification).

    `regularizer` goes on every kernel; a list gives one per kernel, inputs first.
    The original used ReLU on the regression output too; a ReLU output can die and then
    predicts a constant, so the output here is linear. Biases are not regularized.
    """
    output_activation = "softmax" if data.task == "classification" else None
    regularizers = (list(regularizer) if isinstance(regularizer, (list, tuple))
                    else [regularizer] * (len(hidden) + 1))
    layers = [keras.Input(shape=(data.num_features,))]
    for layer_index, width in enumerate(hidden, start=1):
        layers.append(keras.layers.Dense(width, activation="relu", name=f"hidden_{layer_index}",
                                         kernel_regularizer=regularizers[layer_index - 1]))
    layers.append(keras.layers.Dense(data.num_outputs, activation=output_activation,
                                     name="output", kernel_regularizer=regularizers[-1]))
    return keras.Sequential(layers, name="group_sparse_net")


def row_losses(task, y_true, y_pred):
    """The data loss of each row: squared error, or cross-entropy on the softmax output."""
    if task == "classification":
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
    y_pred = ops.convert_to_tensor(y_pred)  # NumPy or a tensor, on any backend
    return ops.sum(ops.square(y_pred - ops.cast(y_true, y_pred.dtype)), axis=-1)


def data_loss(task, y_true, y_pred):
    """Mean squared error, or mean cross-entropy: the loss without penalty."""
    return ops.mean(row_losses(task, y_true, y_pred))


def loss_name(task):
    """The same data loss as a Keras loss for compile()."""
    return "sparse_categorical_crossentropy" if task == "classification" else "mse"


def evaluate(model, data, x=None, y=None, split="test"):
    """Loss and metric on a split ("test" or "val"): RMSE in the target's original units, or
    accuracy. `x` replaces the split's inputs (a pruned model reads fewer columns)."""
    x = getattr(data, f"x_{split}") if x is None else x
    y = getattr(data, f"y_{split}") if y is None else y
    predictions = ops.convert_to_numpy(model(x, training=False))
    metrics = {"loss": float(ops.convert_to_numpy(data_loss(data.task, y, predictions)))}
    metric, _ = metric_and_standard_error(data, y, predictions)
    metrics[metric_name(data.task)] = metric
    return metrics


def metric_and_standard_error(data, y, predictions):
    """The metric and its standard error from the per-example results.

    Accuracy: the mean of per-example hits, SE sqrt(p (1 - p) / n). RMSE: the square root of
    the mean squared error, SE by the delta method, SE(MSE) / (2 RMSE).
    """
    if data.task == "classification":
        hits = np.argmax(predictions, axis=1) == np.asarray(y).reshape(-1)
        accuracy = float(np.mean(hits))
        return accuracy, float(np.sqrt(accuracy * (1 - accuracy) / len(hits)))
    errors = data.inverse_transform_target(predictions) - data.inverse_transform_target(y)
    squared = np.square(np.asarray(errors, np.float64)).reshape(-1)
    rmse = float(np.sqrt(np.mean(squared)))
    se_mse = float(np.std(squared, ddof=1) / np.sqrt(len(squared))) if len(squared) > 1 else 0.0
    return rmse, se_mse / (2 * rmse) if rmse > 0 else 0.0
