"""One configuration and one command line for both demos.

This module imports neither TensorFlow nor Keras, so a typo on the command line is
reported in a fraction of a second instead of after TensorFlow's five-second import.
"""

import argparse
import dataclasses
import math
import re
import sys

DATASETS = ("boston", "diabetes", "digits", "california", "csv")
SOLVERS = ("subgradient", "proximal")
SELECTION_RULES = ("1se", "min")
LAYER_SCALINGS = ("none", "lambda-max")
STRATEGIES = ("none", "mirrored", "multiworker")

# --preset compact: the smallest network the validation data supports: the lambda path (40
# lambdas) with exact zeros and adaptive weights, each point trained three times as long as the
# dense network (--epochs) and fine-tuned (1000 epochs, early stopping on validation) before it
# is scored, and lambda chosen by 5-fold cross-validation. Its settings were chosen by the
# number of units the 1-SE rule kept on all training rows (--cv 5, 5 seeds, a validation-only
# number): on Boston 100 epochs a point (--epochs / 15, the path's default) 32.6 of 48, 1000
# epochs 21.6, 1500 (--epochs) 17.9, 4500 (3 x) 16.3; on DIGITS (inputs and hidden units) 200
# epochs (--epochs) 72.0 of 124, 600 (3 x) 66.8; 5 x, on one seed each, kept more (Boston 18.6
# against 17.2, DIGITS 72.4 against 66.4). Not taken, on Boston: no adaptive weights 35.5,
# weights 1/||w||**2 21.1 against 17.9 (1 x epochs). --cv because one split's 76 rows made the
# same picks spread from 9 to 39 units. 40 lambdas instead of 20 (at 3 x): Boston 14.6 against
# 16.3, DIGITS 66.9 against 66.8. Nothing here was chosen on the test split. Flags given
# explicitly win.
PRESETS = {"compact": dict(path=True, solver="proximal", adaptive=1.0, finetune=1000,
                           patience=50, path_epochs=lambda args: 3 * args.epochs,
                           path_points=40, cv=5)}
MAX_FOLDS = 20  # --cv: each fold holds out 1/K of the training rows
MAX_SEED = 2**32 - 1  # NumPy's and TensorFlow's seeds are unsigned 32-bit integers
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
    group_strength: float = 1e-3  # group Lasso strength (lambda) on every kernel (--group)
    l1: float = 0.0  # L1 strength; group > 0 and l1 > 0 is the sparse group Lasso
    # One value per kernel (--group a b c): these, and group_strength/l1 hold their largest
    group_layers: tuple[float, ...] | None = None
    l1_layers: tuple[float, ...] | None = None
    adaptive: float | None = None  # adaptive group Lasso: weights 1/||w_g||**this (gamma)
    mcp: float | None = None  # group MCP with this concavity instead of the group Lasso
    layer_scaling: str = "none"  # path: lambda-max scales each layer by its own lambda_max
    l2: float = 0.0  # L2 (weight decay) strength
    threshold: float | None = None  # a group is active when sum(|w|) exceeds this; None:
    # 1e-3 (the original's) for the subgradient solver, 0.0 for the proximal one (exact zeros)
    solver: str = "subgradient"  # subgradient (penalty in the loss, the original) or proximal
    freeze_zeros: bool = False  # proximal solver: a group that reaches zero stays zero
    seed: int = 0  # seeds the split, the initial weights and the batch order
    logdir: str = "summaries"  # each run writes a new folder below this one
    eval_every: int = 25  # steps between two evaluations on the test split
    finetune: int = 0  # epochs to retrain the pruned model without penalty
    retrain: int = 0  # epochs to train the pruned architecture from fresh weights
    patience: int | None = None  # finetune/retrain: stop when validation loss stalls this long
    strategy: str = "none"  # tf.distribute: none, mirrored (one machine), multiworker (TF_CONFIG)
    connect_timeout: float = 120.0  # multiworker: seconds to wait for the other workers
    path: bool = False  # train the dense network, then a warm-started path of growing lambdas
    val_fraction: float = 0.2  # path: the training rows held out to choose on (never the test)
    path_points: int = 20  # path: lambdas on the automatic geometric grid
    path_lambdas: tuple[float, ...] | None = None  # path: these lambdas instead of the grid
    path_epochs: int | None = None  # path: epochs per point; None: epochs // 15, at least 1
    select: str = "1se"  # path: 1se (fewest units within one SE of the best) or min (best)
    max_units: int | None = None  # path: the best point with at most this many active units
    cv: int | None = None  # path: choose by K-fold cross-validation (each fold holds out 1/K)
    no_pictures: bool = False  # no group-norm histograms and kernel images in TensorBoard
    no_show: bool = False  # Keras demo: never open a plot window
    save_model: str | None = None  # Keras demo: also save the trained model (.keras) here

    @property
    def uses_validation(self):
        """Whether a validation split is carved from the training rows (--path, --patience)."""
        return self.path or self.patience is not None

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


