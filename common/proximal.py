"""Exact zeros: the group sparse penalty applied as a proximal step after each optimizer step.

With the penalty inside the loss (the original recipe, a subgradient method), weights only
hover near zero and a threshold decides what is removed. The proximal step instead solves

    w = argmin_w  1/2 * sum_i (w_i - v_i)**2 / t_i  +  penalty(w)

after the optimizer has moved the weights to v using the data loss alone. For the group
Lasso this sets a whole group to exactly 0.0 when its (scaled) norm is under the threshold.

The step sizes t_i are the ones the optimizer used. For Adam that is a different step per
weight, t_i = alpha / (sqrt(v_hat_i) + epsilon), and the proximal problem is solved in that
metric (the idea of Deleu & Bengio, 2021, "Structured sparsity inducing adaptive optimizers
for deep learning"). A group then stays at zero exactly while the norm of its Adam-averaged
data gradient is at most lambda * sqrt(group size): the optimality condition of the
penalized problem, so lambda means the same as in the loss. Other optimizers use t = their
learning rate for every weight (`adaptive=False` forces this for Adam too).

    model = build_model(data, (20, 15), GroupSparse(1e-3, proximal=True))
    model.compile(optimizer=ProximalOptimizer(keras.optimizers.Adam(1e-3)), loss="mse")
"""

import math
import warnings

import keras
from keras import ops

from common.penalties import GroupSparse, _group_axes, group_size

# Newton steps for the group's radius when the step differs between weights (Adam); the
# tests check the result against a float64 bisection (tests/helpers.py).
NEWTON_STEPS = 5


