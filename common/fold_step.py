"""The compiled computation of common.engine: one step of every fold, many steps a call.

`FoldStep` is the part of `FoldTrainer` that runs inside the compiled function. The folds'
arrays are stacked: every weight, Adam moment and row of data has a leading fold axis
[K, ...]. `_fold_step` is one training step of ONE fold, written for ordinary unstacked
arrays: its data loss through the model's layers (`stateless_call`), its penalty
(`penalties.group_sparse_penalty`), Adam as Keras computes it, the proximal step
(`proximal.prox_group_sparse` with Adam's per-weight steps, `proximal.adam_steps`), frozen and
pruned rows held at zero, and its record. `ops.vectorized_map` runs it on every fold at once
(tf.vectorized_map, jax.vmap): inside it each kernel is 2-D again, so a group is one row of
one fold's kernel, never pooled across folds, and each fold's gradient is its own. Folds of
unequal size are padded to the longest, the padding rows weighted 0 in the mean (`mask`).
It reads the trainer's settings (`model`, `task`, `lr`, `penalties`, `kernel_slots`, the
stacked data, `full_batch`, `num_folds`, `chunk_steps`, `threshold`) and changes none of them.
"""

from keras import ops

from common.counting import active_counts
from common.gradients import value_and_grad
from common.model import row_losses
from common.penalties import group_sparse_penalty
from common.proximal import adam_steps, prox_group_sparse

BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7  # Keras' Adam defaults, as the demos use


def per_fold(flags, like):
    """A [K] vector shaped to broadcast against a stacked [K, ...] array."""
    return ops.reshape(flags, (-1,) + (1,) * (len(like.shape) - 1))


