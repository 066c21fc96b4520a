"""Where a run writes: its folder, files written whole or not at all, a full disk in one sentence.

Every file is written under a temporary name in the same folder and renamed into place, so
an interrupted or failed write never leaves a truncated file that looks complete. Output
paths are checked before training starts. Nothing here imports TensorFlow.
"""

import contextlib
import datetime
import errno
import json
import math
import os
import sys
import tempfile
from pathlib import Path

# errno values that mean "no room": a full disk, a user quota, a file size limit.
NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class OutputError(OSError):
    """A file could not be written; the message is one sentence naming the path."""


def check_writable_folder(folder, flag):
    """One sentence if `folder` cannot hold new files (created if missing), else None."""
    if not str(folder).strip():
        return f"{flag} is empty: name a folder (the default is summaries)"
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        return f"{flag} {folder}: this is a file, not a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        os.close(descriptor)
        os.remove(probe)
    except OSError as error:
        return f"{flag} {folder}: cannot write there ({error.strerror or error})"
    return None


def check_output_file(path, flag):
    """One sentence if a file cannot be written at `path` (its folder must exist), else None."""
    path = Path(path)
    if path.is_dir():
        return f"{flag} {path}: this is a folder; give a file name ending in {path.suffix or '.keras'}"
    if not path.parent.is_dir():
        return f"{flag} {path}: the folder {path.parent} does not exist"
    problem = check_writable_folder(path.parent, flag)
    return problem and f"{flag} {path}: cannot write in {path.parent}"


def new_run_dir(logdir, demo, chief=True):
    """A new folder `<logdir>/<UTC timestamp>-<demo>`; an existing one is never reused.

    A worker that is not the chief of a multi-worker run gets a temporary folder instead,
    which the demo removes at the end: the chief writes the files, once.
    """
    if not chief:
        return Path(tempfile.mkdtemp(prefix=f"{demo}-worker-"))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%SZ")
    for attempt in range(1000):
        suffix = f"-{attempt + 1}" if attempt else ""
        path = Path(logdir) / f"{stamp}-{demo}{suffix}"
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
        except OSError as error:
            raise as_output_error(error, path) from None
    raise OutputError(f"could not create a new run folder under {logdir}")


@contextlib.contextmanager
def exit_on_output_error():
    """A run folder that cannot be made (a full disk) ends the program with one sentence
    and exit code 1; later write failures are handled where the files are written."""
    try:
        yield
    except OutputError as error:
        print(f"error: {error.strerror}", file=sys.stderr)
        raise SystemExit(1) from None


def as_output_error(error, path):
    """An OSError while writing `path` as an OutputError with one sentence."""
    if getattr(error, "errno", None) in NO_ROOM:
        return OutputError(errno.ENOSPC, f"the disk is full: could not write {path}")
    reason = getattr(error, "strerror", None) or str(error)
    return OutputError(getattr(error, "errno", None) or errno.EIO,
                       f"could not write {path} ({reason})")


def write_atomically(path, write):
    """Call `write(temporary_path)`, then rename the result to `path`; on any failure the
    temporary file is removed and `path` is left as it was. Raises OutputError on an OSError.

    The temporary name keeps the suffix (".keras", ".png"), which some writers require.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException as error:
        try:
            temporary.unlink()
        except OSError:
            pass
        if isinstance(error, OSError):
            raise as_output_error(error, path) from None
        raise


def write_text(path, text):
    write_atomically(path, lambda temporary: temporary.write_text(text))


def write_json(path, record):
    """`record` as strict JSON (what JavaScript's JSON.parse and jq read): a number that is
    not finite becomes null."""
    write_text(path, json.dumps(finite_or_none(record), indent=2, default=_plain,
                                allow_nan=False) + "\n")


def finite_or_none(value):
    """`value` with every float that is NaN or infinite, at any depth, replaced by None."""
    if hasattr(value, "tolist"):  # NumPy arrays and scalars
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def _plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def is_disk_full_message(text):
    """True for TensorFlow's words for a full disk (its writers raise their own errors)."""
    return any(words in str(text) for words in
               ("No space left on device", "Disk quota exceeded", "File too large"))


@contextlib.contextmanager
def unless_disk_full():
    """Let a write fail quietly when the disk is full (the run reports it once, at the end)."""
    try:
        yield
    except Exception as error:  # TensorFlow's writers raise their own error types
        if not is_disk_full_message(error):
            raise
