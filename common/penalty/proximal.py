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
Here the maths; `common.penalty.proximal_optimizer.ProximalOptimizer` applies it after any Keras
optimizer's step, and common.search.engine after its own Adam step.
"""

import math

from keras import ops

# The module, not its names: Keras' import may run while penalties is still loading
# (common/__init__.py registers this module's classes as Keras loads).
from common.penalty import penalties

# Newton steps for the group's radius when the step differs between weights (Adam); the
# tests check the result against a float64 bisection (tests/helpers.py).
NEWTON_STEPS = 5


def prox_group_sparse(v, step, group_strength=0.0, l1=0.0, l2=0.0, newton_steps=NEWTON_STEPS,
                      scale=None, weights=None, mcp_gamma=None):
    """argmin_w 1/2 sum((w - v)**2 / step) + s * (group_strength*sqrt(n)*sum_g a_g ||w_g||
    + l1*|w|_1 + l2*|w|^2), with s = `scale` (a number or a scalar tensor; 1 when None) and
    a_g = `weights` (one per group; 1 when None: each group's threshold is then
    group_strength * a_g * sqrt(n)).

    With `mcp_gamma`, the group part is the group MCP (`common.penalty.penalties.group_mcp`): with one
    step t < gamma for every weight its exact prox (0 up to ||v|| = t c, then
    (||v|| - t c) / (1 - t / gamma) along v, and v itself past ||v|| = gamma c); with one step
    per weight, one local linear approximation step (Zou & Li 2008): the group Lasso prox
    with c scaled by MCP's slope at ||v||, max(0, 1 - ||v|| / (gamma c)).

    `step` is a number (the same step for every weight) or an array shaped like `v` (one
    step per weight, all > 0). Groups are the kernel's rows (`common.penalty.penalties`). The three
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
    threshold = group_strength * math.sqrt(penalties.group_size(v))  # c: lambda * sqrt(group size)
    axes = penalties.group_axes(v)
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
