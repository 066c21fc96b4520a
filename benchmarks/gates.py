"""L0 gates on units: hard concrete gates (Louizos, Welling and Kingma, ICLR 2018), the other
way to remove whole units, measured against the group Lasso in benchmarks/l0.py.

    gated = keras.Sequential([keras.Input((13,)), UnitGates(), keras.layers.Dense(20, "relu"),
                              UnitGates(), keras.layers.Dense(1)])
    loss = mse + lam * gates_l0(gated)           # the expected number of open gates
    plain = fold_gates(gated)                    # Dense layers only; prune_model removes units

A gate multiplies one input feature or hidden unit by z in [0, 1]. In training z is drawn
for every row: s = sigmoid((log u - log(1 - u) + log_alpha) / BETA) for u ~ U(0, 1),
stretched to (GAMMA, ZETA) and clipped to [0, 1], so z is exactly 0 or 1 with positive
probability and log_alpha gets a gradient through s. The penalty is the expected L0 norm,
sum of P(z != 0) = sigmoid(log_alpha - BETA * log(-GAMMA / ZETA)), differentiable where the
count of units is not. At test time z = clip(sigmoid(log_alpha) (ZETA - GAMMA) + GAMMA, 0, 1):
exactly 0 once log_alpha <= log(-GAMMA / ZETA), about -2.4, and the unit is gone.
"""

import math

import keras
from keras import ops

BETA, GAMMA, ZETA = 2 / 3, -0.1, 1.1  # the paper's temperature and stretch
NOISE = 1e-6  # u is drawn from (NOISE, 1 - NOISE): log u and log(1 - u) stay finite


def hard_concrete(log_alpha, u):
    """Training-time gates for uniform draws `u` (broadcast against `log_alpha`)."""
    s = ops.sigmoid((ops.log(u) - ops.log(1 - u) + log_alpha) / BETA)
    return ops.clip(s * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def inference_gates(log_alpha):
    """The gates of a trained network: their deterministic value, exactly 0 for closed ones."""
    return ops.clip(ops.sigmoid(log_alpha) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def open_probability(log_alpha):
    """P(z != 0) for each gate, the expected L0 norm's terms."""
    return ops.sigmoid(log_alpha - BETA * math.log(-GAMMA / ZETA))


@keras.saving.register_keras_serializable(package="common")
class UnitGates(keras.layers.Layer):
    """One hard concrete gate per feature of its input (the units of the layer before, or
    the network's inputs). `droprate` sets each gate's initial P(z = 0) before stretching:
    log_alpha starts at log((1 - droprate) / droprate)."""

    def __init__(self, droprate=0.2, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.droprate, self.seed = droprate, seed
        self.noise = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        start = math.log((1 - self.droprate) / self.droprate)
        self.log_alpha = self.add_weight(shape=(int(input_shape[-1]),), name="log_alpha",
                                         initializer=keras.initializers.Constant(start))

    def call(self, inputs, training=False):
        if not training:
            return inputs * inference_gates(self.log_alpha)
        u = keras.random.uniform(ops.shape(inputs), NOISE, 1 - NOISE, seed=self.noise)
        return inputs * hard_concrete(self.log_alpha, u)

    def get_config(self):
        return {**super().get_config(), "droprate": self.droprate, "seed": self.seed}


def gate_layers(model):
    return [layer for layer in model.layers if isinstance(layer, UnitGates)]


def gates_l0(model):
    """The penalty: the expected number of open gates of `model`, summed over its layers."""
    return sum(ops.sum(open_probability(layer.log_alpha)) for layer in gate_layers(model))


def fold_gates(model):
    """A plain Sequential of `model`'s Dense layers computing what `model` computes at test
    time: each UnitGates layer's gates multiply the rows of the next Dense kernel (a closed
    gate leaves a row of zeros, which common.shrink.pruning.prune_model removes). `model` is a
    Sequential of UnitGates and Dense layers, each UnitGates directly before a Dense."""
    layers, weights, pending = [], [], None
    for layer in model.layers:
        if isinstance(layer, UnitGates):
            pending = ops.convert_to_numpy(inference_gates(layer.log_alpha))
        elif isinstance(layer, keras.layers.Dense):
            kernel, *bias = [ops.convert_to_numpy(weight) for weight in layer.weights]
            if pending is not None:
                kernel = kernel * pending[:, None]
            layers.append(keras.layers.Dense(layer.units, activation=layer.activation,
                                             use_bias=layer.use_bias, name=layer.name))
            weights.append([kernel, *bias])
            pending = None
        else:
            raise ValueError(f"fold_gates takes UnitGates and Dense layers, not {layer.name!r}")
    if pending is not None:
        raise ValueError("the last UnitGates layer has no Dense layer after it to fold into")
    plain = keras.Sequential([keras.Input(model.inputs[0].shape[1:]), *layers])
    for layer, layer_weights in zip(plain.layers, weights):
        layer.set_weights(layer_weights)
    return plain
