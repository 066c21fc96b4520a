"""The compiled computation of common.engine: one step of every fold, many steps a call.

`FoldStep` is the part of `FoldTrainer` that runs inside the compiled function: each fold's
data loss through the model's layers (`stateless_call`), its penalty
(`penalties.group_sparse_penalty`), Adam as Keras computes it, the proximal step
(`proximal.prox_group_sparse` with Adam's per-weight steps, `proximal.adam_steps`), frozen and
pruned rows held at zero, one record per fold and step, and early stopping on the validation
rows. It reads the trainer's settings (`model`, `task`, `lr`, `penalties`, `kernel_slots`,
`data`, `full_batch`, `num_folds`, `chunk_steps`, `threshold`) and changes none of them.
"""

from keras import ops

from common.counting import active_counts
from common.gradients import value_and_grad
from common.model import row_losses
from common.penalties import group_sparse_penalty
from common.proximal import adam_steps, prox_group_sparse

BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7  # Keras' Adam defaults, as the demos use


class FoldStep:
    """The compiled step of common.engine.FoldTrainer (see the module's docstring)."""

    def _fold_loss(self, params, x, y, mask):
        outputs, _ = self.model.stateless_call(params, [], x, training=True)
        losses = row_losses(self.task, y, outputs)
        if mask is None:
            return ops.mean(losses)
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

    def _objective(self, flat, batch):
        """The sum over folds of each fold's data loss (plus its penalty when it is in the
        loss); the folds' data losses as aux."""
        scale, group_weights, xs, ys, masks = batch
        size = len(self.params[0])
        total, losses = 0.0, []
        for fold in range(self.num_folds):
            params = flat[fold * size:(fold + 1) * size]
            loss = self._fold_loss(params, xs[fold], ys[fold], masks[fold])
            losses.append(loss)
            if self.penalty_in_loss:  # the subgradient solver: the originals' recipe
                loss = loss + self._penalty(params, scale, group_weights[fold], True)
            total = total + loss
        return total, ops.stack(losses)

    def _run_chunk(self, state, stopping, controls, batches, offset, num_steps):
        self.traces += 1  # Python runs here only while tracing
        scale, freeze_zeros, group_weights, keep, check, patience = controls
        gradient = value_and_grad(self._objective)
        records = ops.zeros((self.chunk_steps, self.num_folds, 2 + len(self.kernel_slots)))
        kernel_set = set(self.kernel_slots)

        def step(index, carry):
            (params, moments, velocities, steps), stopping, records = carry
            best, best_loss, wait, running = stopping
            active = ops.logical_and(batches[0][index], running)
            if self.full_batch:
                xs = [x for x, _, _, _ in self.data]
                ys = [y for _, y, _, _ in self.data]
                masks = [None] * self.num_folds
            else:
                rows = batches[1][index]
                xs = [ops.take(x, rows[fold], axis=0) for fold, (x, *_) in enumerate(self.data)]
                ys = [ops.take(y, rows[fold], axis=0)
                      for fold, (_, y, *_) in enumerate(self.data)]
                masks = [batches[2][index][fold] for fold in range(self.num_folds)]
            flat = [value for fold in params for value in fold]
            (_, losses), grads = gradient(flat, (scale, group_weights, xs, ys, masks))
            size = len(params[0])
            new_state = ([], [], [], [])
            row_records = []
            for fold in range(self.num_folds):
                go = active[fold]
                t = steps[fold] + 1.0
                alpha = self.lr * ops.sqrt(1.0 - BETA_2 ** t) / (1.0 - BETA_1 ** t)
                fold_params, fold_m, fold_v = [], [], []
                kernel_index = 0
                for slot in range(size):
                    value, g = params[fold][slot], grads[fold * size + slot]
                    m = moments[fold][slot] + (g - moments[fold][slot]) * (1.0 - BETA_1)
                    v = velocities[fold][slot] + (ops.square(g) - velocities[fold][slot]) * (
                        1.0 - BETA_2)
                    new = value - (m * alpha) / (ops.sqrt(v) + EPSILON)
                    if slot in kernel_set:
                        penalty = self.penalties[kernel_index]
                        if penalty is not None and penalty[4]:  # the proximal step
                            group, l1, l2, gamma, _ = penalty
                            new = prox_group_sparse(
                                new, adam_steps(self.lr, BETA_1, BETA_2, EPSILON, t, v),
                                group, l1, l2, scale=scale,
                                weights=group_weights[fold][kernel_index], mcp_gamma=gamma)
                        zero_before = ops.sum(ops.abs(value), axis=1, keepdims=True) == 0
                        frozen = ops.logical_or(
                            ops.logical_and(freeze_zeros, zero_before),
                            ops.expand_dims(keep[fold][kernel_index] == 0, 1))
                        new = ops.where(frozen, ops.zeros_like(new), new)
                        kernel_index += 1
                    fold_params.append(ops.where(go, new, value))
                    fold_m.append(ops.where(go, m, moments[fold][slot]))
                    fold_v.append(ops.where(go, v, velocities[fold][slot]))
                new_state[0].append(fold_params)
                new_state[1].append(fold_m)
                new_state[2].append(fold_v)
                new_state[3].append(ops.where(go, t, steps[fold]))
                kernels = [fold_params[slot] for slot in self.kernel_slots]
                row_records.append(ops.concatenate([
                    ops.reshape(losses[fold], (1,)),
                    ops.reshape(self._penalty(fold_params, scale, group_weights[fold]), (1,)),
                    ops.cast(active_counts(kernels, self.threshold), "float32")]))
            params, moments, velocities = new_state[0], new_state[1], new_state[2]
            steps = ops.stack(new_state[3])
            records = ops.slice_update(records, (index, 0, 0),
                                       ops.expand_dims(ops.stack(row_records), 0))
            done = offset + index + 1
            is_check = ops.logical_and(check > 0, done % ops.maximum(check, 1) == 0)

            def checked():
                return self._early_stopping(params, best, best_loss, wait, running, patience)

            stopping = ops.cond(is_check, checked, lambda: (best, best_loss, wait, running))
            return (params, moments, velocities, steps), stopping, records

        state, stopping, records = ops.fori_loop(0, num_steps, step,
                                                 (state, stopping, records))
        return state, stopping, records

    def _early_stopping(self, params, best, best_loss, wait, running, patience):
        """One check: each running fold's validation loss against its best so far."""
        losses = ops.stack([self._fold_loss(params[fold], x_val, y_val, None)
                            for fold, (_, _, x_val, y_val) in enumerate(self.data)])
        improved = ops.logical_and(running, losses < best_loss)
        best = [[ops.where(improved[fold], value, old) for value, old in zip(params[fold],
                                                                              best[fold])]
                for fold in range(self.num_folds)]
        best_loss = ops.where(improved, losses, best_loss)
        wait = ops.where(improved, 0, wait + ops.cast(running, "int32"))
        running = ops.logical_and(running, wait < patience)
        return best, best_loss, wait, running
