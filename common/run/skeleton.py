"""The run skeleton both demos plug into: what a reader of the method need not see.

    run = Run("keras", config, data)      # the seed, strategy, run folder, settings line
    with run.strategy.scope():
        model = ...                       # the demo builds the network with GroupSparse
        optimizer = ...                   # and its optimizer, in view
    run.start(model, optimizer, build)    # `build()`: a fresh network, for the search
    with run.stopping():                  # Ctrl-C and SIGTERM stop training, never a write
        run.train(train_epochs, show)     # the stages; what was done is kept however it ends
        pruned = prune_model(model, ...) if run.prunable() else None
        summary = run.finish(steps, pruned, files)  # the summary, pruned.keras, run.json

A demo supplies how it trains N epochs (the GradientTape loop; fit) and how it shows (its
TensorBoard scalars; the Matplotlib history); after each chunk of training it calls
`chunk_done`. The stages are the epochs (two halves with --adaptive), the lambda path and its
cross-validation folds (common.run.stages, calling common.search), and the fine-tuning of the
pruned network (--finetune): every one of them stops on a signal or a full disk. Only
`finish`, which writes, holds signals back until its files are whole.
"""

import contextlib
import math
import sys
import time
from pathlib import Path

import keras
import numpy as np

from common.shrink.counting import count_active_units
from common.training.distribute import is_chief, make_strategy
from common.outputs.files import is_disk_full_message, new_run_dir
from common.training.fitting import finetune
from common.run.lifecycle import raise_if_stopped, stop_on_signals, stop_status
from common.training.model import evaluate, loss_name
from common.shrink.pruning import prune_model, thresholded_copy, with_scaling
from common.outputs.report import ProgressBar, print_config
from common.run.stages import PathRun
from common.outputs.summary import Outcome, finish_run


