"""Data sets, split and scaled the way the original demos did, without their test leakage.

The scalers are fitted on the training split only: the original fitted them on all rows,
so test statistics leaked into training. Nothing here imports TensorFlow.
"""

import csv
import dataclasses
import hashlib
import math
from pathlib import Path

import numpy as np

BOSTON_CSV = Path(__file__).with_name("boston_house_prices.csv")
# The file scikit-learn shipped up to release 1.1.x (see README: "Data").
BOSTON_SHA256 = "d98212636026544fc9b9c0f372e5f819872e6fa6fa757ab025efdda22180f2d6"
TEST_FRACTION = 0.25


class DataError(ValueError):
    """Bad or missing data; the message is one sentence naming the file, column and row."""


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

    @property
    def num_features(self):
        return self.x_train.shape[1]

    @property
    def num_outputs(self):
        return self.num_classes or 1

    def inverse_transform_target(self, y):
        """Scaled regression targets back to original units (Boston: $1000s)."""
        return np.asarray(y) * (self.target_max - self.target_min) + self.target_min


def load_dataset(name="boston", seed=0, csv_path=None, target=None):
    """Load a data set by name, split 75/25 with `seed`, scale with training statistics."""
    if name == "boston":
        x, y, names = _read_numeric_csv(_checked_boston_path(), "MEDV", skip_lines=1)
        return _split_and_scale(name, x, y, names, seed, "regression")
    if name == "csv":
        if csv_path is None or target is None:
            raise DataError("a CSV data set needs both a file path and a target column")
        x, y, names = _read_numeric_csv(Path(csv_path), target)
        return _split_and_scale(name, x, y, names, seed, "regression")
    if name in ("diabetes", "digits", "california"):
        return _load_sklearn(name, seed)
    raise DataError(f"unknown data set {name!r}: choose boston, diabetes, digits, california or csv")


def _checked_boston_path():
    if not BOSTON_CSV.is_file():
        raise DataError(f"{BOSTON_CSV} is missing: reinstall the repository")
    digest = hashlib.sha256(BOSTON_CSV.read_bytes()).hexdigest()
    if digest != BOSTON_SHA256:
        raise DataError(f"{BOSTON_CSV} has sha256 {digest}, expected {BOSTON_SHA256}: "
                        "the file was changed or damaged")
    return BOSTON_CSV


def _read_numeric_csv(path, target, skip_lines=0):
    """Features, target and feature names of a CSV whose every cell is a number."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if len(rows) <= skip_lines + 1:
        raise DataError(f"{path}: no data rows below the header")
    header = [column.strip() for column in rows[skip_lines]]
    if target not in header:
        raise DataError(f"{path}: no column named {target!r} (columns: {', '.join(header)})")
    values = np.empty((len(rows) - skip_lines - 1, len(header)), dtype=np.float64)
    for row_index, row in enumerate(rows[skip_lines + 1:]):
        line = row_index + skip_lines + 2  # 1-based line number in the file
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} cells, the header has {len(header)}")
        for column_index, cell in enumerate(row):
            values[row_index, column_index] = _number(cell, path, line, header[column_index])
    target_index = header.index(target)
    features = np.delete(values, target_index, axis=1)
    names = [column for column in header if column != target]
    return features, values[:, target_index], names


def _number(cell, path, line, column):
    if not cell.strip():
        raise DataError(f"{path}, line {line}, column {column!r}: empty cell")
    try:
        value = float(cell)
    except ValueError:
        raise DataError(f"{path}, line {line}, column {column!r}: {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path}, line {line}, column {column!r}: {cell!r} is not a finite number")
    return value


def _load_sklearn(name, seed):
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
    return _split_and_scale(name, bunch.data, bunch.target, names, seed, task)


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


def _split_and_scale(name, x, y, names, seed, task):
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import MinMaxScaler

    if len(x) < 4:
        raise DataError(f"data set {name!r} has {len(x)} rows: too few to split 75/25")
    stratify = y if task == "classification" else None
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=seed, stratify=stratify)
    # Inputs to [-1, 1] as the original; DIGITS pixels to [0, 1] as the paper.
    feature_range = (0, 1) if name == "digits" else (-1, 1)
    scaler = MinMaxScaler(feature_range=feature_range).fit(x_train)
    x_train = scaler.transform(x_train).astype(np.float32)
    x_test = scaler.transform(x_test).astype(np.float32)
    if task == "classification":
        return Dataset(name, task, x_train, x_test, y_train.astype(np.int32),
                       y_test.astype(np.int32), names, int(np.max(y)) + 1)
    low, high = float(np.min(y_train)), float(np.max(y_train))
    span = high - low if high > low else 1.0
    return Dataset(name, task, x_train, x_test,
                   ((y_train - low) / span).astype(np.float32).reshape(-1, 1),
                   ((y_test - low) / span).astype(np.float32).reshape(-1, 1),
                   names, None, low, low + span)


def load_or_exit(config):
    """load_dataset for a Config; bad data ends the program with one sentence and exit code 2."""
    import sys

    try:
        return load_dataset(config.dataset, config.seed, config.csv_path, config.target)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
