"""Gradients on whichever Keras backend runs: `tf.GradientTape` on TensorFlow, `jax.grad` on JAX.

    loss, grads = value_and_gradients(lambda: ops.mean(ops.square(model(x) - y)),
                                      model.trainable_variables)

`loss_fn` takes no argument and reads the variables as usual; on JAX it runs inside a
`keras.StatelessScope` that maps each variable to the value being differentiated.
"""

import keras
from keras import ops


def value_and_gradients(loss_fn, variables):
    """(loss_fn(), [d loss / d variable for each of `variables`]) on the current backend."""
    variables = list(variables)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        return loss, tape.gradient(loss, [variable.value for variable in variables])
    if backend == "jax":
        import jax

        def stateless(values):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return loss_fn()

        return jax.value_and_grad(stateless)([variable.value for variable in variables])
    if backend == "torch":
        import torch

        values = [variable.value for variable in variables]
        loss = loss_fn()
        return loss, list(torch.autograd.grad(loss, values, allow_unused=True))
    raise NotImplementedError(f"gradients on the {backend!r} backend are not supported")


def gradient_numpy(loss_fn, variables):
    """The gradients of value_and_gradients as NumPy arrays."""
    return [ops.convert_to_numpy(gradient) for gradient in value_and_gradients(loss_fn, variables)[1]]


def value_and_grad(fn):
    """For a pure `fn(params, *args) -> (value, aux)` (params: a list of tensors), the function
    `(params, *args) -> ((value, aux), d value / d params)` on the current backend: jax's
    value_and_grad, a GradientTape watching the tensors, or torch autograd."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.value_and_grad(fn, has_aux=True)
    if backend == "tensorflow":
        import tensorflow as tf

        def tape_value_and_grad(params, *args):
            with tf.GradientTape() as tape:
                tape.watch(params)
                value, aux = fn(params, *args)
            return (value, aux), tape.gradient(value, params)

        return tape_value_and_grad
    if backend == "torch":
        import torch

        def torch_value_and_grad(params, *args):
            params = [param.detach().requires_grad_(True) for param in params]
            value, aux = fn(params, *args)
            grads = torch.autograd.grad(value, params, allow_unused=True)
            return (value.detach(), aux), [ops.zeros_like(param) if grad is None else grad
                                           for param, grad in zip(params, grads)]

        return torch_value_and_grad
    raise NotImplementedError(f"gradients on the {backend!r} backend are not supported")


def compiled(fn, xla=True):
    """`fn` compiled whole for the current backend: jax.jit on JAX; on TensorFlow a
    tf.function, compiled by XLA when `xla` (a few seconds to compile, then several times
    faster a step: it pays on long runs only); as it is on torch. Its arguments must be
    tensors (or nested lists of them), never Python numbers, or every new value compiles
    again."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=xla and tf.test.is_built_with_xla())
    return fn