def prox_group_sparse(v, step, group_strength=0.0, l1=0.0, l2=0.0, newton_steps=NEWTON_STEPS,
                      scale=None, weights=None, mcp_gamma=None):
    """argmin_w 1/2 sum((w - v)**2 / step) + s * (group_strength*sqrt(n)*sum_g a_g ||w_g||
    + l1*|w|_1 + l2*|w|^2), with s = `scale` (a number or a scalar tensor; 1 when None) and
    a_g = `weights` (one per group; 1 when None: each group's threshold is then
    group_strength * a_g * sqrt(n)).

    With `mcp_gamma`, the group part is the group MCP (`common.penalties.group_mcp`): with one
    step t < gamma for every weight its exact prox (0 up to ||v|| = t c, then
    (||v|| - t c) / (1 - t / gamma) along v, and v itself past ||v|| = gamma c); with one step
    per weight, one local linear approximation step (Zou & Li 2008): the group Lasso prox
    with c scaled by MCP's slope at ||v||, max(0, 1 - ||v|| / (gamma c)).

    `step` is a number (the same step for every weight) or an array shaped like `v` (one
    step per weight, all > 0). Groups are the kernel's rows (`common.penalties`). The three
    parts compose exactly: L2 rescales v and the metric, then L1 soft-thresholds each
    weight, then the group step shrinks each row or sets it to exactly zero.
    """
    v = ops.convert_to_tensor(v)
    # Which parts exist is decided on the plain numbers; a scale (maybe a tensor) then
    # multiplies their strengths.
    has_group, has_l1, has_l2 = bool(group_strength), bool(l1), bool(l2)
    if scale is not None:
        scale = ops.cast(scale, v.dtype)
        group_strength, l1, l2 = group_strength * scale, l1 * scale, l2 * scale
    uniform = not hasattr(step, "shape") or len(step.shape) == 0
    inverse = 1.0 / (step if uniform else ops.cast(step, v.dtype))  # d_i = 1 / t_i
    if has_l2:
        scaled = inverse + 2.0 * l2
        v = v * (inverse / scaled)
        inverse = scaled
    if has_l1:
        v = ops.sign(v) * ops.maximum(ops.abs(v) - l1 / inverse, 0.0)
    if not has_group:
        return v
    threshold = group_strength * math.sqrt(group_size(v))  # c: lambda * sqrt(group size)
    axes = _group_axes(v)
    squares = ops.sum(ops.square(v), axis=axes, keepdims=True)
    if weights is not None:  # one threshold per group
        threshold = threshold * ops.reshape(ops.cast(ops.convert_to_tensor(weights), v.dtype),
                                            squares.shape)
    nonzero = squares > 0
    norm = ops.where(nonzero, ops.sqrt(ops.where(nonzero, squares, 1.0)), 0.0)
    if mcp_gamma:
        positive = threshold > 0
        safe = ops.where(positive, threshold, 1.0)
        slope = ops.where(positive, ops.maximum(1.0 - norm / (mcp_gamma * safe), 0.0), 0.0)
        if uniform:
            step_size = 1.0 / inverse
            safe_norm = ops.where(nonzero, norm, 1.0)
            middle = ops.maximum(norm - step_size * threshold, 0.0) / (
                (1.0 - step_size / mcp_gamma) * safe_norm)
            exact = ops.where(norm > mcp_gamma * threshold, ops.ones_like(norm), middle)
            approximate = ops.maximum(1.0 - step_size * threshold * slope / safe_norm, 0.0)
            factor = ops.where(step_size < mcp_gamma, exact, approximate)
            return v * ops.where(nonzero, factor, 0.0)
        threshold = threshold * slope
    if uniform:
        # w = max(0, 1 - t*c / ||v||) * v
        safe_norm = ops.where(nonzero, norm, 1.0)
        return v * ops.maximum(1.0 - threshold / (inverse * safe_norm), 0.0)

    # One step per weight: w_i = d_i v_i r / (d_i r + c), with r = ||w|| the root of
    # phi(r) = sum_i (d_i v_i / (d_i r + c))**2 = 1, and w = 0 when ||D v|| <= c.
    # Newton runs on phi**-0.5 - 1, which is exactly linear in r when all steps are equal
    # (the same trick as for the trust-region secular equation), from the bracket
    # ||v|| - c * max_i t_i <= r <= ||v|| - c * min_i t_i.
    scaled_v = inverse * v
    keep = ops.sum(ops.square(scaled_v), axis=axes, keepdims=True) > threshold**2
    low = ops.maximum(norm - threshold / ops.min(inverse, axis=axes, keepdims=True), 0.0)
    high = ops.maximum(norm - threshold / ops.max(inverse, axis=axes, keepdims=True), 0.0)
    radius = low
    for _ in range(newton_steps):
        denominator = inverse * radius + threshold
        ratio_squared = ops.square(scaled_v / denominator)
        phi = ops.maximum(ops.sum(ratio_squared, axis=axes, keepdims=True), 1e-30)
        slope = -2.0 * ops.sum(ratio_squared * inverse / denominator, axis=axes, keepdims=True)
        slope = ops.minimum(slope, -1e-30)  # only dropped groups can reach 0 here
        radius = ops.clip(radius + 2.0 * phi * (1.0 - ops.sqrt(phi)) / slope, low, high)
    shrunk = scaled_v * radius / (inverse * radius + threshold)
    return ops.where(keep, shrunk, ops.zeros_like(v))


def adam_steps(learning_rate, beta_1, beta_2, epsilon, t, velocity):
    """The step Keras' Adam took for each weight at its step `t` (1 for the first):
    w -= alpha * m / (sqrt(v) + eps), so t_i = alpha / (sqrt(v_i) + eps), alpha with the
    bias corrections of step t. The metric the proximal problem is solved in."""
    alpha = learning_rate * ops.sqrt(1.0 - ops.power(beta_2, t)) / (1.0 - ops.power(beta_1, t))
    return alpha / (ops.sqrt(velocity) + epsilon)


