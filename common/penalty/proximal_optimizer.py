"""ProximalOptimizer: any Keras optimizer's step on the data loss, then the penalty's exact
proximal step (common.penalty.proximal) on every weight whose GroupSparse says `proximal=True`.

    model = build_model(data, (20, 15), GroupSparse(1e-3, proximal=True))
    model.compile(optimizer=ProximalOptimizer(keras.optimizers.Adam(1e-3)), loss="mse")
"""

import warnings

import keras
from keras import ops

# The module, not its names: Keras' import may run while penalties is still loading
# (common/__init__.py registers this module's classes as Keras loads).
from common.penalty import penalties
from common.penalty.proximal import adam_steps, prox_group_sparse


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
            if isinstance(getattr(variable, "regularizer", None), penalties.GroupSparse)
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
        return ops.sum(ops.abs(value), axis=penalties.group_axes(value), keepdims=True) == 0

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
