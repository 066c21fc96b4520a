"""One configuration and one command line for both demos.

This module imports neither TensorFlow nor Keras, so a typo on the command line is
reported in a fraction of a second instead of after TensorFlow's five-second import.
`--help` lists the flags in groups; `--preset` sets defaults, and flags given explicitly win.
"""

import dataclasses
import sys

from common.run.arguments import (MAX_EVAL_EVERY, MAX_FOLDS, MAX_GAMMA, MAX_LR, MAX_POINTS,
                              MAX_SEED, MAX_STRENGTH, MAX_WIDTH, HelpFormatter, Parser, at_most,
                              attach_negative_numbers, check_flags, check_path, check_tf_config,
                              folds, fraction, keras_path, non_negative_float, non_negative_int,
                              positive_float, positive_int, seed, width)
from common.data.datasets import DataError, ValidationTooSmall, fold_datasets, load_dataset
from common.outputs.files import check_output_file, check_writable_folder
from common.run.lifecycle import raise_if_stopped

DATASETS = ("boston", "diabetes", "digits", "california", "csv")
SOLVERS = ("subgradient", "proximal")
SELECTION_RULES = ("1se", "min")
STRATEGIES = ("none", "mirrored", "multiworker")

# --preset compact: the smallest network the validation data supports: the lambda path (40
# lambdas) with exact zeros and adaptive weights, each point trained three times as long as
# the dense network (--path-epochs 3 x --epochs, set in _derived_defaults) and fine-tuned
# (1000 epochs, early stopping on half the held-out rows, cross-fitted: common/search/crossval.py)
# before it is scored, lambda chosen by 5-fold cross-validation; a point ends early once its
# units and objective have settled (relative change 1e-3 over a compiled call of up to 250
# steps: on Boston seeds 1-4 kept the networks they kept without it and seed 0 one input
# fewer, in 45-65 % of the path's steps; DIGITS' minibatch points never settle, so the rule
# changes nothing there; the tolerance against 3e-3: benchmarks/README.md). Each setting was
# chosen on validation numbers only, never on the test split (benchmarks/README.md,
# "Sparsity against accuracy", has the comparisons).
PRESETS = {"compact": dict(path=True, solver="proximal", adaptive=1.0, finetune=1000,
                           patience=50, path_points=40, path_settle=1e-3, cv=5)}