def _fraction(text):
    value = _non_negative_float(text)
    if not 0 < value <= 0.5:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 0.5, got {text}")
    return value


def _folds(text):
    value = _whole_number(text)
    if not 2 <= value <= MAX_FOLDS:
        raise argparse.ArgumentTypeError(f"must be between 2 and {MAX_FOLDS}, got {value}")
    return value


def _seed(text):
    value = _whole_number(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_SEED}, got {value}")
    return value


def _width(text):
    if "," in text:
        raise argparse.ArgumentTypeError(
            f"widths are separated by spaces, not commas: --hidden {text.replace(',', ' ')}")
    return _positive_int(text)


def _keras_path(text):
    if not text.endswith(".keras"):
        raise argparse.ArgumentTypeError(f"the file name must end in .keras, got {text!r}")
    return text


class _HelpFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default, where it has one."""

    def _get_help_string(self, action):
        if any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS)):
            return action.help
        default = action.default
        if isinstance(default, (list, tuple)):
            default = " ".join(map(str, default))
        return f"{action.help} (default {default})"


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (and a pointer to --help) instead of the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# A number that starts with a minus sign, exponents included (argparse reads "-1e-3" as a flag).
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _attach_negative_numbers(parser, argv):
    """Write `--flag -1e-3` as `--flag=-1e-3`, so a negative value is judged as a value."""
    takes_value = {option for action in parser._actions if action.nargs != 0
                   for option in action.option_strings}
    result = []
    for word in argv:
        if result and result[-1] in takes_value and _NEGATIVE_NUMBER.match(word):
            result[-1] = f"{result[-1]}={word}"
        else:
            result.append(word)
    return result


def build_parser(demo):
    """The argparse parser shared by both demos; `demo` only picks the default epochs."""
    defaults = Config(epochs=DEFAULT_EPOCHS[demo])
    parser = _Parser(
        prog=f"demo_{demo}.py", formatter_class=_HelpFormatter,
        description="Group sparse regularization (Scardapane et al., 2017): train, count "
        "the surviving units, prune. Flags the other demo uses are accepted here too.",
        epilog="Exit codes: 0 completed, 1 diverged or failed, 2 bad input, "
        "130 interrupted (Ctrl-C), 143 terminated (SIGTERM).")
    add = parser.add_argument
    add("--dataset", choices=DATASETS, default=defaults.dataset, help="data set")
    add("--csv", dest="csv_path", metavar="PATH", help="train on your own numeric CSV")
    add("--target", metavar="COLUMN", help="the CSV column to predict (with --csv)")
    add("--hidden", type=_width, nargs="+", default=list(defaults.hidden),
        metavar="WIDTH", help="hidden layer widths, separated by spaces")
    add("--epochs", type=_positive_int, default=defaults.epochs,
        help="passes over the training split")
    add("--batch-size", type=_positive_int, default=None, help="rows per step; none: full batch")
    add("--lr", type=_positive_float, default=defaults.lr, help="Adam learning rate")
    add("--group", dest="group_strength", type=_non_negative_float, nargs="+",
        default=defaults.group_strength, metavar="LAMBDA",
        help="group Lasso strength (lambda): one value, or one per kernel (inputs first)")
    add("--l1", type=_non_negative_float, nargs="+", default=defaults.l1, metavar="STRENGTH",
        help="L1 strength: one value, or one per kernel")
    add("--adaptive", type=_positive_float, nargs="?", const=1.0, metavar="GAMMA",
        help="adaptive group Lasso: a second stage weighs each group by 1/||w_g||**GAMMA "
        "(1 when not given) from the first; zero groups stay removed")
    add("--mcp", type=_positive_float, metavar="GAMMA",
        help="the group MCP (minimax concave penalty) with concavity GAMMA instead of the "
        "group Lasso: like it near zero, no shrinkage of groups whose norm passes GAMMA "
        "times their threshold (3 is a common choice)")
    add("--layer-scaling", choices=LAYER_SCALINGS, default=defaults.layer_scaling,
        help="--path: lambda-max scales each layer's lambda by its own largest group "
        "gradient at the dense start, so one lambda is the same share of the way to an "
        "empty layer in every layer")
    add("--l2", type=_non_negative_float, default=defaults.l2, help="L2 strength")
    add("--preset", choices=sorted(PRESETS),
        help="compact: --path with the proximal solver and --adaptive, 40 lambdas, each point "
        "trained 3 x --epochs (--path-epochs) and fine-tuned before it is scored (--finetune "
        "1000 --patience 50), lambda chosen by --cv 5: the smallest network the validation data "
        "supports by the 1-SE rule (several minutes for demo_tensorflow.py on Boston)")
    add("--solver", choices=SOLVERS, default=defaults.solver,
        help="subgradient: the penalty in the loss, as the original; proximal: "
        "an exact proximal step after each Adam step, so dropped units are exactly zero")
    add("--freeze-zeros", action="store_true",
        help="with --solver proximal: a unit whose weights reach zero stays removed")
    add("--threshold", type=_non_negative_float, default=None,
        help="a group is active when sum(|w|) exceeds this; none: 1e-3, or 0 with "
        "--solver proximal")
    add("--seed", type=_seed, default=defaults.seed,
        help=f"seeds the split, the initial weights and the batch order (0 to {MAX_SEED})")
    add("--logdir", default=defaults.logdir, help="runs are written below this folder")
    add("--eval-every", type=_positive_int, default=defaults.eval_every,
        help="steps (TF demo) or epochs (Keras demo) between test evaluations")
    add("--finetune", type=_non_negative_int, default=0,
        help="epochs to retrain the pruned model without penalty")
    add("--retrain", type=_non_negative_int, default=0,
        help="epochs to train the pruned architecture from fresh weights without penalty")
    add("--patience", type=_positive_int,
        help="--finetune/--retrain: stop when the validation loss has not improved for this "
        "many epochs (needs a validation split: --path or --val-fraction)")
    add("--strategy", choices=STRATEGIES, default=defaults.strategy,
        help="tf.distribute: none, mirrored (every GPU of this machine) or "
        "multiworker (one process per machine, cluster in TF_CONFIG)")
    add("--connect-timeout", type=_positive_float, default=defaults.connect_timeout,
        help="--strategy multiworker: seconds to wait for the other workers")
    add("--path", action="store_true",
        help="choose lambda for you: train the dense network, then a warm-started path of "
        "growing lambdas, and keep the network the validation split picks")
    add("--val-fraction", type=_fraction, default=defaults.val_fraction,
        help="--path: share of the training rows held out for choosing (0 to 0.5)")
    add("--path-points", type=_positive_int, default=defaults.path_points,
        help="--path: lambdas on the automatic grid")
    add("--path-lambdas", type=_positive_float, nargs="+", metavar="LAMBDA",
        help="--path: these increasing lambdas instead of the automatic grid")
    add("--path-epochs", type=_positive_int,
        help="--path: epochs per point; none: --epochs / 15, in whole --eval-every chunks")
    add("--select", choices=SELECTION_RULES, default=defaults.select,
        help="--path: 1se, the fewest active units within one standard error of the best "
        "validation metric; min, the best validation metric")
    add("--max-units", type=_positive_int,
        help="--path: the best validation metric among points with at most this many "
        "active units (inputs included)")
    add("--cv", type=_folds, metavar="K",
        help="--path: choose lambda by K-fold cross-validation: the run's own validation "
        "split (1/K of the training rows) is one fold, the path runs again on each other "
        "fold, and the 1-SE rule reads all training rows once (K times the path's time)")
    add("--no-pictures", action="store_true",
        help="write no group-norm histograms and kernel images to TensorBoard (very wide "
        "layers make large images)")
    add("--no-show", action="store_true", help="Keras demo: save the plot, open no window")
    add("--save-model", metavar="PATH", type=_keras_path,
        help="Keras demo: save the trained model to PATH (.keras)")
    return parser


def parse_config(argv=None, demo="tensorflow"):
    """Parse `argv` into a Config; bad input exits with code 2 and one line.

    Besides the flags' values, the output paths are checked here (a folder that cannot be
    written, a model path whose folder is missing), before any training or TensorFlow.
    """
    parser = build_parser(demo)
    argv = _attach_negative_numbers(parser, sys.argv[1:] if argv is None else list(argv))
    args = parser.parse_args(argv)
    values = vars(args)
    for name, layers in (("group_strength", "group_layers"), ("l1", "l1_layers")):
        given = list(values[name]) if isinstance(values[name], list) else [values[name]]
        flag = "--group" if name == "group_strength" else "--l1"
        if len(given) not in (1, len(args.hidden) + 1):
            parser.error(f"{flag} takes one value or one per kernel ({len(args.hidden) + 1} for "
                         f"--hidden {' '.join(map(str, args.hidden))}), got {len(given)}")
        values[name] = max(given)
        values[layers] = tuple(given) if len(given) > 1 else None
    if args.preset:  # after the strengths are one number each: the preset reads them
        _apply_preset(parser, args, argv)
    if args.csv_path is not None:
        values["dataset"] = "csv"
    if values["dataset"] == "csv" and (args.csv_path is None or args.target is None):
        parser.error("--csv PATH and --target COLUMN go together")
    if args.target is not None and args.csv_path is None:
        parser.error("--target names a column of --csv PATH; give the file too")
    if args.freeze_zeros and args.solver != "proximal":
        parser.error("--freeze-zeros needs --solver proximal")
    if demo == "keras" and args.strategy == "multiworker":
        parser.error("Keras 3's fit() fails under MultiWorkerMirroredStrategy (keras-team/keras"
                     "#20585), so demo_keras.py cannot use --strategy multiworker: run "
                     "demo_tensorflow.py --strategy multiworker instead")
    backend = keras_backend_name()
    if demo == "keras" and args.strategy != "none" and backend not in ("tensorflow", "jax"):
        parser.error(f"--strategy runs on TensorFlow (tf.distribute) or JAX (Keras' "
                     f"DataParallel), and Keras runs on {backend} here: run with "
                     "KERAS_BACKEND=tensorflow or jax, or without --strategy")
    _check_path(parser, args, argv)
    from common.distribute import check_tf_config
    from common.files import check_output_file, check_writable_folder

    problem = (check_tf_config(args.strategy) or check_writable_folder(args.logdir, "--logdir")
               or (args.save_model and check_output_file(args.save_model, "--save-model")))
    if problem:
        parser.error(problem)
    values["hidden"] = tuple(args.hidden)
    if args.layer_scaling != "none" and not args.path:
        parser.error("--layer-scaling belongs to --path; add --path or drop it")
    if args.mcp is not None and args.group_strength == 0:
        parser.error("--mcp replaces the group Lasso: --group must be above 0")
    if args.adaptive is not None and args.group_strength == 0:
        parser.error("--adaptive weighs the group Lasso: --group must be above 0")
    if args.patience is not None and not (args.finetune or args.retrain):
        parser.error("--patience stops --finetune or --retrain early: give one of them")
    if args.path_lambdas is not None:
        values["path_lambdas"] = tuple(args.path_lambdas)
    return Config(**values)


PATH_FLAGS = ("--val-fraction", "--path-points", "--path-lambdas", "--path-epochs", "--select",
              "--max-units", "--cv")


def _check_path(parser, args, argv):
    """The path's flags make sense together, before anything is trained."""
    given = [flag for flag in PATH_FLAGS
             if any(word == flag or word.startswith(flag + "=") for word in argv)]
    if not args.path:
        if args.patience is not None:  # early stopping needs a validation split too
            given = [flag for flag in given if flag != "--val-fraction"]
        if given:
            parser.error(f"{given[0]} belongs to --path; add --path or drop it")
        return
    if args.group_strength == 0 and args.l1 == 0:
        parser.error("--path grows the group Lasso (or L1) strength: --group or --l1 must be "
                     "above 0")
    lambdas = args.path_lambdas
    if lambdas is not None and any(b <= a for a, b in zip(lambdas, lambdas[1:])):
        parser.error("--path-lambdas must increase strictly, got "
                     + " ".join(f"{value:g}" for value in lambdas))
    smallest = 1 + len(args.hidden)  # one input and one unit in each hidden layer
    if args.max_units is not None and args.max_units < smallest:
        parser.error(f"--max-units {args.max_units} is below the smallest network "
                     f"({smallest} units: one input and one unit per hidden layer)")
    if args.strategy != "none":
        parser.error("--path runs on one device; drop --strategy")
    if args.cv is not None:
        if "--val-fraction" in given:
            parser.error(f"--cv {args.cv} holds out 1/{args.cv} of the training rows in each "
                         "fold; drop --val-fraction")
        args.val_fraction = 1 / args.cv
    if not any(word == "--solver" or word.startswith("--solver=") for word in argv) \
            and not args.preset:
        args.solver = "proximal"  # exact zeros: the path's counts need no threshold
        if args.threshold is None:
            args.threshold = 0.0


