"""Data: the shipped file's checksum, the split, scaling without leakage, clear errors."""

import shutil
import urllib.error

import numpy as np
import pytest

from common.data import datasets as data_module
from common.data.datasets import DataError, load_dataset


def test_boston_split_scaling_and_names(boston):
    assert boston.x_train.shape == (379, 13) and boston.x_test.shape == (127, 13)
    assert boston.feature_names[:3] == ["CRIM", "ZN", "INDUS"] and len(boston.feature_names) == 13
    assert boston.task == "regression" and boston.num_classes is None
    np.testing.assert_allclose(boston.x_train.min(axis=0), -1.0, atol=1e-6)
    np.testing.assert_allclose(boston.x_train.max(axis=0), 1.0, atol=1e-6)
    assert boston.y_train.min() == 0.0 and boston.y_train.max() == pytest.approx(1.0)


def test_scalers_use_training_statistics_only(boston):
    """Refit the scaling on the raw training rows alone: it must reproduce the data exactly."""
    from sklearn.model_selection import train_test_split

    # An independent reader (NumPy's), not the module's own: line 1 is a title, 2 the header.
    table = np.loadtxt(data_module.BOSTON_CSV, delimiter=",", skiprows=2)
    raw, target = table[:, :-1], table[:, -1]
    raw_train, raw_test, y_train, y_test = train_test_split(
        raw, target, test_size=0.25, random_state=0)
    low, high = raw_train.min(axis=0), raw_train.max(axis=0)
    expected_test = 2 * (raw_test - low) / (high - low) - 1
    np.testing.assert_allclose(boston.x_test, expected_test, atol=1e-5)
    np.testing.assert_allclose(boston.inverse_transform_target(boston.y_test).ravel(), y_test,
                               rtol=1e-5)
    # With all rows in the statistics (the original's leak) the test inputs would differ.
    all_low, all_high = raw.min(axis=0), raw.max(axis=0)
    leaked = 2 * (raw_test - all_low) / (all_high - all_low) - 1
    assert not np.allclose(boston.x_test, leaked, atol=1e-5)


def test_the_seed_picks_the_split():
    first, again, other = (load_dataset("boston", seed=seed) for seed in (0, 0, 1))
    np.testing.assert_array_equal(first.x_test, again.x_test)
    assert not np.array_equal(first.x_test, other.x_test)


def test_checksum_mismatch_names_the_file(tmp_path, monkeypatch):
    damaged = tmp_path / "boston_house_prices.csv"
    shutil.copy(data_module.BOSTON_CSV, damaged)
    with open(damaged, "a") as handle:
        handle.write("0,0,0,0,0,0,0,0,0,0,0,0,0,0\n")
    monkeypatch.setattr(data_module, "BOSTON_CSV", damaged)
    with pytest.raises(DataError, match="boston_house_prices.csv has sha256"):
        load_dataset("boston")


def test_digits_and_diabetes():
    digits = load_dataset("digits")
    assert digits.task == "classification" and digits.num_classes == 10
    assert digits.num_features == 64 and digits.x_train.min() >= 0 and digits.x_train.max() <= 1
    assert set(np.unique(digits.y_test)) == set(range(10))
    diabetes = load_dataset("diabetes")
    assert diabetes.task == "regression" and diabetes.num_features == 10


def test_california_offline_is_one_clear_sentence(monkeypatch):
    import sklearn.datasets

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(sklearn.datasets, "fetch_california_housing", offline)
    with pytest.raises(DataError, match="california data set is downloaded .* offline"):
        load_dataset("california")


def write_csv(tmp_path, text):
    path = tmp_path / "houses.csv"
    path.write_text(text)
    return path


def test_user_csv_loads(tmp_path):
    rows = "\n".join(f"{i},{i % 7},{2 * i + 1}" for i in range(40))
    data = load_dataset("csv", csv_path=write_csv(tmp_path, "a,b,price\n" + rows + "\n"),
                        target="price")
    assert data.feature_names == ["a", "b"] and data.num_features == 2
    assert len(data.x_train) == 30 and len(data.x_test) == 10


@pytest.mark.parametrize("text, target, message", [
    ("a,price\n1,2\n3,x\n", "price", r"houses.csv, line 3, column 'price': 'x' is not a number"),
    ("a,price\n1,2\n,4\n", "price", r"houses.csv, line 3, column 'a': empty cell"),
    ("a,price\n1,2\n", "cost", r"houses.csv: no column named 'cost'"),
    ("a,price\n", "price", r"houses.csv: no data rows"),
    ("a,price\n1,2\n3\n", "price", r"houses.csv, line 3: 1 cells, the header has 2"),
])
def test_bad_csv_names_file_column_and_row(tmp_path, text, target, message):
    with pytest.raises(DataError, match=message):
        load_dataset("csv", csv_path=write_csv(tmp_path, text), target=target)


@pytest.mark.parametrize("content, message", [
    ("a,y\n1,2\n3,\xe9\n".encode("latin-1"), r"houses.csv, line 3: not UTF-8 text .* UTF-8"),
    (b"y\n1\n2\n3\n4\n", r"houses.csv: the only column is the target 'y'"),
    (b"a,y,c,y\n1,2,3,4\n5,6,7,8\n", r"houses.csv: the header names 'y' more than once"),
    # Past float32, which the network, its scalers and pruned.keras compute in: the cell.
    (b"a,y\n1,2\n3,1e308\n5,6\n7,8\n",
     r"houses.csv, line 3, column 'y': '1e308' does not fit the float32 numbers"),
    (b"a,y\n-1e308,2\n1e308,3\n5,6\n7,8\n", r"line 2, column 'a': '-1e308' does not fit"),
    (b"a,b,y\n1,2,3\n4,5e38,6\n7,8,9\n1,2,3\n", r"line 3, column 'b': '5e38' does not fit"),
])
def test_files_that_cannot_be_learned_from_are_refused_in_one_sentence(tmp_path, content,
                                                                      message):
    path = tmp_path / "houses.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as raised:
        load_dataset("csv", csv_path=path, target="y")
    assert "\n" not in str(raised.value)


def test_byte_order_mark_and_blank_lines_are_ignored(tmp_path):
    rows = "".join(f"{i},{2 * i}\n" for i in range(8))
    path = tmp_path / "houses.csv"
    path.write_bytes(("\ufeffprice,a\n" + rows + "\n\n").encode("utf-8"))
    data = load_dataset("csv", csv_path=path, target="price")
    assert data.feature_names == ["a"] and len(data.x_train) + len(data.x_test) == 8


def test_a_folder_given_as_csv_is_named_as_a_folder(tmp_path):
    with pytest.raises(DataError, match="this is a folder, not a CSV file"):
        load_dataset("csv", csv_path=tmp_path, target="y")


def test_boston_is_parsed_from_the_bytes_that_were_hashed(monkeypatch):
    """The file is read once: a reader that opened it again could parse other bytes."""
    from pathlib import Path

    reads = []
    original = Path.read_bytes

    def counting(self):
        reads.append(self)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    monkeypatch.setattr("builtins.open", None)  # any second way of opening the file fails
    data = load_dataset("boston")
    assert reads == [data_module.BOSTON_CSV] and data.num_features == 13


def test_missing_csv_file(tmp_path):
    with pytest.raises(DataError, match=r"nothere.csv: no such file"):
        load_dataset("csv", csv_path=tmp_path / "nothere.csv", target="y")


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown data set 'mnist'"):
        load_dataset("mnist")