# Epochs of the original demos: 1500 steps for TensorFlow, 2500 epochs for Keras.
DEFAULT_EPOCHS = {"tensorflow": 1500, "keras": 2500}
__all__ = ["Config", "parse_config", "build_parser", "MAX_FOLDS", "MAX_SEED", "PRESETS"]


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
    l2: float = 0.0  # L2 (weight decay) strength
    threshold: float | None = None  # a group is active when sum(|w|) exceeds this; None:
    # 1e-3 (the original's) for the subgradient solver, 0.0 for the proximal one (exact zeros)
    solver: str = "subgradient"  # subgradient (penalty in the loss, the original) or proximal
    freeze_zeros: bool = False  # proximal solver: a group that reaches zero stays zero
    seed: int = 0  # seeds the split, the initial weights and the batch order
    logdir: str = "summaries"  # each run writes a new folder below this one
    eval_every: int = 25  # epochs between two evaluations (test split; validation with path)
    finetune: int = 0  # epochs to fine-tune the pruned model without penalty
    patience: int | None = None  # finetune: stop when the validation loss stalls this long
    strategy: str = "none"  # tf.distribute: none, mirrored (one machine), multiworker (TF_CONFIG)
    connect_timeout: float = 120.0  # multiworker: seconds to wait for the other workers
    path: bool = False  # train the dense network, then a warm-started path of growing lambdas
    val_fraction: float = 0.2  # path: the training rows held out to choose on (never the test)
    path_points: int = 20  # path: lambdas on the automatic geometric grid
    path_lambdas: tuple[float, ...] | None = None  # path: these lambdas instead of the grid
    path_epochs: int | None = None  # path: epochs per point; None: epochs // 15, at least 1
    path_settle: float | None = None  # path: a point ends once settled to this; None/0: off
    select: str = "1se"  # path: 1se (fewest units within one SE of the best) or min (best)
    max_units: int | None = None  # path: the best point with at most this many active units
    cv: int | None = None  # path: choose by K-fold cross-validation (each fold holds out 1/K)
    no_pictures: bool = False  # no group-norm histograms and kernel images in TensorBoard
    no_show: bool = False  # Keras demo: never open a plot window
    save_model: str | None = None  # also save the trained model (.keras, its optimizer too)

    @property
    def uses_validation(self):
        """Whether a validation split is carved from the training rows (--path, --patience)."""
        return self.path or self.patience is not None

    def kernel_strengths(self):
        """Each kernel's (group, l1) strengths, inputs first: --group's and --l1's one value
        for every kernel, or one per kernel."""
        kernels = len(self.hidden) + 1
        return list(zip(self.group_layers or (self.group_strength,) * kernels,
                        self.l1_layers or (self.l1,) * kernels))

    def settings(self):
        """Every setting, as a dict: what run.json and the outputs read."""
        return dataclasses.asdict(self)

    def changed(self, demo):
        """The settings that differ from `python demo_<demo>.py`'s defaults (the threshold's
        follows the solver): {name: (value, default)}."""
        defaults = default_settings(demo, self.solver)
        return {key: (value, defaults[key]) for key, value in self.settings().items()
                if value != defaults[key]}

    def applying(self):
        """The settings that apply to this run and are set: the path's only with --path
        (where the path chooses lambda: --group's values, if given, set only the layers'
        ratios), the validation split's only when there is one, the workers' only with
        --strategy multiworker."""
        hidden = {"group_strength"} if self.path else {
            "path_points", "path_lambdas", "path_epochs", "path_settle", "select", "max_units"}
        hidden |= set() if self.uses_validation else {"val_fraction"}
        hidden |= set() if self.strategy == "multiworker" else {"connect_timeout"}
        return {key: value for key, value in self.settings().items()
                if value not in (None, False) and key not in hidden}

    def __post_init__(self):
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if self.freeze_zeros and self.solver != "proximal":
            raise ValueError("freeze_zeros needs the proximal solver")
        if self.threshold is None:
            self.threshold = 0.0 if self.solver == "proximal" else 1e-3


def default_settings(demo, solver="subgradient"):
    """Every setting of `python demo_<demo>.py` without flags, as a dict (the threshold's
    default is `solver`'s)."""
    return dataclasses.asdict(Config(epochs=DEFAULT_EPOCHS[demo], solver=solver)) | (
        {"solver": "subgradient"})


