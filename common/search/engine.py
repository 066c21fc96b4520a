"""K folds of one network trained side by side, many steps per compiled call.

    trainer = FoldTrainer(model, folds, task="regression", lr=1e-3, batch_size=None, seed=0)
    rows = trainer.train(1500, stream=(0,))                 # the dense networks, lambda 0
    rows = trainer.train(100, stream=(1, 1), scale=0.5)     # a path point: base lambda x 0.5

Fold k is a separate run: its own rows, data loss, Adam moments and step count, proximal
step, adaptive weights and counts. The folds' weights are stacked, one array [K, ...] per
weight of the model, and one fold's step (common.search.engine) runs on every fold at once
(`ops.vectorized_map`), through the model's layers (`model.stateless_call`), each fold
differentiating its own mean data loss. λ enters as `scale` on every
GroupSparse strength: in the loss (subgradient solver, `penalties.group_sparse_penalty`) or
in `proximal.prox_group_sparse` after Adam's step, with Adam's per-weight steps
(`proximal.adam_steps`), as ProximalOptimizer does. λ, the adaptive weights, the frozen rows
and the early-stopping settings are tensors: one compilation serves a whole path,
fine-tuning included. Each step writes one record per fold (data loss, penalty and active
units per layer after the step), returned by the call. More in common/README.md.

The compiled step. The folds' arrays are stacked: every weight, Adam moment and row of data
has a leading fold axis [K, ...]. `_fold_step` is one training step of ONE fold, written for
ordinary unstacked arrays: its data loss through the model's layers (`stateless_call`), its
penalty, Adam as Keras computes it, the proximal step, frozen and pruned rows held at zero,
and its record. `ops.vectorized_map` runs it on every fold at once (tf.vectorized_map,
jax.vmap): inside it each kernel is 2-D again, so a group is one row of one fold's kernel,
never pooled across folds, and each fold's gradient is its own. Folds of unequal size are
padded to the longest, the padding rows weighted 0 in the mean (`mask`).
"""

import time
from typing import NamedTuple

import numpy as np
from keras import ops

from common.penalty.penalties import GroupSparse, group_sparse_penalty
from common.penalty.proximal import adam_steps, prox_group_sparse
from common.shrink.counting import active_counts
from common.training.batches import batch_rows, chunk_of, fold_plan
from common.training.gradients import compiled, value_and_grad
from common.training.model import row_losses

CHUNK_STEPS = 250  # steps per compiled call (at most): a fixed size, so one compilation
# XLA's compile (3-6 s on 2 cores) saves about 0.15 ms a fold-step (0.05 against 0.2): it
# pays from about this many fold-steps on.
XLA_FOLD_STEPS = 30_000
BETA_1, BETA_2, EPSILON = 0.9, 0.999, 1e-7  # Keras' Adam defaults, as the demos use


class KernelPenalty(NamedTuple):
    """One kernel's GroupSparse strengths, as the compiled step reads them."""
    group: float
    l1: float
    l2: float
    mcp_gamma: float | None
    proximal: bool

    @classmethod
    def of(cls, regularizer):
        """The strengths of `regularizer`; None when it is not a GroupSparse."""
        if not isinstance(regularizer, GroupSparse):
            return None
        return cls(regularizer.group_strength, regularizer.l1, regularizer.l2,
                   regularizer.mcp_gamma, regularizer.proximal)


def per_fold(flags, like):
    """A [K] vector shaped to broadcast against a stacked [K, ...] array."""
    return ops.reshape(flags, (-1,) + (1,) * (len(like.shape) - 1))


