"""Between training stages: adaptive group Lasso weights, and each layer's own lambda_max.

Both change constants of the compiled training step (the regularizers' weights and
strengths are Python numbers), so after them a Keras model's compiled step is dropped and
traced again on its next fit; a custom loop re-wraps its own tf.function.
"""

from common.fitting import drop_compiled_step
from common.penalties import GroupSparse, adaptive_weights


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


def scale_layers(model, layer_lambda_max):
    """--layer-scaling lambda-max: each kernel's group strength times its own lambda_max over
    the largest, so one path lambda is the same share of the way to an empty layer in every
    layer. Returns the new strengths."""
    largest = max(layer_lambda_max)
    strengths = []
    for (layer, regularizer), top in zip(kernel_regularizers(model), layer_lambda_max):
        regularizer.group_strength *= top / largest if largest > 0 else 1.0
        strengths.append(regularizer.group_strength)
    drop_compiled_step(model)
    return strengths
