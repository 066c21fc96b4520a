"""Between training stages: adaptive group Lasso weights on each kernel's own regularizer.

They change constants of the compiled training step (the regularizers' weights are Python
numbers), so after them a Keras model's compiled step is dropped and traced again on its
next fit; a custom loop re-wraps its own tf.function.
"""

from common.training.fitting import drop_compiled_step
from common.penalty.penalties import GroupSparse, adaptive_weights


def kernel_regularizers(model):
    """(layer, its own GroupSparse) for each Dense kernel carrying one. A regularizer object
    shared by several layers is copied first, so each kernel can get its own weights."""
    seen, pairs = set(), []
    for layer in model.layers:
        regularizer = getattr(layer, "kernel_regularizer", None)
        if not isinstance(regularizer, GroupSparse):
            continue
        if id(regularizer) in seen:
            copy = GroupSparse.from_config(regularizer.get_config())
            copy.scale = regularizer.scale
            layer.kernel_regularizer = layer.kernel.regularizer = regularizer = copy
        seen.add(id(regularizer))
        pairs.append((layer, regularizer))
    return pairs


def set_adaptive_weights(model, gamma=1.0):
    """Stage two of the adaptive group Lasso: each kernel's groups weighted by
    1 / ||W_g||**gamma of their current values (zero groups stay removed). Returns the
    weights, one list per kernel."""
    weights = []
    for layer, regularizer in kernel_regularizers(model):
        regularizer.weights = tuple(adaptive_weights(layer.kernel, gamma))
        weights.append(list(regularizer.weights))
    drop_compiled_step(model)  # traced again with the weights on the next fit
    return weights
