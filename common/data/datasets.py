"""Data sets, split and scaled the way the original demos did, without their test leakage.

The scalers are fitted on the training split only: the original fitted them on all rows,
so test statistics leaked into training. Nothing here imports TensorFlow.
"""

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from common.data.csvfile import DataError, parse_numeric_csv, read_bytes

BOSTON_CSV = Path(__file__).with_name("boston_house_prices.csv")
# The file scikit-learn shipped up to release 1.1.x (load_boston was removed in 1.2).
BOSTON_SHA256 = "d98212636026544fc9b9c0f372e5f819872e6fa6fa757ab025efdda22180f2d6"
TEST_FRACTION = 0.25


@dataclasses.dataclass
class Dataset:
    name: str
    task: str  # "regression" or "classification"
    x_train: np.ndarray  # (n_train, num_features) float32, scaled
    x_test: np.ndarray
    y_train: np.ndarray  # regression: (n, 1) float32 in [0, 1]; classification: (n,) int32
    y_test: np.ndarray
    feature_names: list[str]
    num_classes: int | None  # None for regression
    target_min: float = 0.0  # regression: the training target's range, for inverse scaling
    target_max: float = 1.0
    x_val: np.ndarray | None = None  # the validation split, carved from the training rows
    y_val: np.ndarray | None = None  # (only when asked for: --path)
    # The inputs' scaling, fitted on the training rows: scaled = (raw - center) / spread.
    input_center: np.ndarray | None = None  # (num_features,) float64
    input_spread: np.ndarray | None = None

    @property
    def num_features(self):
        return self.x_train.shape[1]

    @property
    def num_outputs(self):
        return self.num_classes or 1

    def inverse_transform_target(self, y):
        """Scaled regression targets back to original units (Boston: $1000s)."""
        return np.asarray(y) * (self.target_max - self.target_min) + self.target_min


def load_dataset(name="boston", seed=0, csv_path=None, target=None, val_fraction=None):
    """Load a data set by name, split 75/25 with `seed`, scale with training statistics.

    With `val_fraction`, that fraction of the training rows becomes a validation split
    (stratified for classification); the test split is the same as without it, and the
    scalers see only the remaining training rows.
    """
    split = dict(seed=seed, val_fraction=val_fraction)
    if name == "boston":
        x, y, names = parse_numeric_csv(BOSTON_CSV, _checked_boston_bytes(), "MEDV",
                                         skip_lines=1)
        return _split_and_scale(name, x, y, names, "regression", **split)
    if name == "csv":
        if csv_path is None or target is None:
            raise DataError("a CSV data set needs both a file path and a target column")
        path = Path(csv_path)
        x, y, names = parse_numeric_csv(path, read_bytes(path), target)
        return _split_and_scale(name, x, y, names, "regression", **split)
    if name in ("diabetes", "digits", "california"):
        return _load_sklearn(name, split)
    raise DataError(f"unknown data set {name!r}: choose boston, diabetes, digits, california or csv")


def _checked_boston_bytes():
    """The shipped Boston CSV's bytes, after checking them against the known sha256."""
    if not BOSTON_CSV.is_file():
        raise DataError(f"{BOSTON_CSV} is missing: reinstall the repository")
    content = read_bytes(BOSTON_CSV)
    digest = hashlib.sha256(content).hexdigest()
    if digest != BOSTON_SHA256:
        raise DataError(f"{BOSTON_CSV} has sha256 {digest}, expected {BOSTON_SHA256}: "
                        "the file was changed or damaged")
    return content


def _load_sklearn(name, split):
    import sklearn.datasets

    if name == "diabetes":
        bunch = sklearn.datasets.load_diabetes(scaled=False)
        task = "regression"
    elif name == "digits":
        bunch = sklearn.datasets.load_digits()
        task = "classification"
    else:
        bunch = _fetch_california(sklearn.datasets)
        task = "regression"
    names = [str(feature) for feature in bunch.feature_names]
    return _split_and_scale(name, bunch.data, bunch.target, names, task, **split)


def _fetch_california(datasets):
    import warnings

    try:
        with warnings.catch_warnings():  # scikit-learn warns on every retry; we say it once
            warnings.simplefilter("ignore")
            return datasets.fetch_california_housing()
    except Exception as error:  # URLError, HTTPError, socket timeouts, broken archives
        raise DataError(
            "the california data set is downloaded by scikit-learn on first use and that "
            f"download failed ({type(error).__name__}): this machine is probably offline; "
            "use boston, diabetes or digits, or --csv with your own file") from None


# The smallest validation split that can choose anything: fewer rows give a standard error
# too rough to compare networks by.
MIN_VALIDATION_ROWS = 10