class FoldStep:
    """The compiled step of common.engine.FoldTrainer (see the module's docstring)."""

    def _fold_loss(self, params, x, y, mask):
        """One fold's mean data loss over the rows where `mask` is 1 (the others' losses,
        finite or not, never enter it)."""
        outputs, _ = self.model.stateless_call(params, [], x, training=True)
        losses = ops.where(mask > 0, row_losses(self.task, y, outputs), 0.0)
        return ops.sum(losses * mask) / ops.maximum(ops.sum(mask), 1.0)

    def _penalty(self, params, scale, group_weights, in_loss_only=False):
        """The penalty of one fold's kernels (only the parts in the loss, not those applied
        by the proximal step, when `in_loss_only`)."""
        total = ops.convert_to_tensor(0.0)
        for slot, penalty, weights in zip(self.kernel_slots, self.penalties, group_weights):
            if penalty is not None and not (in_loss_only and penalty[4]):
                group, l1, l2, gamma, _ = penalty
                total = total + group_sparse_penalty(params[slot], group, l1, l2, scale=scale,
                                                     weights=weights, mcp_gamma=gamma)
        return total

    def _objective(self, params, x, y, mask, scale, group_weights):
        """One fold's data loss, plus its penalty when that is in the loss (the subgradient
        solver: the originals' recipe); the data loss alone as aux."""
        loss = self._fold_loss(params, x, y, mask)
        if self.penalty_in_loss:
            return loss + self._penalty(params, scale, group_weights, True), loss
        return loss, loss

    def _fold_step(self, fold, scale, freeze_zeros):
        """One step of one fold. `fold`: its weights, Adam moments and velocities (lists in
        model.get_weights() order), step count, whether it trains this step, group weights
        and kept rows (one vector per kernel), and its batch (x, y, mask). Returns the new
        weights, moments, velocities and step count, and the step's record (data loss,
        penalty, active units per kernel, all after the step)."""
        params, moments, velocities, t, go, group_weights, keep, x, y, mask = fold
        (_, loss), grads = value_and_grad(self._objective)(params, x, y, mask, scale,
                                                           group_weights)
        t_next = t + 1.0
        alpha = self.lr * ops.sqrt(1.0 - BETA_2 ** t_next) / (1.0 - BETA_1 ** t_next)
        new_params, new_m, new_v = [], [], []
        kernel_index = 0
        for slot, (value, g) in enumerate(zip(params, grads)):
            m = moments[slot] + (g - moments[slot]) * (1.0 - BETA_1)
            v = velocities[slot] + (ops.square(g) - velocities[slot]) * (1.0 - BETA_2)
            new = value - (m * alpha) / (ops.sqrt(v) + EPSILON)
            if slot in self.kernel_slots:
                penalty = self.penalties[kernel_index]
                if penalty is not None and penalty[4]:  # the proximal step
                    group, l1, l2, gamma, _ = penalty
                    new = prox_group_sparse(
                        new, adam_steps(self.lr, BETA_1, BETA_2, EPSILON, t_next, v),
                        group, l1, l2, scale=scale, weights=group_weights[kernel_index],
                        mcp_gamma=gamma)
                zero_before = ops.sum(ops.abs(value), axis=1, keepdims=True) == 0
                frozen = ops.logical_or(ops.logical_and(freeze_zeros, zero_before),
                                        ops.expand_dims(keep[kernel_index] == 0, 1))
                new = ops.where(frozen, ops.zeros_like(new), new)
                kernel_index += 1
            new_params.append(ops.where(go, new, value))  # a fold that sits out stays put
            new_m.append(ops.where(go, m, moments[slot]))
            new_v.append(ops.where(go, v, velocities[slot]))
        kernels = [new_params[slot] for slot in self.kernel_slots]
        record = ops.concatenate([
            ops.reshape(loss, (1,)),
            ops.reshape(self._penalty(new_params, scale, group_weights), (1,)),
            ops.cast(active_counts(kernels, self.threshold), "float32")])
        return new_params, new_m, new_v, ops.where(go, t_next, t), record

    def _run_chunk(self, state, stopping, controls, batches, offset, num_steps):
        self.traces += 1  # Python runs here only while tracing
        scale, freeze_zeros, group_weights, keep, check, patience, stop_mask = controls
        records = ops.zeros((self.chunk_steps, self.num_folds, 2 + len(self.kernel_slots)))
        x, y, row_mask = self.x, self.y, self.row_mask

        def one_fold(fold):
            if not self.full_batch:  # this step's batch of the fold's rows
                *fold, rows, mask = fold
                fold[-3] = ops.take(fold[-3], rows, axis=0)
                fold[-2] = ops.take(fold[-2], rows, axis=0)
                fold[-1] = mask
            return self._fold_step(fold, scale, freeze_zeros)

        def step(index, carry):
            (params, moments, velocities, steps), stopping, records = carry
            best, best_loss, wait, running = stopping
            active = ops.logical_and(batches[0][index], running)
            folds = [params, moments, velocities, steps, active, group_weights, keep, x, y,
                     row_mask]
            if not self.full_batch:
                folds += [batches[1][index], batches[2][index]]
            params, moments, velocities, steps, rows = ops.vectorized_map(one_fold, folds)
            records = ops.slice_update(records, (index, 0, 0), ops.expand_dims(rows, 0))
            done = offset + index + 1
            is_check = ops.logical_and(check > 0, done % ops.maximum(check, 1) == 0)

            def checked():
                return self._early_stopping(params, best, best_loss, wait, running, patience,
                                            stop_mask)

            stopping = ops.cond(is_check, checked, lambda: (best, best_loss, wait, running))
            return (params, moments, velocities, steps), stopping, records

        return ops.fori_loop(0, num_steps, step, (state, stopping, records))

    def _early_stopping(self, params, best, best_loss, wait, running, patience, stop_mask):
        """One check: each running fold's loss on its validation rows that `stop_mask`
        marks, against its best so far."""
        losses = ops.vectorized_map(lambda fold: self._fold_loss(*fold),
                                    [params, self.x_val, self.y_val, stop_mask])
        improved = ops.logical_and(running, losses < best_loss)
        best = [ops.where(per_fold(improved, value), value, old)
                for value, old in zip(params, best)]
        best_loss = ops.where(improved, losses, best_loss)
        wait = ops.where(improved, 0, wait + ops.cast(running, "int32"))
        running = ops.logical_and(running, wait < patience)
        return best, best_loss, wait, running