def _fused(prox):
    """Inside a TensorFlow graph, `prox` compiled by XLA as one fused kernel: the Newton
    iterations are a few dozen elementwise passes over the kernel, which TensorFlow's graph
    runs one op at a time (on a 320 x 240 kernel, 2.0 ms fused into 1.1 ms; a whole training
    step 11 % faster at that width, 8 % at the demo's). Eagerly (a compilation per call
    would cost more than it saves), on JAX (whose step is compiled whole already) and on
    other backends `prox` runs as it is."""
    if keras.backend.backend() != "tensorflow":
        return prox
    import tensorflow as tf

    if not tf.test.is_built_with_xla():  # a TensorFlow build without XLA
        return prox

    def fused(value, step, *strengths, scale=None, **constants):
        if not tf.inside_function():
            return prox(value, step, *strengths, scale=scale, **constants)
        # Numbers (strengths, weights, gamma) are constants of the compiled kernel; the
        # tensors (the weights, Adam's steps, the path's scale) are its arguments.
        def compute(value, step, scale):
            return prox(value, step, *strengths, scale=scale, **constants)

        if scale is None:
            scale = 1.0
        return tf.function(compute, jit_compile=True)(
            value, tf.cast(step, value.dtype), tf.cast(scale, value.dtype))

    return fused


_prox_step = _fused(prox_group_sparse)  # the optimizer's step (the backend is fixed by now)


class _Untracked:
    """A list that Keras' attribute tracking does not look into."""

    def __init__(self, items):
        self.items = items


def _penalized(variables):
    """(variable, GroupSparse) for the variables whose penalty is applied proximally."""
    return [(variable, variable.regularizer) for variable in variables
            if isinstance(getattr(variable, "regularizer", None), GroupSparse)
            and variable.regularizer.proximal]


