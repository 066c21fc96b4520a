"""The command line's value types and parser: one-sentence errors, negative numbers as values.

Each type turns one flag's text into its value or says in one sentence what is wrong with it;
argparse adds the flag's name.
"""

import argparse
import json
import math
import os
import re

from common.backend import backend_problem, keras_backend_name

MAX_FOLDS = 20  # --cv: each fold holds out 1/K of the training rows
MAX_SEED = 2**32 - 1  # NumPy's and TensorFlow's seeds are unsigned 32-bit integers
# Bounds that keep float32 finite and memory sane: a strength of 1e6 empties any layer (the
# path's grid on Boston tops out near 0.1), weights 1/||w||**GAMMA stay finite for GAMMA <= 4
# (the literature uses 0.5 to 2), and a record per step of a chunk must fit in memory.
MAX_STRENGTH, MAX_GAMMA, MAX_LR = 1e6, 4.0, 1e30  # a learning rate float32 holds
MAX_POINTS, MAX_WIDTH, MAX_EVAL_EVERY = 1000, 100_000, 10_000


def at_most(kind, high):
    """`kind` (a value type below) with an upper bound, said in one sentence."""
    def bounded(text):
        value = kind(text)
        if value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}, got {text}")
        return value

    return bounded


def whole_number(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(text):
    value = whole_number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def non_negative_int(text):
    value = whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def positive_float(text):
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be greater than 0, got 0")
    return value


def fraction(text):
    value = non_negative_float(text)
    if not 0 < value <= 0.5:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 0.5, got {text}")
    return value


def folds(text):
    value = whole_number(text)
    if not 2 <= value <= MAX_FOLDS:
        raise argparse.ArgumentTypeError(f"must be between 2 and {MAX_FOLDS}, got {value}")
    return value


def seed(text):
    value = whole_number(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_SEED}, got {value}")
    return value


def width(text):
    if "," in text:
        raise argparse.ArgumentTypeError(
            f"widths are separated by spaces, not commas: --hidden {text.replace(',', ' ')}")
    return positive_int(text)


def keras_path(text):
    if not text.endswith(".keras"):
        raise argparse.ArgumentTypeError(f"the file name must end in .keras, got {text!r}")
    return text


class HelpFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default, where it has one."""

    def _get_help_string(self, action):  # argparse's hook for a flag's help
        if any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS)):
            return action.help
        default = action.default
        if isinstance(default, (list, tuple)):
            default = " ".join(map(str, default))
        return f"{action.help} (default {default})"


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (and a pointer to --help) instead of the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# A number that starts with a minus sign, exponents included (argparse reads "-1e-3" as a flag).
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def attach_negative_numbers(parser, argv):
    """Write `--flag -1e-3` as `--flag=-1e-3`, so a negative value is judged as a value."""
    takes_value = {option for action in parser._actions if action.nargs != 0
                   for option in action.option_strings}
    result = []
    for word in argv:
        if result and result[-1] in takes_value and NEGATIVE_NUMBER.match(word):
            result[-1] = f"{result[-1]}={word}"
        else:
            result.append(word)
    return result


def check_tf_config(name):
    """The one-sentence problem with TF_CONFIG for --strategy multiworker, or None."""
    if name != "multiworker":
        return None
    text = os.environ.get("TF_CONFIG")
    if not text:
        return ("--strategy multiworker needs the TF_CONFIG environment variable "
                "(the cluster's addresses and this process's task); see the README")
    example = ('TF_CONFIG must be JSON like {"cluster": {"worker": ["host:port", ...]}, '
               '"task": {"type": "worker", "index": 0}}')
    try:
        config = json.loads(text)
        cluster, task_type, index = (config["cluster"], config["task"]["type"],
                                     config["task"]["index"])
        jobs = {job: list(addresses) for job, addresses in cluster.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return example
    if task_type not in jobs:
        return (f"TF_CONFIG's task type {task_type!r} is not in its cluster "
                f"(which has {', '.join(map(repr, jobs)) or 'no jobs'})")
    if not isinstance(index, int) or not 0 <= index < len(jobs[task_type]):
        return (f"TF_CONFIG's task index {index!r} does not exist: its cluster has "
                f"{len(jobs[task_type])} {task_type!r} task(s), numbered from 0")
    return None


def check_flags(args, demo):
    """Parsed `args` of `demo`: one sentence for flags that do not go together, or a backend
    that cannot run (None when all is well)."""
    backend = keras_backend_name()
    if args.dataset == "csv" and (args.csv_path is None or args.target is None):
        return "--csv PATH and --target COLUMN go together"
    if args.target is not None and args.csv_path is None:
        return "--target names a column of --csv PATH; give the file too"
    if args.freeze_zeros and args.solver != "proximal":
        return "--freeze-zeros needs --solver proximal"
    if demo == "keras" and args.strategy == "multiworker":
        return ("Keras 3's fit() fails under MultiWorkerMirroredStrategy (keras-team/keras#20585"
                "), so demo_keras.py cannot use --strategy multiworker: run demo_tensorflow.py")
    if demo == "keras" and args.strategy != "none" and backend not in ("tensorflow", "jax"):
        return (f"--strategy runs on TensorFlow (tf.distribute) or JAX (Keras' DataParallel), "
                f"and Keras runs on {backend} here: run with KERAS_BACKEND=tensorflow or jax, "
                "or without --strategy")
    if args.adaptive is not None and args.group_strength == 0:
        return "--adaptive weighs the group Lasso: --group must be above 0"
    if args.patience is not None and not args.finetune:
        return "--patience stops --finetune early: give --finetune N too"
    return backend_problem(backend, demo)  # the flags first, then what this machine has


PATH_FLAGS = {"val_fraction": "--val-fraction", "path_points": "--path-points",
              "path_lambdas": "--path-lambdas", "path_epochs": "--path-epochs",
              "path_settle": "--path-settle",
              "select": "--select", "max_units": "--max-units", "cv": "--cv"}


def check_path(args, given):
    """The path's flags make sense together, before anything is trained."""
    if {"path_points", "path_lambdas"} <= given:
        return "--path-lambdas replaces the grid of --path-points: give one of them"
    if {"select", "max_units"} <= given:
        return "--max-units K is a selection rule of its own: drop --select"
    flags = [flag for name, flag in PATH_FLAGS.items() if name in given]
    if not args.path:
        if args.patience is not None:  # early stopping needs a validation split too
            flags = [flag for flag in flags if flag != "--val-fraction"]
        return f"{flags[0]} belongs to --path; add --path or drop it" if flags else None
    if args.group_strength == 0 and args.l1 == 0:
        return "--path grows the group Lasso (or L1) strength: --group or --l1 must be above 0"
    lambdas = args.path_lambdas
    if lambdas is not None and any(b <= a for a, b in zip(lambdas, lambdas[1:])):
        return "--path-lambdas must increase strictly, got " + " ".join(f"{v:g}" for v in lambdas)
    smallest = 1 + len(args.hidden)  # one input and one unit in each hidden layer
    if args.max_units is not None and args.max_units < smallest:
        return (f"--max-units {args.max_units} is below the smallest network ({smallest} "
                "units: one input and one unit per hidden layer)")
    if args.strategy != "none":
        return "--path runs on one device; drop --strategy"
    if args.cv is not None and "val_fraction" in given:
        return (f"--cv {args.cv} holds out 1/{args.cv} of the training rows in each fold; "
                "drop --val-fraction")
    return None
