"""Remove what the penalty switched off: a physically smaller network, same predictions.

For a chain of Dense layers, an input feature or hidden unit whose outgoing group is
inactive (sum |w| <= threshold) is deleted: its kernel row, and for a hidden unit its
kernel column and bias entry. A hidden unit left with no incoming weight outputs the
constant activation(bias); that constant times its outgoing row is folded into the next
bias. The result equals the thresholded original (inactive groups set to 0) on every input.

Keras `Normalization` layers before the first Dense layer (the inputs' scaling) and after
the last (the target's, `invert=True`) are carried through: the input one keeps the kept
features' statistics. `with_scaling` adds them, so that a saved network takes raw feature
values and predicts in the target's own units, with Keras' built-in layers only.
"""

import dataclasses

import keras
import numpy as np

from common.shrink.counting import group_activity


@dataclasses.dataclass
class PruneReport:
    architecture_before: list[int]  # widths from inputs to outputs, e.g. [13, 20, 15, 1]
    architecture_after: list[int]
    params_before: int
    params_after: int
    kept_inputs: list[int]  # indices of the input features the pruned model takes
    kept_feature_names: list[str]
    folded_units: int  # constant hidden units folded into the next layer's bias
    notes: list[str]

    @property
    def architecture(self):
        before = "-".join(map(str, self.architecture_before))
        return f"{before} → {'-'.join(map(str, self.architecture_after))}"

    def as_dict(self):
        return {"architecture": self.architecture, **dataclasses.asdict(self)}


def _dense_chain(model):
    return _chain(model)[0]


def _chain(model):
    """(the Dense layers, the Normalization before them or None, the one after or None)."""
    dense, before, after = [], None, None
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense) and after is None:
            dense.append(layer)
        elif isinstance(layer, keras.layers.Normalization) and not dense and before is None:
            before = layer
        elif isinstance(layer, keras.layers.Normalization) and dense and after is None:
            after = layer
        elif not isinstance(layer, (keras.layers.InputLayer, keras.layers.Dropout)):
            raise ValueError(f"prune_model handles a chain of Dense layers (with a "
                             f"Normalization before and after); layer {layer.name!r} is a "
                             f"{type(layer).__name__} where it cannot be")
    if not dense:
        raise ValueError("prune_model found no Dense layer in the model")
    return dense, before, after


def _statistics(layer, size=1):
    """A Normalization layer's (mean, variance) as float64 arrays of `size` (a scalar
    statistic is broadcast); None for no layer."""
    if layer is None:
        return None
    return tuple(np.broadcast_to(np.asarray(keras.ops.convert_to_numpy(value), np.float64)
                                 .reshape(-1), (size,)) for value in (layer.mean, layer.variance))


def with_scaling(model, input_center, input_spread, output_center=None, output_spread=None):
    """The Dense chain `model` behind a Normalization layer taking raw inputs (scaled input =
    (raw - input_center) / input_spread, per feature) and, given output_center, before one
    giving outputs in raw units (raw = output * output_spread + output_center)."""
    dense, _, _ = _chain(model)
    kernels, biases = [np.array(keras.ops.convert_to_numpy(layer.kernel)) for layer in dense], \
        _biases(dense)
    scaling = [np.asarray(input_center, np.float64), np.square(np.asarray(input_spread,
                                                                          np.float64))]
    target = None if output_center is None else [output_center, float(output_spread) ** 2]
    return _build_dense_chain(kernels[0].shape[0], kernels, biases, dense, scaling, target)


def thresholded_kernels(model, threshold):
    """The model's Dense kernels with every inactive group (row) set to 0."""
    kernels = []
    for layer in _dense_chain(model):
        kernel = np.array(keras.ops.convert_to_numpy(layer.kernel), dtype=np.float32)
        kernel[keras.ops.convert_to_numpy(group_activity(kernel)) <= threshold] = 0.0
        kernels.append(kernel)
    return kernels


def thresholded_copy(model, threshold):
    """A plain copy of a Dense chain whose inactive groups are exactly 0 (the paper's
    post-processing: weights under the threshold are zeroed after training)."""
    layers, before, after = _chain(model)
    kernels = thresholded_kernels(model, threshold)
    return _build_dense_chain(kernels[0].shape[0], kernels, _biases(layers), layers,
                              _statistics(before, kernels[0].shape[0]), _statistics(after))


def _biases(layers):
    return [np.zeros(layer.units, np.float32) if layer.bias is None
            else np.array(keras.ops.convert_to_numpy(layer.bias), np.float32) for layer in layers]


def _remove_units(kernels, biases, unit_layer, remove):
    """Delete units of hidden layer `unit_layer` (the outputs of Dense number unit_layer - 1)."""
    keep = ~remove
    kernels[unit_layer - 1] = kernels[unit_layer - 1][:, keep]
    biases[unit_layer - 1] = biases[unit_layer - 1][keep]
    kernels[unit_layer] = kernels[unit_layer][keep]