def _apply_preset(parser, args, argv):
    """Fill in the preset's settings for the data set, except those given as flags."""
    given = set()
    for action in parser._actions:
        for option in action.option_strings:
            if any(word == option or word.startswith(option + "=") for word in argv):
                given.add(action.dest)
    for name, value in PRESETS[args.preset].items():
        if name == "cv" and "val_fraction" in given:
            continue  # the user's own validation split instead of the preset's folds
        if name not in given:
            setattr(args, name, value(args) if callable(value) else value)
    if args.solver != "proximal" and "freeze_zeros" not in given:
        args.freeze_zeros = False  # --solver subgradient given: nothing to freeze
    if "adaptive" not in given and args.group_strength == 0:
        args.adaptive = None  # an L1-only path: no group Lasso to weigh


def keras_backend_name():
    """The backend Keras runs on, or will once imported (without importing it)."""
    import json
    import os
    import sys

    if "keras" in sys.modules:
        import keras

        return keras.backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    settings = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")),
                            "keras.json")
    try:
        with open(settings) as file:
            return json.load(file).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def use_tensorflow_backend(script="demo_tensorflow.py"):
    """Make Keras run on TensorFlow for a TensorFlow-only script, saying so when the user's
    KERAS_BACKEND asked for another; exit 2 if Keras already runs on another backend."""
    import os
    import sys

    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != "tensorflow":
            print(f"error: {script} needs Keras on TensorFlow, but Keras was already imported "
                  f"on {keras.backend.backend()} in this process (use demo_keras.py there)",
                  file=sys.stderr)
            raise SystemExit(2)
        return
    requested = os.environ.get("KERAS_BACKEND", "tensorflow")
    if requested != "tensorflow":
        print(f"note: {script} is a TensorFlow training loop, so it runs Keras on TensorFlow "
              f"and not on KERAS_BACKEND={requested} (demo_keras.py runs on {requested})",
              file=sys.stderr)
    os.environ["KERAS_BACKEND"] = "tensorflow"


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