def build_parser(demo):
    """The argparse parser shared by both demos, without defaults: parsing gives the flags
    given. `parse_config` sets the defaults (`demo` picks the default epochs) and a preset's."""
    parser = Parser(
        prog=f"demo_{demo}.py", formatter_class=HelpFormatter,
        description="Group sparse regularization (Scardapane et al., 2017): train, count "
        "the surviving units, prune. Flags the other demo uses are accepted here too.",
        epilog="Exit codes: 0 completed, 1 diverged or failed, 2 bad input, "
        "129 hangup (SIGHUP), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="compact: the smallest network the validation data supports: --path "
                        "--adaptive --path-points 40 --path-epochs (3 x --epochs) "
                        "--path-settle 1e-3 --finetune 1000 --patience 50 --cv 5 (about 30 s on "
                        "Boston)")

    add = parser.add_argument_group("data").add_argument
    add("--dataset", choices=DATASETS, help="data set")
    add("--csv", dest="csv_path", metavar="PATH", help="train on your own numeric CSV")
    add("--target", metavar="COLUMN", help="the CSV column to predict (with --csv)")
    add("--seed", type=seed,
        help=f"seeds the split, the initial weights and the batch order (0 to {MAX_SEED})")

    add = parser.add_argument_group("network and training").add_argument
    add("--hidden", type=at_most(width, MAX_WIDTH), nargs="+", metavar="WIDTH",
        help=f"hidden layer widths, separated by spaces (each at most {MAX_WIDTH})")
    add("--epochs", type=positive_int, help="passes over the training split")
    add("--batch-size", type=positive_int, help="rows per step; none: full batch")
    add("--lr", type=at_most(positive_float, MAX_LR), help="Adam learning rate")
    add("--solver", choices=SOLVERS,
        help="subgradient: the penalty in the loss, as the original; proximal: "
        "an exact proximal step after each Adam step, so dropped units are exactly zero")

    add = parser.add_argument_group("penalty").add_argument
    add("--group", dest="group_strength", type=at_most(non_negative_float, MAX_STRENGTH),
        nargs="+", metavar="LAMBDA", help="group Lasso strength (lambda): one value, or one per "
        f"kernel (inputs first); at most {MAX_STRENGTH:g}, like every strength")
    add("--l1", type=at_most(non_negative_float, MAX_STRENGTH), nargs="+", metavar="STRENGTH",
        help="L1 strength: one value, or one per kernel")
    add("--l2", type=at_most(non_negative_float, MAX_STRENGTH), help="L2 strength")
    add("--adaptive", type=at_most(positive_float, MAX_GAMMA), nargs="?", const=1.0,
        metavar="GAMMA", help="adaptive group Lasso: a second stage weighs each group by "
        f"1/||w_g||**GAMMA (1 when not given, at most {MAX_GAMMA:g}) from the first; zero "
        "groups stay removed")
    add("--freeze-zeros", action="store_true",
        help="with --solver proximal: a unit whose weights reach zero stays removed")
    add("--threshold", type=at_most(non_negative_float, MAX_STRENGTH),
        help="a group is active when sum(|w|) exceeds this; none: 1e-3, or 0 with "
        "--solver proximal")

    add = parser.add_argument_group("choosing lambda (on validation data, never the test "
                                    "split)").add_argument
    add("--path", action="store_true",
        help="train the dense network, then a warm-started path of growing lambdas, and keep "
        "the network the validation split picks")
    add("--val-fraction", type=fraction,
        help="--path: share of the training rows held out for choosing (0 to 0.5)")
    add("--path-points", type=at_most(positive_int, MAX_POINTS),
        help=f"--path: lambdas on the automatic grid (at most {MAX_POINTS})")
    add("--path-lambdas", type=at_most(positive_float, MAX_STRENGTH), nargs="+", metavar="LAMBDA",
        help="--path: these increasing lambdas instead of the automatic grid")
    add("--path-epochs", type=positive_int,
        help="--path: epochs per point; none: --epochs / 15, in whole --eval-every chunks")
    add("--path-settle", type=at_most(non_negative_float, 1.0), metavar="TOLERANCE",
        help="--path: a point ends early, at the end of a compiled call (whole epochs, up to "
        "250 steps; from its second call on), once no unit changed during the call and the "
        "mean objective moved by at most this relative change (the preset: 1e-3; 0: off)")
    add("--select", choices=SELECTION_RULES,
        help="--path: 1se, the fewest active units within one standard error of the best "
        "validation metric; min, the best validation metric")
    add("--max-units", type=positive_int,
        help="--path: the best validation metric among points with at most this many "
        "active units (inputs included)")
    add("--cv", type=folds, metavar="K",
        help="--path: choose lambda by K-fold cross-validation: the run's own validation "
        "split (1/K of the training rows) is one fold, the other folds train beside the "
        "path, and the 1-SE rule reads all training rows once")

    add = parser.add_argument_group("after training").add_argument
    add("--finetune", type=non_negative_int,
        help="epochs to train the pruned model further without penalty")
    add("--patience", type=positive_int,
        help="--finetune: stop when the validation loss has not improved for this many "
        "epochs (needs a validation split: --path or --val-fraction)")

    add = parser.add_argument_group("output and distribution").add_argument
    add("--logdir", help="runs are written below this folder")
    add("--eval-every", type=at_most(positive_int, MAX_EVAL_EVERY),
        help="epochs between evaluations: on the test split, or on the validation split when "
        "choosing lambda")
    add("--no-pictures", action="store_true",
        help="write no group-norm histograms and kernel images to TensorBoard (very wide "
        "layers make large images)")
    add("--no-show", action="store_true", help="Keras demo: save the plot, open no window")
    add("--save-model", metavar="PATH", type=keras_path,
        help="save the trained model, with its optimizer, to PATH (.keras)")
    add("--strategy", choices=STRATEGIES,
        help="tf.distribute: none, mirrored (every GPU of this machine) or "
        "multiworker (one process per machine, cluster in TF_CONFIG)")
    add("--connect-timeout", type=positive_float,
        help="--strategy multiworker: seconds to wait for the other workers")
    return parser