class Run:
    """One run of a demo: the model it trains, how training went, and its run folder.

    `on_progress(done)` is called after every chunk of training (done in the demo's unit:
    steps or epochs); raising KeyboardInterrupt there stops the run like Ctrl-C.
    """

    def __init__(self, demo, config, data, on_progress=None, unit="step"):
        self.demo, self.config, self.data, self.unit = demo, config, data, unit
        # What the outputs read: every setting, and those that differ from the defaults.
        self.settings, self.changed = config.settings(), config.changed(demo)
        self.on_progress = on_progress
        self._started = time.perf_counter()
        self.strategy = make_strategy(config.strategy)  # first: multi-worker set-up comes first
        self.chief = is_chief(self.strategy)  # only the chief writes files
        keras.utils.set_random_seed(config.seed)  # before the demo builds its network
        raise_if_stopped()  # a signal since the script started: no run folder is made
        self.run_dir = new_run_dir(config.logdir, demo, self.chief)
        print_config(config.applying(), demo)
        self.model = self.optimizer = self.outcome = self.path = None  # until start
        # Evaluated during training: the validation split with --path (the test split is read
        # once, after the choice), else the test split.
        self.split = "val" if config.path else "test"
        # The epochs of every stage: the run's own, and the path's points.
        self.total_epochs = config.epochs + PathRun.epochs_of(config)
        self.done, self.chosen, self.finetuned = 0, None, None
        self.point_ends = []  # (index, done) of each kept path point, in the demo's unit
        self.engine_steps = 0  # the path's steps, trained by common/search/engine.py
        self._timing = [0.0, 0]  # seconds and steps, the chunks that traced left out
        self._shield = self.progress = None
        self._retraced = False  # the penalty changed: the demo's step is traced again

    def start(self, model, optimizer, build):
        """The network the demo built (under `strategy.scope()`) and its optimizer; `build()`
        makes a fresh network of the same settings, whose layers the search borrows."""
        self.model, self.optimizer = model, optimizer
        with self.strategy.scope():
            optimizer.build(model.trainable_variables)  # before a graph is traced
        self.outcome = Outcome("completed", 0, count_active_units(model, self.config.threshold),
                               self._started, startup_seconds(self._started))
        self.path = PathRun(self.config, self.data, model, build)  # lambda 0 until it starts

    def evaluate(self, model=None):
        """The metrics of the model on the split evaluated during training."""
        return evaluate(model or self.model, self.data, split=self.split)

    @contextlib.contextmanager
    def stopping(self):
        """SIGINT, SIGTERM and SIGHUP stop training inside this block, at the end of the chunk
        of steps they land in; `train` ends by holding them back, so that what `finish` writes
        is whole."""
        with stop_on_signals(at_once=False) as shield:
            self._shield = shield
            yield self

    def train(self, train_epochs, show=None, per_epoch=1, on_point=None,
              on_penalty_change=None):
        """The stages, each trained by the demo's `train_epochs(epochs)` (False when the loss
        diverged) or by the engine (its records shown by `show(records)`). `per_epoch` is
        how many of the demo's units make one epoch; `on_point(point)` is called for each
        kept path point, `on_penalty_change()` when the penalty's constants changed."""
        self.progress = ProgressBar(self.total_epochs * per_epoch)

        def point_kept(point):  # where each point's training ended, for the pictures
            self.point_ends.append((point.index, self.done))
            if on_point is not None:
                on_point(point)

        def penalty_changed():  # the next chunk traces the step again: not timed
            self._retraced = True
            if on_penalty_change is not None:
                on_penalty_change()

        try:
            if self.path.train(train_epochs, show, point_kept, penalty_changed,
                               on_chunk=raise_if_stopped):
                self.chosen = self.path.finish()  # the model now holds the chosen weights
                if self.config.finetune:
                    self.finetuned = self.finetune()
            else:  # the demo's loop says how; the search's dense stage may not have
                self.diverged(f"not finite in the dense stage, by {self.unit} {self.done}")
        except Exception as error:  # a full disk, or a stop that TensorFlow wrapped
            stop = _wrapped_stop(error)
            if stop is None and not is_disk_full_message(error):
                raise
            if stop is not None:
                self._stopped(stop)
            else:
                self.outcome.status = "failed"  # finish says so, in one sentence with the rest
                self.outcome.message = (f"the disk is full: the summaries stop at {self.unit} "
                                        f"{self.done} and training stopped")
        except KeyboardInterrupt as stop:
            self._stopped(stop)
        finally:
            self._shield()  # from here on, signals wait until the files are written
        self.progress.close(self.done, self.path.ended if self.config.path else
                            self.outcome.status)
        if self.chosen is None:
            self.chosen = self.path.finish()

    def _stopped(self, stop):
        """Ctrl-C or SIGTERM during training: the status says which."""
        self.outcome.status = stop_status(stop)
        if self.path.ended == "interrupted":  # the path says how the run was stopped
            self.path.ended = self.outcome.status
        print(f"\n{self.outcome.status}: keeping what was done so far", file=sys.stderr)

    def in_chunks(self, steps, size, train_chunk, after_chunk):
        """A custom loop's `steps` steps, as calls of `train_chunk(n)` for at most `size` steps
        each (it returns the steps it took, and the last step's data loss, penalty and active
        units: numbers or scalar tensors), each followed by `after_chunk(done, end)`. False
        when the loss diverged."""
        end = self.done + steps
        while self.done < end:
            done, started = self.done, time.perf_counter()
            taken, loss, penalty, units = map(float, train_chunk(min(size, end - done)))
            taken = int(taken)
            self.done = done + taken  # trained, whatever happens next
            seconds = (time.perf_counter() - started  # a call that traced is not timed
                       if done > 0 and not self._retraced else None)
            self._retraced = False
            if not self.finite(loss + penalty, done + taken):
                return False
            after_chunk(done, done + taken)
            self.chunk_done(done + taken, loss, units, seconds, taken)
        return True

    def shown(self, records, done=None):
        """After the demo has shown a path point's records (rows of data loss, penalty and
        active units per layer, one per step, from common/search/engine.py): the loss checked, the
        progress. `done`: where the run stands, in the demo's unit (default: steps)."""
        loss, penalty, *units = records[-1].tolist()
        self.engine_steps += len(records)
        done = self.done + len(records) if done is None else done
        if self.finite(loss + penalty, done):
            self.chunk_done(done, loss, sum(units))

    def chunk_done(self, done, loss, units, seconds=None, steps=0):
        """After a chunk of training: `done` units so far, the last data loss and active
        units; `seconds` its `steps` took (None for a chunk that traced the graph)."""
        self.done, self.outcome.final_loss = done, loss if math.isfinite(loss) else None
        if seconds is not None:
            self._timing[0] += seconds
            self._timing[1] += steps
        self.progress.update(done, loss=f"{loss:.4f}", units=int(units))
        if self.on_progress is not None:
            self.on_progress(done)
        raise_if_stopped()  # a signal whose exception was swallowed still ends the run

    def finite(self, value, done):
        """Whether the loss `value` at `done` (steps or epochs) is finite; if not, the run
        has diverged and says so."""
        if math.isfinite(value):
            return True
        self.done = done
        self.diverged(f"{value} at {self.unit} {done}")
        return False

    def diverged(self, what):
        """The loss became `what` (its value and when): the run has diverged and says so."""
        if self.outcome.status != "diverged":
            self.outcome.status, self.outcome.final_loss = "diverged", None
            self.outcome.message = (f"the loss became {what}: training stopped (try a smaller "
                                    "--lr)")
            print(f"\n{self.outcome.message}", file=sys.stderr)

    def finetune(self):
        """--finetune: the pruned network, trained on the data loss alone (early stopping on
        the validation split with --patience): (the fine-tuned model, the epochs trained)."""
        config, data = self.config, self.data
        pruned, report = prune_model(self.model, config.threshold, data.feature_names)
        kept = report.kept_inputs
        validation = (data.x_val[:, kept], data.y_val) if data.x_val is not None else None
        epochs = finetune(pruned, data.task, data.x_train[:, kept], data.y_train,
                          config.finetune, config.batch_size, config.lr, config.seed,
                          validation, config.patience, callbacks=[keras.callbacks.LambdaCallback(
                              on_epoch_end=lambda epoch, logs: raise_if_stopped())])
        return pruned, epochs

    def history_title(self):
        """history.png's title: the network, what was trained (the penalty, or the path's
        points and its choice), the learning rate and the status."""
        config, data = self.config, self.data
        shape = f"{data.num_features}-{'-'.join(map(str, config.hidden))}-{data.num_outputs}"
        selected = (self.chosen or {}).get("selected")
        if config.path:
            what = f"lambda path of {len(self.point_ends)} points"
            if selected is not None:
                what += f", chosen lambda {selected['lambda']:.3g} ({selected['rule']} rule)"
        else:
            what = "group " + " ".join(f"{value:g}" for value in config.group_layers
                                       or [config.group_strength]) + ","
            what += " l1 " + " ".join(f"{value:g}" for value in config.l1_layers or [config.l1])
            what += f", l2 {config.l2:g}"
        return f"{data.name}: {shape}, {what}, lr {config.lr:g}, {self.outcome.status}"

    def path_marks(self):
        """The path's kept points as (index, lambda, where its training ended), and the
        chosen point's index (None without a choice): for history.png."""
        chosen = self.chosen or {}
        lambdas = {record["index"]: record["lambda"] for record in chosen.get("path", [])}
        points = [(index, lambdas.get(index, 0.0), end) for index, end in self.point_ends]
        selected = chosen.get("selected")
        return points, None if selected is None else selected["index"]

    def prunable(self):
        """Whether the trained model is worth pruning and saving: it has not diverged, and
        every weight is finite."""
        return self.outcome.status != "diverged" and all(
            np.all(np.isfinite(keras.ops.convert_to_numpy(w))) for w in self.model.weights)

    def summarize(self, pruned):
        """Counts, test metrics and pruning of the trained model: (record, the models to
        save), or (None, None) without `pruned` (prune_model's network and report)."""
        model, data, threshold = self.model, self.data, self.config.threshold
        if pruned is None:
            return None, None
        units = count_active_units(model, threshold)
        pruned, report = pruned
        x_test = data.x_test[:, report.kept_inputs]
        difference = np.max(np.abs(keras.ops.convert_to_numpy(pruned(x_test))
                                   - keras.ops.convert_to_numpy(model(data.x_test))))
        record = {
            "units_after": units.as_dict(),
            "surviving_features": units.surviving_features(data.feature_names),
            "test": evaluate(model, data),  # the test split's one reading, after the choice
            "thresholded_test": evaluate(thresholded_copy(model, threshold), data),
            "pruned": {**report.as_dict(), "test": evaluate(pruned, data, x=x_test),
                       # On the test inputs; 0 up to rounding when the dropped groups were 0.
                       "max_abs_difference_from_trained": float(difference)},
        }
        kept = report.kept_inputs
        record["pruned"]["file_inputs"] = (f"raw values of {', '.join(report.kept_feature_names)}"
                                           " (kept_feature_names), in that order")
        record["pruned"]["file_outputs"] = (
            f"probabilities of classes 0 to {data.num_classes - 1}"
            if data.task == "classification" else "the target in its own units")
        models = [("pruned.keras", in_raw_units(pruned, data, kept))]
        if self.finetuned is not None:
            tuned, epochs = self.finetuned
            record["pruned"]["finetuned_test"] = evaluate(tuned, data, x=x_test)
            record["pruned"]["finetuned_epochs"] = epochs
            models.append(("pruned_finetuned.keras", in_raw_units(tuned, data, kept)))
        return record, models

    def saved_model(self, finite):
        """--save-model's (path, write) pair when the weights are `finite`: the trained
        model compiled with its optimizer and data loss (the Keras demo's recorder, a
        training aid, is left out), so that it loads and trains on."""
        if not (self.config.save_model and self.chief and finite):
            return []
        with self.strategy.scope():
            self.model.compile(optimizer=self.optimizer, loss=loss_name(self.data.task))
        return [(Path(self.config.save_model), self.model.save)]

    def finish(self, steps, pruned, files=(), extra=None, footer=(), final_loss=None):
        """Summarize, save and print after `steps` optimizer steps; returns the summary that
        run.json holds. `pruned`: prune_model's (network, report) of the trained model, or
        None (the run diverged). `files` are the demo's own outputs as (path, write) pairs,
        each written whole or not at all; `final_loss` the last data loss, if the demo's
        records know a later one than the last chunk's."""
        outcome = self.outcome
        outcome.steps = steps
        if final_loss is not None and outcome.status != "diverged":
            outcome.final_loss = final_loss if math.isfinite(final_loss) else None
        seconds, timed = self.path.timing if self.config.path else self._timing
        if timed:  # the demo's loop, or with --path the engine's (every fold together)
            outcome.ms_per_step = 1000.0 * seconds / timed
        record, models = self.summarize(pruned)
        if record is not None and not all(math.isfinite(value)
                                          for value in record["test"].values()):
            # Finite weights whose test predictions overflow: not a result to keep. Decided
            # before any file is written, so that every file says so.
            if outcome.status == "completed":
                outcome.status = "diverged"
                outcome.message = ("the test metrics are not finite: the predictions overflow "
                                   "float32")
            record["notes"], models = ["no model was saved: the test metrics are not finite"], []
        files = [*files, *self.saved_model(bool(models))]
        return finish_run(
            self.demo, self.settings, self.data, self.run_dir, outcome, record, models, files,
            extra={"num_replicas": self.strategy.num_replicas_in_sync, **(extra or {}),
                   **self.chosen},
            footer=[*footer, ("view it with", f"tensorboard --logdir {self.config.logdir}")],
            chief=self.chief)


def startup_seconds(now):
    """Seconds from the script's start (run_as_script) to `now`: the imports and the data;
    None when the demo was not started as a script."""
    from common.run import lifecycle

    return None if lifecycle.SCRIPT_STARTED is None else now - lifecycle.SCRIPT_STARTED


def in_raw_units(model, data, kept):
    """The network `model` (on the kept inputs, scaled) taking the kept features' raw values
    and predicting the target in its own units (classes: probabilities), as saved."""
    if data.input_center is None:
        return model
    target = (() if data.task == "classification"
              else (data.target_min, data.target_max - data.target_min))
    return with_scaling(model, data.input_center[kept], data.input_spread[kept], *target)


def _wrapped_stop(error):
    """The KeyboardInterrupt (a Ctrl-C, a Stopped) inside an exception that wraps it, as
    TensorFlow's SystemError "returned a result with an exception set" does; else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