def _split_and_scale(name, x, y, names, task, seed, val_fraction=None):
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import MinMaxScaler

    if len(x) < 4:
        raise DataError(f"data set {name!r} has {len(x)} rows: too few to split 75/25")
    stratify = y if task == "classification" else None
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=seed, stratify=stratify)
    x_val = y_val = None
    if val_fraction:
        x_train, x_val, y_train, y_val = _carve_validation(name, x_train, y_train, task, seed,
                                                           val_fraction)
    # Inputs to [-1, 1] as the original; DIGITS pixels to [0, 1] as the paper.
    feature_range = (0, 1) if name == "digits" else (-1, 1)
    scaler = MinMaxScaler(feature_range=feature_range).fit(x_train)

    def inputs(rows):
        return None if rows is None else scaler.transform(rows).astype(np.float32)

    # MinMaxScaler computes raw * scale_ + min_; as a Normalization layer's statistics:
    scaling = dict(input_center=-scaler.min_ / scaler.scale_, input_spread=1.0 / scaler.scale_)

    if task == "classification":
        def targets(values):
            return None if values is None else values.astype(np.int32)

        return Dataset(name, task, inputs(x_train), inputs(x_test), targets(y_train),
                       targets(y_test), names, int(np.max(y)) + 1, x_val=inputs(x_val),
                       y_val=targets(y_val), **scaling)
    low, high = float(np.min(y_train)), float(np.max(y_train))
    span = high - low if high > low else 1.0

    def targets(values):
        return None if values is None else ((values - low) / span).astype(np.float32).reshape(-1, 1)

    return Dataset(name, task, inputs(x_train), inputs(x_test), targets(y_train),
                   targets(y_test), names, None, low, low + span, x_val=inputs(x_val),
                   y_val=targets(y_val), **scaling)


def _derived(seed, offset):
    """Another seed from `seed`, inside scikit-learn's range 0 .. 2**32 - 1 (a seed at the top
    of the range plus an offset would be refused with a traceback)."""
    return (seed + offset) % 2**32


class ValidationTooSmall(DataError):
    """The validation split would hold too few rows (config.load_or_exit names the flag that set
    its share: `says(flag)`)."""

    def __init__(self, name, fraction, total, rows):
        self.name, self.fraction, self.total, self.rows = name, fraction, total, rows
        super().__init__(self.says(f"a validation share of {fraction:g}"))

    def says(self, what):
        return (f"data set {self.name!r}: {what} holds out {self.rows} of its {self.total} "
                f"training rows; a validation split needs at least {MIN_VALIDATION_ROWS}")


def _carve_validation(name, x_train, y_train, task, seed, fraction):
    from sklearn.model_selection import train_test_split

    rows = round(len(x_train) * fraction)
    if rows < MIN_VALIDATION_ROWS:
        raise ValidationTooSmall(name, fraction, len(x_train), rows)
    stratify = None
    if task == "classification":
        classes, counts = np.unique(y_train, return_counts=True)
        if rows < len(classes) or counts.min() < 2:
            raise DataError(f"data set {name!r}: a validation split of {rows} rows cannot hold "
                            f"each of its {len(classes)} classes with some left for training")
        stratify = y_train
    return train_test_split(x_train, y_train, test_size=rows, random_state=_derived(seed, 1),
                            stratify=stratify)


def fold_datasets(data, folds, seed):
    """--cv: the other folds-1 folds of `data`, whose validation split is the first fold.
    Each holds out an equal share of data.x_train (stratified by class for classification)
    and trains on the rest, the first fold's rows included; the test split is left out."""
    from sklearn.model_selection import KFold, StratifiedKFold

    rows = np.arange(len(data.x_train))
    if folds == 2:
        held_out = [rows]
    else:
        stratified = data.task == "classification"
        if stratified:
            classes, counts = np.unique(data.y_train, return_counts=True)
            if counts.min() < folds - 1:
                raise DataError(f"data set {data.name!r}: class {classes[np.argmin(counts)]} "
                                f"has {counts.min()} training rows, too few to appear in "
                                f"each of --cv {folds}'s folds")
        splitter = (StratifiedKFold if stratified else KFold)(folds - 1, shuffle=True,
                                                              random_state=_derived(seed, 2))
        held_out = [part for _, part in splitter.split(data.x_train, data.y_train)]
    datasets = []
    for part in held_out:
        if len(part) < MIN_VALIDATION_ROWS:
            raise DataError(f"data set {data.name!r}: --cv {folds} leaves {len(part)} rows in a "
                            f"fold; a validation split needs at least {MIN_VALIDATION_ROWS}")
        kept = np.setdiff1d(rows, part)
        datasets.append(dataclasses.replace(
            data, x_train=np.concatenate([data.x_train[kept], data.x_val]),
            y_train=np.concatenate([data.y_train[kept], data.y_val]),
            x_val=data.x_train[part], y_val=data.y_train[part], x_test=None, y_test=None))
    return datasets


def repeated_folds(data, folds, seed, repeat):
    """Repeated cross-validation: the `repeat`-th (1, 2, ...) other cut of every row that
    `data` trains and validates on (x_train and x_val together) into `folds` folds, each
    holding one out (stratified by class for classification) and training on the rest; the
    test split is left out. Repeat 0 is the run's own validation split and fold_datasets."""
    from sklearn.model_selection import KFold, StratifiedKFold

    x = np.concatenate([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val])
    splitter = (StratifiedKFold if data.task == "classification" else KFold)(
        folds, shuffle=True, random_state=_derived(seed, 2 + repeat))
    return [dataclasses.replace(data, x_train=x[kept], y_train=y[kept], x_val=x[part],
                                y_val=y[part], x_test=None, y_test=None)
            for kept, part in splitter.split(x, y.reshape(len(y), -1)[:, 0])]


def metric_name(task):
    """The metric a task is scored by: accuracy for classification, RMSE for regression."""
    return "accuracy" if task == "classification" else "rmse"


def higher_is_better(task):
    return task == "classification"