def parse_config(argv=None, demo="tensorflow"):
    """Parse `argv` into a Config; bad input exits with code 2 and one line.

    Besides the flags' values, the output paths are checked here (a folder that cannot be
    written, a model path whose folder is missing), before any training or TensorFlow.
    """
    parser = build_parser(demo)
    argv = attach_negative_numbers(parser, sys.argv[1:] if argv is None else list(argv))
    defaults = dataclasses.asdict(Config(epochs=DEFAULT_EPOCHS[demo]))
    # The threshold's default follows the solver (Config, once the solver is known).
    parser.set_defaults(**{**defaults, "hidden": list(defaults["hidden"]), "threshold": None})
    args = parser.parse_args(argv)  # --help, and a bad value, end here
    if args.preset:  # its settings as defaults: the flags given still win
        parser.set_defaults(**PRESETS[args.preset])
        args = parser.parse_args(argv)
    # The flags given, and nothing else: the same parser without defaults.
    given = {name for name, value in vars(build_parser(demo).parse_args(argv)).items()
             if value is not None and value is not False}
    values = vars(args)
    for name, layers in (("group_strength", "group_layers"), ("l1", "l1_layers")):
        given_values = list(values[name]) if isinstance(values[name], list) else [values[name]]
        flag = "--group" if name == "group_strength" else "--l1"
        if len(given_values) not in (1, len(args.hidden) + 1):
            parser.error(f"{flag} takes one value or one per kernel ({len(args.hidden) + 1} for "
                         f"--hidden {' '.join(map(str, args.hidden))}), got {len(given_values)}")
        values[name] = max(given_values)
        values[layers] = tuple(given_values) if len(given_values) > 1 else None
    _derived_defaults(args, given)
    problem = (check_flags(args, demo) or check_path(args, given)
               or check_tf_config(args.strategy) or check_writable_folder(args.logdir, "--logdir")
               or (args.save_model and check_output_file(args.save_model, "--save-model")))
    if problem:
        parser.error(problem)
    values["hidden"] = tuple(args.hidden)
    if args.path_lambdas is not None:
        values["path_lambdas"] = tuple(args.path_lambdas)
    return Config(**values)


def _derived_defaults(args, given):
    """The defaults that follow from other flags, in one place."""
    if args.csv_path is not None:
        args.dataset = "csv"
    if args.preset and "path_epochs" not in given:
        args.path_epochs = 3 * args.epochs  # the preset trains each point 3 x --epochs
    if args.preset and "val_fraction" in given and "cv" not in given:
        args.cv = None  # the user's own validation split instead of the preset's folds
    if args.preset and args.group_strength == 0 and "adaptive" not in given:
        args.adaptive = None  # an L1-only path: no group Lasso to weigh
    if args.path and "solver" not in given:
        args.solver = "proximal"  # exact zeros: the path's counts need no threshold
    if args.cv is not None and args.path and "val_fraction" not in given:
        args.val_fraction = 1 / args.cv


def load_or_exit(config):
    """The data set of a Config (common.data.datasets); bad data ends the program with one sentence
    and exit code 2."""
    try:
        data = load_dataset(config.dataset, config.seed, config.csv_path, config.target,
                            config.val_fraction if config.uses_validation else None)
        if config.cv:  # the folds can be carved: said now, not after the run's own path
            fold_datasets(data, config.cv, config.seed)
        raise_if_stopped()  # a signal while the data loaded: the run ends before it began
        return data
    except ValidationTooSmall as error:  # named by the flag the user gave (or the preset's)
        flag = f"--cv {config.cv}" if config.cv else f"--val-fraction {error.fraction:g}"
        print(f"error: {error.says(flag)}", file=sys.stderr)
        raise SystemExit(2) from None
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
