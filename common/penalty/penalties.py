"""The group sparse penalties of Scardapane et al. (2017), written with keras.ops only.

A group is everything leaving one unit: a row of a Dense kernel (fan_in, fan_out), or all
of a conv kernel (..., in, out) that leaves one input channel. Zeroing a group removes
that input feature or hidden unit from the network.
"""

import math

import keras
from keras import ops


def group_axes(kernel):
    """The axes summed within a group: all but the input axis (the second to last)."""
    rank = len(kernel.shape)
    if rank < 2:
        raise ValueError(f"a kernel needs rank 2 or more, got shape {tuple(kernel.shape)}")
    return tuple(axis for axis in range(rank) if axis != rank - 2)


def _group_shape(kernel):
    """The kernel's shape with every group axis 1: one value per group, broadcastable."""
    rank = len(kernel.shape)
    return tuple(int(kernel.shape[axis]) if axis == rank - 2 else 1 for axis in range(rank))


def group_size(kernel):
    """Weights in one group: fan_out for a Dense kernel."""
    return math.prod(int(kernel.shape[axis]) for axis in group_axes(kernel))


def group_norms(kernel):
    """The L2 norm of each group, with a finite gradient (zero) at a group that is all zeros.

    d||w||/dw = w/||w|| is 0/0 at w = 0, where autodiff of sqrt(sum(w**2)) gives NaN. The
    gradient is written out instead: w/||w||, and 0 at a zero group (the subdifferential
    there is the unit ball). Three operations each way, where autodiff needed about twenty:
    on a small network the penalty's gradient was a visible part of every step.
    """
    # A tensor, not a variable: TensorFlow's eager custom_gradient refuses variables read
    # inside the function unless its gradient also returns theirs.
    return _group_norms(ops.copy(ops.convert_to_tensor(kernel)))


@ops.custom_gradient
def _group_norms(kernel):
    norms = ops.sqrt(ops.sum(ops.square(kernel), axis=group_axes(kernel)))

    def gradient(*args, upstream=None):
        if upstream is None:  # TensorFlow passes it as the argument, JAX by keyword
            (upstream,) = args
        per_group = ops.divide_no_nan(upstream, norms)  # 0 where the group is all zeros
        return ops.reshape(per_group, _group_shape(kernel)) * kernel

    return norms, gradient


def group_lasso(kernel, weights=None):
    """sqrt(group size) * sum over groups of the group's L2 norm (times its weight, when
    `weights` gives one per group: the adaptive group Lasso)."""
    norms = group_norms(kernel)
    if weights is not None:
        norms = norms * ops.cast(ops.reshape(ops.convert_to_tensor(weights), norms.shape),
                                 norms.dtype)
    return math.sqrt(group_size(kernel)) * ops.sum(norms)


def group_mcp(kernel, strength, gamma, weights=None):
    """The group minimax concave penalty (MCP; Zhang 2010, for groups Huang et al. 2012):
    for each group with threshold c_g = strength * sqrt(group size) * weight_g and norm r,
    c_g r - r**2 / (2 gamma) up to r = gamma c_g, then constant gamma c_g**2 / 2. Near zero
    it is the group Lasso; large groups are not shrunk at all (`strength` may be a tensor)."""
    norms = group_norms(kernel)
    thresholds = strength * math.sqrt(group_size(kernel)) * ops.ones_like(norms)
    if weights is not None:
        thresholds = thresholds * ops.cast(
            ops.reshape(ops.convert_to_tensor(weights), norms.shape), norms.dtype)
    rising = thresholds * norms - ops.square(norms) / (2.0 * gamma)
    flat = gamma * ops.square(thresholds) / 2.0
    return ops.sum(ops.where(norms <= gamma * thresholds, rising, flat))


def sparse_group_lasso(kernel):
    """Group Lasso plus L1 on the same kernel: the paper's best variant."""
    return group_lasso(kernel) + ops.sum(ops.abs(ops.convert_to_tensor(kernel)))


def group_sparse_penalty(kernel, group_strength=0.0, l1=0.0, l2=0.0, scale=None, weights=None,
                         mcp_gamma=None):
    """s * (group_strength * group_lasso(w; weights) + l1 * sum|w| + l2 * sum w**2), s =
    `scale` (1 when None); with `mcp_gamma` the group part is group_mcp at strength
    s * group_strength. The strengths and gamma are plain numbers (which parts exist is
    decided on them); `scale` and `weights` may be tensors, so a compiled step serves every
    value of them (common.search.engine)."""
    kernel = ops.convert_to_tensor(kernel)
    scale = None if scale is None else ops.cast(scale, kernel.dtype)
    penalty = ops.convert_to_tensor(0.0, dtype=kernel.dtype)
    concave = ops.convert_to_tensor(0.0, dtype=kernel.dtype)
    if group_strength and mcp_gamma:  # not linear in the strength: scaled inside
        strength = group_strength if scale is None else group_strength * scale
        concave = group_mcp(kernel, strength, mcp_gamma, weights)
    elif group_strength:
        penalty = penalty + group_strength * group_lasso(kernel, weights)
    if l1:
        penalty = penalty + l1 * ops.sum(ops.abs(kernel))
    if l2:
        penalty = penalty + l2 * ops.sum(ops.square(kernel))
    if scale is not None:
        penalty = penalty * scale
    return penalty + concave


