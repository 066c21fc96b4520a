"""How a run ends: Ctrl-C, SIGTERM and SIGHUP stop training cleanly, and each ending has an
exit code.

    0 completed, 1 diverged or failed (a full disk, say), 2 bad input (one sentence, before
    training), 129 hangup (SIGHUP: the terminal or SSH session closed), 130 interrupted
    (Ctrl-C), 143 terminated (SIGTERM: timeout, Docker, Slurm)

From the script's first line on (run_as_script), a signal is only noted: the run raises
`Stopped` at the next point it checks (before the run folder is made, between chunks of
steps), never inside TensorFlow or a library callback that could swallow it. The demo then
writes everything it has. While it writes, further signals are noted and ignored, so no file
is left half written. Nothing here imports TensorFlow.
"""

import contextlib
import errno
import os
import signal
import sys
import threading
import time

SCRIPT_STARTED = None  # time.perf_counter() when run_as_script started the demo

EXIT_CODES = {"completed": 0, "diverged": 1, "failed": 1, "hangup": 129, "interrupted": 130,
              "terminated": 143}
# The signals that stop a run, and the status each gives (SIGHUP does not exist on Windows).
STOP_SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
if hasattr(signal, "SIGHUP"):
    STOP_SIGNALS[signal.SIGHUP] = "hangup"


class Stopped(KeyboardInterrupt):
    """Training was stopped from outside: `status` is "interrupted" (SIGINT), "terminated"
    (SIGTERM) or "hangup" (SIGHUP)."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


def stop_status(error):
    """The run status for a KeyboardInterrupt (plain Ctrl-C, or a Stopped from a signal)."""
    return getattr(error, "status", "interrupted")


def exit_code(summary):
    """The process exit code for a run summary (its `status`)."""
    return EXIT_CODES[summary["status"]]


# The innermost stop_on_signals block's state: the signal's status once one arrived, and
# whether the run is writing its results.
_ACTIVE = []


@contextlib.contextmanager
def stop_on_signals(at_once=True, before_training=False):
    """SIGINT, SIGTERM and SIGHUP stop what the body does; call the yielded `shield()` once
    training is over, after which signals only print a note until the block ends. A stop
    noted by an enclosing block (run_as_script's) carries into this one.

    With `at_once`, the signal raises Stopped where it lands (plain Python: a wait for other
    workers). Without it, the signal is only noted and `raise_if_stopped()`, which training
    calls between chunks of steps, raises Stopped there: an exception landing inside
    TensorFlow's own Python code can crash the interpreter (a segmentation fault while it
    creates an EagerTensor, in about 1 of 10 Ctrl-Cs early in the TF demo's training), and
    a graph call cannot be cut short anyway. `raise_if_stopped()` also ends a run whose
    Stopped was swallowed where it landed (a __del__, a callback whose errors are printed).
    `before_training` (run_as_script's block): a signal is noted with one line, never raised
    where it lands (inside TensorFlow's import, say). A signal set to be ignored (`nohup`, `trap '' HUP`) stays
    ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None  # signal handlers belong to the main thread: leave them alone
        return
    state = {"stopped": _ACTIVE[-1]["stopped"] if _ACTIVE else None, "writing": False}
    if at_once and state["stopped"]:
        raise Stopped(state["stopped"])

    def handler(number, frame):
        if state["writing"]:
            print("\nstill writing the results; they will be complete in a moment",
                  file=sys.stderr, flush=True)
            return
        if state["stopped"] and before_training:
            print("\nalready stopping: the run stops at its next check", file=sys.stderr,
                  flush=True)
            return
        if state["stopped"]:  # a second signal must not break the ending of the first
            print("\nstopping after this chunk of training; what was done is kept",
                  file=sys.stderr, flush=True)
            return
        state["stopped"] = STOP_SIGNALS[number]
        if at_once:
            raise Stopped(state["stopped"])
        if before_training:
            print(f"\n{state['stopped']}: the run stops at its next check", file=sys.stderr,
                  flush=True)

    def shield():
        state["writing"] = True

    previous = {number: signal.signal(number, handler) for number in STOP_SIGNALS
                if signal.getsignal(number) is not signal.SIG_IGN}
    _ACTIVE.append(state)
    try:
        yield shield
    finally:
        _ACTIVE.remove(state)
        for number, old in previous.items():
            signal.signal(number, old)


def raise_if_stopped():
    """Raise Stopped if a signal arrived and training goes on regardless: the handler's
    exception can land inside code that swallows it (a __del__, a callback whose errors are
    only printed), and the run must still end. A no-op once the results are being written."""
    if _ACTIVE and _ACTIVE[-1]["stopped"] and not _ACTIVE[-1]["writing"]:
        raise Stopped(_ACTIVE[-1]["stopped"])


class _ClosedPipeProof:
    """A text stream that goes quiet when its reader has gone (`| head`): the run goes on
    and writes its files, as a Unix tool would, instead of ending in a BrokenPipeError."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as error:
            if not _reader_gone(error):
                raise
            self._to_devnull()
            return len(text)

    def flush(self):
        try:
            self._stream.flush()
        except OSError as error:
            if not _reader_gone(error):
                raise
            self._to_devnull()

    def _to_devnull(self):
        # Later writes, and the interpreter's last flush, then go nowhere without an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())
        os.close(devnull)

    def __getattr__(self, name):  # isatty, fileno, encoding, ...
        return getattr(self._stream, name)


def _reader_gone(error):
    """Whether `error` says the reader has gone: a closed pipe, or a closed terminal (SIGHUP's
    usual cause: writing to it then fails with EIO)."""
    return isinstance(error, BrokenPipeError) or error.errno in (errno.EIO, errno.ENXIO)


def survive_closed_pipes():
    """Keep stdout and stderr from ending the run when a pipe's reader stops reading."""
    sys.stdout, sys.stderr = _ClosedPipeProof(sys.stdout), _ClosedPipeProof(sys.stderr)


def run_as_script(main):
    """A demo's `main()` as a command: its exit code, every output proof against a closed
    pipe, signals noted from here on (stop_on_signals), and a stop before training started
    (the imports, say) one line and its exit code."""
    global SCRIPT_STARTED
    SCRIPT_STARTED = time.perf_counter()  # the start-up (imports, data) is timed from here
    survive_closed_pipes()  # `| head` must not lose the run
    try:
        with stop_on_signals(at_once=False, before_training=True):
            return exit_code(main())
    except KeyboardInterrupt as stop:
        status = stop_status(stop)
        print(f"\n{status} before training started: nothing was trained", file=sys.stderr)
        return EXIT_CODES[status]
    finally:
        SCRIPT_STARTED = None
