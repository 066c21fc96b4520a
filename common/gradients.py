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