def _checked_strength(name, value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


@keras.saving.register_keras_serializable(package="group_sparse")
class GroupSparse(keras.regularizers.Regularizer):
    """group_strength * group_lasso(w) + l1 * sum|w| + l2 * sum w**2, for `kernel_regularizer`.

    GroupSparse(1e-3) is the original demos' penalty; adding l1 > 0 gives the sparse
    group Lasso. `weights` (one per group, i.e. per row of the kernel) weighs each group's
    norm: the adaptive group Lasso (`adaptive_weights` computes them from a trained model).
    `mcp_gamma` replaces the group Lasso by the group MCP (`group_mcp`) with that concavity.
    A model using it saves to .keras and loads back once this module is imported.

    With proximal=True the penalty adds nothing to the loss (calling it returns 0): a
    `common.penalty.proximal_optimizer.ProximalOptimizer` applies it instead, as an exact proximal
    step after each optimizer step. `value(kernel)` gives the penalty's value in both modes.
    """

    def __init__(self, group_strength=1e-3, l1=0.0, l2=0.0, proximal=False, weights=None,
                 mcp_gamma=None):
        self.group_strength = _checked_strength("group_strength", group_strength)
        self.l1 = _checked_strength("l1", l1)
        self.l2 = _checked_strength("l2", l2)
        self.proximal = bool(proximal)
        self.weights = None if weights is None else tuple(
            _checked_strength("weights", weight) for weight in weights)
        self.mcp_gamma = None if mcp_gamma is None else _checked_strength("mcp_gamma", mcp_gamma)
        if self.mcp_gamma == 0:
            raise ValueError("mcp_gamma must be above 0 (None for the group Lasso)")
        # A variable that multiplies every strength, so a path of strengths needs no new
        # graph (common.search.path). A training aid: not saved with the model.
        self.scale = None

    def value(self, kernel):
        """The penalty of `kernel`, whichever way it is applied."""
        return group_sparse_penalty(kernel, self.group_strength, self.l1, self.l2,
                                    scale=self.scale, weights=self.weights,
                                    mcp_gamma=self.mcp_gamma)

    def __call__(self, kernel):
        if self.proximal:  # applied by the optimizer, not through the loss's gradient
            return ops.convert_to_tensor(0.0, dtype=kernel.dtype)
        return self.value(kernel)

    def get_config(self):
        return {"group_strength": self.group_strength, "l1": self.l1, "l2": self.l2,
                "proximal": self.proximal,
                "weights": None if self.weights is None else list(self.weights),
                "mcp_gamma": self.mcp_gamma}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "group" in config:  # files saved before the strength was renamed
            config["group_strength"] = config.pop("group")
        return cls(**config)


# A group that is zero after the first stage gets this many times the largest weight of its
# kernel: removed for good in practice (an infinite weight would make 0 * inf = NaN).
ZERO_GROUP_WEIGHT_FACTOR = 1e3


def adaptive_weights(kernel, gamma=1.0):
    """Adaptive group Lasso weights 1 / ||W_g||**gamma for each group of a trained kernel
    (Zou 2006 for the Lasso; Dinh & Ho 2020 for networks), as a list of floats. Strong
    groups are then shrunk less, weak ones more; a group that is exactly zero gets
    ZERO_GROUP_WEIGHT_FACTOR times the kernel's largest weight, so it stays removed."""
    import numpy as np

    norms = np.asarray(ops.convert_to_numpy(group_norms(kernel)), np.float64)
    if not np.any(norms > 0):
        return [1.0] * len(norms)
    weights = np.zeros_like(norms)
    live = norms > 0
    weights[live] = norms[live] ** -float(gamma)
    weights[~live] = ZERO_GROUP_WEIGHT_FACTOR * weights[live].max()
    return [float(weight) for weight in weights]


def penalty_value(model):
    """The total penalty of `model`'s regularized weights at their current values.

    Equals the sum of `model.losses` from weight regularizers, except that GroupSparse
    penalties applied by a proximal step count too (they add 0 to the loss).
    """
    terms = []
    for variable in model.trainable_variables:
        regularizer = getattr(variable, "regularizer", None)
        if isinstance(regularizer, GroupSparse):
            terms.append(regularizer.value(variable))
        elif regularizer is not None:
            terms.append(regularizer(variable))
    return ops.sum(ops.stack(terms)) if terms else ops.zeros(())