def _prune_pass(kernels, biases, activations):
    """One forward sweep (fold constant units, drop dead ones) and one backward sweep.

    Returns whether anything changed and how many constant units were folded."""
    changed, folded = False, 0
    num_hidden = len(kernels) - 1
    for unit_layer in range(1, num_hidden + 1):
        outgoing, incoming = kernels[unit_layer], kernels[unit_layer - 1]
        dead = np.all(outgoing == 0, axis=1)
        constant = np.all(incoming == 0, axis=0) & ~dead
        if constant.any():
            values = np.asarray(keras.ops.convert_to_numpy(
                activations[unit_layer - 1](biases[unit_layer - 1][constant])))
            biases[unit_layer] = biases[unit_layer] + values @ outgoing[constant]
            folded += int(constant.sum())
        if (dead | constant).any():
            _remove_units(kernels, biases, unit_layer, dead | constant)
            changed = True
    for unit_layer in range(num_hidden, 0, -1):
        # A unit whose every outgoing weight went to removed units no longer matters.
        dead = np.all(kernels[unit_layer] == 0, axis=1)
        if dead.any():
            _remove_units(kernels, biases, unit_layer, dead)
            changed = True
    return changed, folded


def prune_model(model, threshold=1e-3, feature_names=None, build=True):
    """A new plain Keras model without the inactive units, and a PruneReport.

    The new model takes only the surviving input features (report.kept_inputs), has no
    regularizer or other custom object, and predicts what the thresholded model predicts.
    `build=False` returns (None, the report) without building it (the path measures many).
    """
    layers, scaling_in, scaling_out = _chain(model)
    kernels = thresholded_kernels(model, threshold)
    biases = _biases(layers)
    activations = [layer.activation for layer in layers]
    num_inputs = kernels[0].shape[0]
    feature_names = list(feature_names or [f"x{index}" for index in range(num_inputs)])
    before = [num_inputs] + [layer.units for layer in layers]

    kept_inputs, folded = np.arange(num_inputs), 0
    while True:
        changed, newly_folded = _prune_pass(kernels, biases, activations)
        folded += newly_folded
        live_inputs = ~np.all(kernels[0] == 0, axis=1)
        if not live_inputs.all():
            kept_inputs, kernels[0] = kept_inputs[live_inputs], kernels[0][live_inputs]
            changed = True
        if not changed:
            break

    notes = []
    empty = [index for index, kernel in enumerate(kernels[1:], start=1) if kernel.shape[0] == 0]
    if empty:
        # The output no longer depends on any input: one Dense layer with a zero kernel
        # holds the constant. It keeps one input column, with zero weight, because Keras'
        # predict() mishandles inputs of zero columns.
        kept_inputs = np.array([0])
        notes.append(f"hidden layer {empty[0]} has no active unit: the network predicts a "
                      f"constant (input {feature_names[0]!r} is kept with zero weight only "
                      "so that predict() has a column to read)")
        kernels, biases, layers = (
            [np.zeros((1, layers[-1].units), np.float32)], [biases[-1]], [layers[-1]])
    scaling = None
    if scaling_in is not None:  # the kept features' own statistics
        scaling = [statistic[kept_inputs] for statistic in _statistics(scaling_in, num_inputs)]
    pruned = _build_dense_chain(len(kept_inputs), kernels, biases, layers, scaling,
                                _statistics(scaling_out)) if build else None
    after = [len(kept_inputs)] + [kernel.shape[1] for kernel in kernels]
    if after == before:
        notes.append("nothing to prune: every unit is active")
    report = PruneReport(
        before, after, int(model.count_params()),
        sum(int(kernel.size) + int(bias.size) for kernel, bias in zip(kernels, biases)),
        [int(index) for index in kept_inputs], [feature_names[index] for index in kept_inputs],
        folded, notes)
    return pruned, report


def _build_dense_chain(num_inputs, kernels, biases, template_layers, scaling_in=None,
                       scaling_out=None):
    """A plain Sequential of Dense layers with these weights and the templates' activations,
    between Normalization layers with these (mean, variance), where given."""
    model = keras.Sequential([keras.Input(shape=(num_inputs,))], name="pruned_net")
    if scaling_in is not None:
        mean, variance = scaling_in
        model.add(keras.layers.Normalization(mean=np.asarray(mean).tolist(),
                                             variance=np.asarray(variance).tolist(),
                                             name="raw_inputs"))
    for kernel, bias, template in zip(kernels, biases, template_layers):
        activation = template.get_config()["activation"]
        layer = keras.layers.Dense(kernel.shape[1], activation=activation, name=template.name)
        model.add(layer)
        layer.set_weights([kernel, bias])
    if scaling_out is not None:
        mean, variance = (float(np.asarray(value).reshape(-1)[0]) for value in scaling_out)
        model.add(keras.layers.Normalization(mean=mean, variance=variance, invert=True,
                                             name="target_units"))
    return model