@keras.saving.register_keras_serializable(package="group_sparse")
class ProximalOptimizer(keras.optimizers.Optimizer):
    """Wraps any Keras optimizer: its step on the data loss, then the penalty's proximal step.

    The penalties are the `GroupSparse(..., proximal=True)` regularizers on the model's
    weights (they add nothing to the loss themselves). Works in `fit` (steps_per_execution
    included), in a GradientTape loop via `apply_gradients`, and under tf.distribute.

    adaptive: for Adam (and AdamW), solve the proximal problem in Adam's per-weight step
        sizes; False uses the learning rate for every weight.
    freeze_zeros: a group that is exactly zero stays zero for good; by default it revives
        when its data gradient outgrows the penalty's threshold.
    """

    def __init__(self, inner_optimizer, adaptive=True, freeze_zeros=False, name=None, **kwargs):
        super().__init__(learning_rate=0.0, name=name or "proximal", **kwargs)
        if isinstance(inner_optimizer, (str, dict)):
            inner_optimizer = keras.optimizers.get(inner_optimizer)
        if not isinstance(inner_optimizer, keras.optimizers.Optimizer):
            raise ValueError(f"inner_optimizer must be a Keras optimizer, got {inner_optimizer!r}")
        self.inner_optimizer = inner_optimizer
        self.adaptive = bool(adaptive)
        self.freeze_zeros = bool(freeze_zeros)
        self._penalized = _Untracked([])

    @property
    def _targets(self):
        return self._penalized.items

    def build(self, var_list):
        self.inner_optimizer.build(var_list)
        # Out of reach of Keras' attribute tracking: a plain list of the model's kernels here
        # would count them as optimizer variables (JAX then donates one buffer twice, and
        # every saved file carried copies of the kernels).
        self._penalized = _Untracked(_penalized(var_list))
        if not self._targets:
            raise ValueError("ProximalOptimizer found no weight with a GroupSparse(..., "
                             "proximal=True) regularizer: there is nothing to apply")
        super().build(var_list)

    @property
    def variables(self):
        return self._variables + self.inner_optimizer.variables

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        if hasattr(self, "inner_optimizer"):  # the base class sets it before we have one
            self.inner_optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.inner_optimizer.iterations

    def scale_loss(self, loss):
        return self.inner_optimizer.scale_loss(loss)

    def save_own_variables(self, store):
        # The inner optimizer saves its own state in its own entry of the file.
        for index, variable in enumerate(self._variables):
            store[str(index)] = variable.numpy()

    def load_own_variables(self, store):
        own = self._variables
        if len(store.keys()) != len(own):
            warnings.warn(
                f"this file's ProximalOptimizer state holds {len(store.keys())} entries where "
                f"{len(own)} are expected: it was saved before copies of the kernels were "
                "removed from it. The extra entries were skipped; the inner optimizer's state "
                "(its step count and moments) loaded as usual.", stacklevel=2)
        for index, variable in enumerate(own):  # its step count and learning rate come first
            if str(index) in store and tuple(store[str(index)].shape) == tuple(variable.shape):
                variable.assign(store[str(index)])

    def finalize_variable_values(self, var_list):
        self.inner_optimizer.finalize_variable_values(var_list)

    def apply(self, grads, trainable_variables=None):
        if not self.built:
            self.build(trainable_variables)
        # Which groups are zero before the step (read before the inner step writes).
        frozen = [self._zero_groups(variable) if self.freeze_zeros else None
                  for variable, _ in self._targets]
        self.inner_optimizer.apply(grads, trainable_variables)
        moments = [self._second_moments(variable) for variable, _ in self._targets]
        self._apply_prox(moments, frozen)

    @staticmethod
    def _zero_groups(variable):
        value = ops.convert_to_tensor(variable)
        return ops.sum(ops.abs(value), axis=_group_axes(value), keepdims=True) == 0

    def _second_moments(self, variable):
        """Adam's second-moment slot of `variable` when the step is per weight, else None."""
        inner = self.inner_optimizer
        if not (self.adaptive and isinstance(inner, keras.optimizers.Adam)):
            return None
        index = inner._get_variable_index(variable)
        return inner._velocity_hats[index] if inner.amsgrad else inner._velocities[index]

    def _prox_value(self, variable, regularizer, moments, frozen):
        """The proximal step for one variable, with the step the inner optimizer just took."""
        inner = self.inner_optimizer
        value = ops.convert_to_tensor(variable)
        step = ops.cast(inner.learning_rate, value.dtype)
        if moments is not None:  # iterations has already been incremented by the inner step
            step = adam_steps(step, inner.beta_1, inner.beta_2, inner.epsilon,
                              ops.cast(inner.iterations, value.dtype),
                              ops.convert_to_tensor(moments))
        new = _prox_step(
            value, step, regularizer.group_strength, regularizer.l1, regularizer.l2,
            scale=regularizer.scale, weights=regularizer.weights,
            mcp_gamma=regularizer.mcp_gamma)
        if frozen is not None:
            new = ops.where(frozen, ops.zeros_like(new), new)
        return new

    def _apply_prox(self, moments, frozen):
        if keras.backend.backend() != "tensorflow":
            for (variable, regularizer), moment, mask in zip(self._targets, moments, frozen):
                variable.assign(self._prox_value(variable, regularizer, moment, mask))
            return
        import tensorflow as tf

        # As Keras' own weight decay does: one update per variable in the cross-replica
        # context, which under a strategy runs on each replica's copy.
        def cross_replica(distribution, moments, frozen):
            for (variable, regularizer), moment, mask in zip(self._targets, moments, frozen):
                def update(local_variable, local_moment, local_mask, regularizer=regularizer):
                    local_variable.assign(
                        self._prox_value(local_variable, regularizer, local_moment, local_mask))
                if moment is not None:
                    moment = moment.value  # the tf.Variable, so each replica gets its copy
                distribution.extended.update(variable.value, update, args=(moment, mask),
                                             group=False)

        tf.__internal__.distribute.interim.maybe_merge_call(
            cross_replica, tf.distribute.get_strategy(), moments, frozen)

    def get_config(self):
        return {"name": self.name, "adaptive": self.adaptive, "freeze_zeros": self.freeze_zeros,
                "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = keras.saving.deserialize_keras_object(config.pop("inner_optimizer"),
                                                      custom_objects=custom_objects)
        return cls(inner, **config)
