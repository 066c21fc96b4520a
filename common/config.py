"""One configuration and one command line for both demos.

This module imports neither TensorFlow nor Keras, so a typo on the command line is
reported in a fraction of a second instead of after TensorFlow's five-second import.
"""

import argparse
import dataclasses
import math
import sys

DATASETS = ("boston", "diabetes", "digits", "california", "csv")
SOLVERS = ("subgradient", "proximal")
STRATEGIES = ("none", "mirrored", "multiworker")

# --preset compact: the settings behind the benchmark's "compact" rows (README, Results).
# Proximal steps give exact zeros, frozen once reached; the pruned network is then
# retrained without penalty. Flags given explicitly win over the preset.
PRESETS = {
    "compact": {
        "boston": dict(solver="proximal", freeze_zeros=True, group=3e-3, l1=0.0, finetune=1000),
        "digits": dict(solver="proximal", freeze_zeros=True, group=2e-3, l1=3e-4, lr=3e-3,
                       finetune=50),
    },
}
# Epochs of the original demos: 1500 steps for TensorFlow, 2500 epochs for Keras.
DEFAULT_EPOCHS = {"tensorflow": 1500, "keras": 2500}


@dataclasses.dataclass
class Config:
    preset: str | None = None  # compact: the settings of PRESETS, under flags given explicitly
    dataset: str = "boston"  # boston, diabetes, digits, california, or csv (with csv_path)
    csv_path: str | None = None  # a user CSV of numeric columns (sets dataset to "csv")
    target: str | None = None  # the CSV column to predict
    hidden: tuple[int, ...] = (20, 15)  # hidden layer widths: the original 13-20-15-1
    epochs: int = 1500  # passes over the training split (one step each when full batch)
    batch_size: int | None = None  # None trains full batch, as the original
    lr: float = 1e-3  # Adam learning rate
    group: float = 1e-3  # group Lasso strength (lambda) on every kernel
    l1: float = 0.0  # L1 strength; group > 0 and l1 > 0 is the sparse group Lasso
    l2: float = 0.0  # L2 (weight decay) strength
    threshold: float | None = None  # a group is active when sum(|w|) exceeds this; None:
    # 1e-3 (the original's) for the subgradient solver, 0.0 for the proximal one (exact zeros)
    solver: str = "subgradient"  # subgradient (penalty in the loss, the original) or proximal
    freeze_zeros: bool = False  # proximal solver: a group that reaches zero stays zero
    seed: int = 0  # seeds the split, the initial weights and the batch order
    logdir: str = "summaries"  # each run writes a new folder below this one
    eval_every: int = 25  # steps between two evaluations on the test split
    finetune: int = 0  # epochs to retrain the pruned model without penalty
    strategy: str = "none"  # tf.distribute: none, mirrored (one machine), multiworker (TF_CONFIG)
    no_show: bool = False  # Keras demo: never open a plot window
    save_model: str | None = None  # Keras demo: also save the trained model (.keras) here

    def __post_init__(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if self.freeze_zeros and self.solver != "proximal":
            raise ValueError("freeze_zeros needs the proximal solver")
        if self.threshold is None:
            self.threshold = 0.0 if self.solver == "proximal" else 1e-3


def _whole_number(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _positive_int(text):
    value = _whole_number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _non_negative_int(text):
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _positive_float(text):
    value = _non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be greater than 0, got 0")
    return value


def _keras_path(text):
    if not text.endswith(".keras"):
        raise argparse.ArgumentTypeError(f"the file name must end in .keras, got {text!r}")
    return text


def build_parser(demo):
    """The argparse parser shared by both demos; `demo` only picks the default epochs."""
    defaults = Config(epochs=DEFAULT_EPOCHS[demo])
    parser = argparse.ArgumentParser(
        prog=f"demo_{demo}.py",
        description="Group sparse regularization (Scardapane et al., 2017): train, count "
        "the surviving units, prune. Flags the other demo uses are accepted here too.",
    )
    add = parser.add_argument
    add("--dataset", choices=DATASETS, default=defaults.dataset, help="data set (default boston)")
    add("--csv", dest="csv_path", metavar="PATH", help="train on your own numeric CSV")
    add("--target", metavar="COLUMN", help="the CSV column to predict (with --csv)")
    add("--hidden", type=_positive_int, nargs="+", default=list(defaults.hidden),
        metavar="WIDTH", help="hidden layer widths (default 20 15)")
    add("--epochs", type=_positive_int, default=defaults.epochs, help=f"default {defaults.epochs}")
    add("--batch-size", type=_positive_int, default=None, help="default: full batch")
    add("--lr", type=_positive_float, default=defaults.lr, help="Adam learning rate")
    add("--group", type=_non_negative_float, default=defaults.group, help="group Lasso strength")
    add("--l1", type=_non_negative_float, default=defaults.l1, help="L1 strength")
    add("--l2", type=_non_negative_float, default=defaults.l2, help="L2 strength")
    add("--preset", choices=sorted(PRESETS),
        help="compact: proximal solver, frozen zeros, strengths tuned for a small network, "
        "then fine-tuning (boston and digits settings; other data sets use boston's)")
    add("--solver", choices=SOLVERS, default=defaults.solver,
        help="subgradient: the penalty in the loss, as the original (default); proximal: "
        "an exact proximal step after each Adam step, so dropped units are exactly zero")
    add("--freeze-zeros", action="store_true",
        help="with --solver proximal: a unit whose weights reach zero stays removed")
    add("--threshold", type=_non_negative_float, default=None,
        help="a group is active when sum(|w|) exceeds this (default 1e-3; 0 with "
        "--solver proximal)")
    add("--seed", type=int, default=defaults.seed)
    add("--logdir", default=defaults.logdir, help="runs are written below this folder")
    add("--eval-every", type=_positive_int, default=defaults.eval_every,
        help="steps between test evaluations")
    add("--finetune", type=_non_negative_int, default=0,
        help="epochs to retrain the pruned model without penalty (default 0)")
    add("--strategy", choices=STRATEGIES, default=defaults.strategy,
        help="tf.distribute: none (default), mirrored (every GPU of this machine) or "
        "multiworker (one process per machine, cluster in TF_CONFIG)")
    add("--no-show", action="store_true", help="Keras demo: save the plot, open no window")
    add("--save-model", metavar="PATH", type=_keras_path,
        help="Keras demo: save the trained model to PATH (.keras)")
    return parser


def parse_config(argv=None, demo="tensorflow"):
    """Parse `argv` into a Config; bad input exits with code 2 and one line from argparse."""
    parser = build_parser(demo)
    args = parser.parse_args(argv)
    if args.preset:
        _apply_preset(parser, args, sys.argv[1:] if argv is None else argv)
    values = vars(args)
    if args.csv_path is not None:
        values["dataset"] = "csv"
    if values["dataset"] == "csv" and (args.csv_path is None or args.target is None):
        parser.error("--csv PATH and --target COLUMN go together")
    if args.freeze_zeros and args.solver != "proximal":
        parser.error("--freeze-zeros needs --solver proximal")
    if demo == "keras" and args.strategy == "multiworker":
        parser.error("Keras 3's fit() fails under MultiWorkerMirroredStrategy (keras-team/keras"
                     "#20585), so demo_keras.py cannot use --strategy multiworker: run "
                     "demo_tensorflow.py --strategy multiworker instead")
    from common.distribute import check_tf_config

    problem = check_tf_config(args.strategy)
    if problem:
        parser.error(problem)
    values["hidden"] = tuple(args.hidden)
    return Config(**values)


def _apply_preset(parser, args, argv):
    """Fill in the preset's settings for the data set, except those given as flags."""
    settings = PRESETS[args.preset]
    settings = settings.get(args.dataset, settings["digits" if args.dataset == "digits"
                                                   else "boston"])
    given = set()
    for action in parser._actions:
        for option in action.option_strings:
            if any(word == option or word.startswith(option + "=") for word in argv):
                given.add(action.dest)
    for name, value in settings.items():
        if name not in given:
            setattr(args, name, value)
    if args.solver != "proximal" and "freeze_zeros" not in given:
        args.freeze_zeros = False  # --solver subgradient given: nothing to freeze


def import_tensorflow_quietly():
    """Import TensorFlow and Keras without the C++ start-up chatter on stderr.

    TensorFlow prints CUDA probing lines from C++ before Python can filter them; the
    file descriptor is redirected for the import only, and what was printed is shown
    again if the import fails.
    """
    import os
    import sys
    import tempfile

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401  (imports TensorFlow as its backend)
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
