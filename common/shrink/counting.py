"""Counting the units a group sparse penalty has left alive.

A group (a unit's outgoing weights) is active when the sum of its absolute weights
exceeds a threshold: the original demos' rule, with their threshold 1e-3 as default.
Rows of the first kernel are input features, rows of each later kernel hidden units.
"""

import dataclasses

import numpy as np
from keras import ops

from common.penalty.penalties import group_axes


def unit_kernels(model):
    """The kernels whose groups are counted, in order from the input (Dense and Conv layers)."""
    return [layer.kernel for layer in model.layers if getattr(layer, "kernel", None) is not None]


def unit_names(num_kernels):
    """Names of the layers whose units are counted: "inputs", "hidden_1", "hidden_2", ..."""
    return ["inputs"] + [f"hidden_{index}" for index in range(1, num_kernels)]


def group_activity(kernel):
    """Sum of |w| of each group (one value per input unit of this kernel)."""
    kernel = ops.convert_to_tensor(kernel)
    return ops.sum(ops.abs(kernel), axis=group_axes(kernel))


def active_counts(kernels, threshold):
    """Active groups per kernel as an int32 vector; works inside a traced function too."""
    return ops.stack([
        ops.sum(ops.cast(group_activity(kernel) > threshold, "int32")) for kernel in kernels])


@dataclasses.dataclass
class UnitCounts:
    inputs: int  # active input features
    hidden: list[int]  # active units in each hidden layer
    input_mask: np.ndarray  # bool per input feature: True where it survives

    @property
    def total(self):
        """All active units, inputs included: the original's `neurons` chart (48 at most for 13-20-15-1)."""
        return self.inputs + sum(self.hidden)

    def as_dict(self):
        return {"inputs": self.inputs, "hidden": list(self.hidden)}

    def surviving_features(self, feature_names):
        return [name for name, alive in zip(feature_names, self.input_mask) if alive]


def count_active_units(model_or_kernels, threshold=1e-3):
    """UnitCounts of a Keras model (its Dense/Conv kernels in order) or of a list of kernels."""
    kernels = model_or_kernels
    if hasattr(model_or_kernels, "layers"):
        kernels = unit_kernels(model_or_kernels)
    if not kernels:
        raise ValueError("no kernels to count: the model has no Dense or Conv layer")
    masks = [ops.convert_to_numpy(group_activity(kernel)) > threshold for kernel in kernels]
    counts = [int(mask.sum()) for mask in masks]
    return UnitCounts(counts[0], counts[1:], masks[0])
