"""Reading a CSV of numbers: every problem is one sentence naming the file, line and column.

Nothing here imports TensorFlow (common.data.datasets uses it for the shipped Boston file and yours).
"""

import csv
import io
import math

import numpy as np


class DataError(ValueError):
    """Bad or missing data; the message is one sentence naming the file, column and row."""


def read_bytes(path):
    if path.is_dir():
        raise DataError(f"{path}: this is a folder, not a CSV file")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        return path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error})") from None


def decode(path, content):
    """UTF-8 text without a byte-order mark; one sentence naming the line otherwise."""
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = content[:error.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not UTF-8 text (byte {content[error.start]:#04x}); "
                        "save the file as UTF-8") from None


def parse_numeric_csv(path, content, target, skip_lines=0):
    """Features, target and feature names of CSV bytes whose every cell is a number.

    Blank lines are skipped; line numbers in messages are the file's own.
    """
    reader = csv.reader(io.StringIO(decode(path, content), newline=""))
    rows = []  # (line number, cells)
    for cells in reader:
        if reader.line_num > skip_lines and any(cell.strip() for cell in cells):
            rows.append((reader.line_num, cells))
    if len(rows) < 2:
        raise DataError(f"{path}: no data rows below the header")
    header = [column.strip() for column in rows[0][1]]
    duplicates = sorted({column for column in header if header.count(column) > 1})
    if duplicates:
        raise DataError(f"{path}: the header names {', '.join(map(repr, duplicates))} more than "
                        "once; every column needs its own name")
    if target not in header:
        raise DataError(f"{path}: no column named {target!r} (columns: {', '.join(header)})")
    if len(header) < 2:
        raise DataError(f"{path}: the only column is the target {target!r}; there are no "
                        "features to learn from")
    values = np.empty((len(rows) - 1, len(header)), dtype=np.float64)
    for row_index, (line, row) in enumerate(rows[1:]):
        if len(row) != len(header):
            raise DataError(f"{path}, line {line}: {len(row)} cells, the header has {len(header)}")
        for column_index, cell in enumerate(row):
            values[row_index, column_index] = number(cell, path, line, header[column_index])
    target_index = header.index(target)  # every value fits float32 (number), so do spans
    features = np.delete(values, target_index, axis=1)
    names = [column for column in header if column != target]
    return features, values[:, target_index], names


# The largest size of a value: the network, its scalers and pruned.keras compute in float32
# (at most 3.4e38), and the difference of two values, the scalers' range, must fit too.
FLOAT32_LIMIT = 1e38


def number(cell, path, line, column):
    if not cell.strip():
        raise DataError(f"{path}, line {line}, column {column!r}: empty cell")
    try:
        value = float(cell)
    except ValueError:
        raise DataError(f"{path}, line {line}, column {column!r}: {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path}, line {line}, column {column!r}: {cell!r} is not a finite number")
    if abs(value) > FLOAT32_LIMIT:
        raise DataError(f"{path}, line {line}, column {column!r}: {cell!r} does not fit the "
                        f"float32 numbers the network computes with (at most {FLOAT32_LIMIT:g} "
                        "in size)")
    return value