class FoldTrainer:
    """`model`'s network trained on each of `folds` ((x_train, y_train, x_val, y_val) each)
    from `start_weights` (model.get_weights() order; the model's current weights when None).
    The validation rows serve early stopping only. `model` itself is never changed: it only
    lends its layers (`stateless_call`) and its GroupSparse settings. `xla`: compile with
    XLA on TensorFlow (worth its seconds from about XLA_FOLD_STEPS fold-steps on)."""

    def __init__(self, model, folds, task, lr, batch_size, seed, threshold=0.0,
                 chunk_steps=CHUNK_STEPS, start_weights=None, xla=True):
        self.model, self.task, self.lr, self.seed = model, task, float(lr), seed
        self.threshold, self.chunk_steps = float(threshold), int(chunk_steps)
        self.num_folds = len(folds)
        variables = model.trainable_variables
        self.kernel_slots = [index for index, variable in enumerate(variables)
                             if len(variable.shape) == 2]
        # Per kernel: its KernelPenalty, or None.
        self.penalties = [KernelPenalty.of(getattr(variables[index], "regularizer", None))
                          for index in self.kernel_slots]
        self.penalty_in_loss = any(penalty is not None and not penalty.proximal
                                   for penalty in self.penalties)
        self.rows = [len(x) for x, _, _, _ in folds]
        self.val_rows = [len(x) for _, _, x, _ in folds]
        self.batch_size = batch_size
        self.full_batch = all(batch_rows(rows, batch_size) == rows for rows in self.rows)
        # The folds' rows stacked [K, rows, ...], padded to the longest (mask 0 there).
        self.x, self.y, self.row_mask = stacked([(x, y) for x, y, _, _ in folds])
        self.x_val, self.y_val, self.val_mask = stacked([(x, y) for _, _, x, y in folds])
        start = start_weights or [ops.convert_to_numpy(variable) for variable in variables]
        self.params = [ops.convert_to_tensor(np.stack([np.asarray(value, np.float32)] *
                                                      self.num_folds)) for value in start]
        self.group_weights = [ops.ones((self.num_folds, variables[index].shape[0]))
                              for index in self.kernel_slots]
        self.reset_optimizer()
        self.traces = 0  # how often the compiled function was traced (tests count them)
        self.timing = [0.0, 0]  # seconds and steps (all K folds at once) of the calls that did
        # not trace
        self._chunk = compiled(self._run_chunk, xla)

    # -- state a caller reads and sets --------------------------------------------------

    def reset_optimizer(self):
        """A fresh Adam for every fold (moments 0, step count 0)."""
        self.moments = [ops.zeros_like(value) for value in self.params]
        self.velocities = [ops.zeros_like(value) for value in self.params]
        self.steps = ops.zeros((self.num_folds,))

    def weights(self, fold):
        """Fold `fold`'s network as NumPy arrays, in the order of model.get_weights()."""
        return [np.array(ops.convert_to_numpy(value)[fold]) for value in self.params]

    def kernels(self, fold):
        return [self.weights(fold)[index] for index in self.kernel_slots]

    def set_weights(self, fold, weights):
        """Fold `fold`'s network from arrays in the order of model.get_weights()."""
        self.params = replaced(self.params, fold, weights)

    def set_group_weights(self, fold, weights):
        """Adaptive group Lasso weights for `fold`: one list per kernel, one weight per row."""
        self.group_weights = replaced(self.group_weights, fold, weights)

    def set_optimizer_state(self, fold, moments, velocities, step):
        """Fold `fold` continues an Adam run: its moments and velocities (model.get_weights()
        order) and the steps it has taken."""
        self.moments = replaced(self.moments, fold, moments)
        self.velocities = replaced(self.velocities, fold, velocities)
        self.steps = replaced([self.steps], fold, [step])[0]

    def optimizer_state(self, fold):
        """Fold `fold`'s Adam: (moments, velocities, steps taken), for set_optimizer_state."""
        numpy = ops.convert_to_numpy
        return ([numpy(value)[fold] for value in self.moments],
                [numpy(value)[fold] for value in self.velocities], float(numpy(self.steps)[fold]))

    def state(self):
        """Every fold's weights, Adam moments and velocities, and step counts: new lists
        (of immutable tensors), which later set_* calls leave alone."""
        return list(self.params), list(self.moments), list(self.velocities), self.steps

    def restore(self, state):
        self.params, self.moments, self.velocities = (list(part) for part in state[:3])
        self.steps = state[3]

    def predict(self, fold, x, params=None):
        """Fold `fold`'s predictions for rows `x` (NumPy), from `params` or its weights."""
        values = ([ops.convert_to_tensor(value) for value in params] if params is not None
                  else [value[fold] for value in self.params])
        outputs, _ = self.model.stateless_call(values, [], ops.convert_to_tensor(x))
        return np.asarray(ops.convert_to_numpy(outputs))

    # -- training ------------------------------------------------------------------------

    def train(self, epochs, stream, scale=0.0, freeze_zeros=False, keep=None, patience=None,
              check_epochs=1, on_chunk=None, folds=None, stop_rows=None):
        """Train every fold `epochs` epochs; returns each fold's records, an array [steps,
        2 + layers] (data loss, penalty, active units per layer) per fold.

        `stream` names the stage's batches (common.training.batches.stage_indices(..., *stream, fold)).
        `scale`: the strengths' multiplier (0: no penalty). `freeze_zeros`: a row that is
        exactly zero before a step stays zero. `keep`: per fold, per kernel, 1 for a row that
        trains and 0 for one held at zero (fine-tuning a pruned network). `patience`: every
        `check_epochs` epochs the validation loss is computed, a fold stops once it has not
        improved for `patience` checks, and each fold ends with its best weights (Keras'
        EarlyStopping with restore_best_weights). `stop_rows`: per fold, a 0/1 vector over its
        validation rows; early stopping reads only the rows marked 1 (all of them when None).
        `on_chunk(steps_done, records)` runs between compiled calls with that call's records,
        per fold (progress, signals); returning False ends the stage there. `folds`: one bool
        per fold, False for a fold that sits this stage out (its weights and Adam untouched);
        every fold trains when None."""
        plan = fold_plan(self.rows, self.batch_size, epochs, self.seed, stream)
        steps_per_epoch = plan["steps_per_epoch"]
        total = epochs * steps_per_epoch
        # Kept rows, stacked per kernel [K, rows].
        keep = [ops.convert_to_tensor(np.stack([np.asarray(fold[kernel], np.float32)
                                                for fold in keep]))
                for kernel in range(len(self.kernel_slots))] if keep else [
            ops.ones_like(value) for value in self.group_weights]
        check = check_epochs * steps_per_epoch if patience else 0
        tensor = ops.convert_to_tensor
        with np.errstate(over="ignore"):  # a scale past float32's range is inf, as assigned
            scale = np.float32(scale)
        controls = (tensor(scale), tensor(bool(freeze_zeros)), self.group_weights, keep,
                    tensor(int(check), "int32"), tensor(int(patience or 0), "int32"),
                    self.stop_mask(stop_rows))
        inf = ops.convert_to_tensor(np.full(self.num_folds, np.inf, np.float32))
        running = np.ones(self.num_folds, bool) if folds is None else np.asarray(folds, bool)
        stopping = (self.params, inf, ops.zeros((self.num_folds,), "int32"), tensor(running))
        records = []
        # A call covers whole epochs where one fits in chunk_steps; its slots are padded to
        # chunk_steps, the compiled length.
        per_call = min(max(self.chunk_steps // steps_per_epoch, 1) * steps_per_epoch,
                       self.chunk_steps)
        for start in range(0, total, per_call):
            size = min(per_call, total - start)
            batches = chunk_of(plan, start, size, self.chunk_steps)
            traces, started = self.traces, time.perf_counter()
            state, stopping, rows = self._chunk(
                self.state(), stopping, controls, batches,
                ops.convert_to_tensor(start, "int32"), ops.convert_to_tensor(size, "int32"))
            self.restore(state)
            records.append(np.asarray(ops.convert_to_numpy(rows))[:size])
            if self.traces == traces:  # a call that traced (and compiled) is not timed
                self.timing[0] += time.perf_counter() - started
                self.timing[1] += size
            if on_chunk is not None:
                if on_chunk(start + size, fold_rows(records[-1],
                                                    plan["active"][start:start + size],
                                                    running)) is False:
                    break
            if patience and not np.any(ops.convert_to_numpy(stopping[3])):
                break
        if patience:
            best, ended = stopping[0], ops.convert_to_tensor(
                np.isfinite(ops.convert_to_numpy(stopping[1])))  # a check was reached
            self.params = [ops.where(per_fold(ended, value), value, now)
                           for value, now in zip(best, self.params)]
        rows = np.concatenate(records) if records else np.zeros((0, self.num_folds, 0))
        return fold_rows(rows, plan["active"][:len(rows)], running)

    def stop_mask(self, stop_rows):
        """The validation rows early stopping reads, stacked [K, rows] like val_mask: every
        fold's own rows when `stop_rows` is None, else those its 0/1 vector marks."""
        if stop_rows is None:
            return self.val_mask
        sizes = [len(rows) for rows in stop_rows]
        if sizes != self.val_rows:
            raise ValueError(f"stop_rows must mark each fold's validation rows "
                             f"({self.val_rows}), got vectors of {sizes}")
        return self.val_mask * stacked([(rows, rows) for rows in stop_rows])[0]

    def masked(self, weights, threshold):
        """One fold's weights with every kernel row at or under `threshold` (sum |w|) set to
        zero, the function of its pruned network; and per kernel, 1 for a kept row, 0 else."""
        weights = [np.array(value, np.float32) for value in weights]
        masks = [np.sum(np.abs(weights[slot]), axis=1) > threshold for slot in self.kernel_slots]
        for slot, mask in zip(self.kernel_slots, masks):
            weights[slot][~mask] = 0.0
        return weights, [mask.astype(np.float32) for mask in masks]

    def finetune(self, weights, epochs, stream, threshold=0.0, patience=None, on_chunk=None,
                 stop_rows=None):
        """Each fold's pruned network (`weights`: one list of arrays per fold) trained
        `epochs` more epochs on its data loss alone with a fresh Adam, as
        common.training.fitting.finetune trains a pruned model: its rows at or under `threshold`
        are set to zero and held there (the masked network computes what the pruned one
        does). With `patience` (epochs), early stopping on the validation rows, checked
        every few epochs, keeps each fold's best weights (epochs after the last check count
        only if that check was the best); `stop_rows` (see train) limits the rows it reads.
        Returns the fine-tuned weights; the trainer's own state (the path's weights and Adam)
        is left as it was."""
        saved, keep = self.state(), []
        for fold, fold_weights in enumerate(weights):
            fold_weights, fold_keep = self.masked(fold_weights, threshold)
            self.set_weights(fold, fold_weights)
            keep.append(fold_keep)
        self.reset_optimizer()
        check = max(1, min(50, patience // 5)) if patience else 1  # as fitting.finetune
        self.train(epochs, stream, keep=keep, check_epochs=check,
                   patience=-(-patience // check) if patience else None, on_chunk=on_chunk,
                   stop_rows=stop_rows)
        tuned = [self.weights(fold) for fold in range(self.num_folds)]
        self.restore(saved)
        return tuned


    # -- the compiled step (see the module's docstring) ---------------------------------

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
            if penalty is not None and not (in_loss_only and penalty.proximal):
                total = total + group_sparse_penalty(
                    params[slot], penalty.group, penalty.l1, penalty.l2, scale=scale,
                    weights=weights, mcp_gamma=penalty.mcp_gamma)
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
                if penalty is not None and penalty.proximal:  # the proximal step
                    new = prox_group_sparse(
                        new, adam_steps(self.lr, BETA_1, BETA_2, EPSILON, t_next, v),
                        penalty.group, penalty.l1, penalty.l2, scale=scale,
                        weights=group_weights[kernel_index], mcp_gamma=penalty.mcp_gamma)
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


def stacked(pairs):
    """Per fold (x, y) rows, stacked [K, rows, ...] and padded with zero rows to the longest
    fold: (x, y, mask), mask [K, rows] 1 for a fold's own row and 0 for padding."""
    longest = max(len(x) for x, _ in pairs)

    def pad(array):
        array = np.asarray(array)
        return np.concatenate([array, np.zeros((longest - len(array), *array.shape[1:]),
                                               array.dtype)])

    rows = np.stack([pad(np.asarray(x, np.float32)) for x, _ in pairs])
    targets = np.stack([pad(y) for _, y in pairs])
    mask = np.stack([np.arange(longest) < len(x) for x, _ in pairs]).astype(np.float32)
    tensor = ops.convert_to_tensor
    return tensor(rows), tensor(targets), tensor(mask)


def replaced(values, fold, new):
    """Stacked [K, ...] tensors with fold `fold`'s slice replaced by the arrays `new`."""
    out = []
    for value, part in zip(values, new):
        array = np.array(ops.convert_to_numpy(value))
        array[fold] = np.asarray(part, array.dtype)
        out.append(ops.convert_to_tensor(array))
    return out


def fold_rows(rows, active, running):
    """Each fold's own records from rows [slot, fold, ...]: the slots it trained in."""
    return [rows[active[:, fold], fold] if running[fold] else rows[:0, fold]
            for fold in range(rows.shape[1])]


def finite(records):
    """Whether every record's data loss and penalty is finite."""
    return all(np.all(np.isfinite(rows[:, :2])) for rows in records if len(rows))

