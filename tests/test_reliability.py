"""Nothing lost, one sentence, the right exit code: interrupted, terminated, full disks.

Each test reproduces a way a run used to lose its results or end in a traceback.
"""

import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import demo_keras
import demo_tensorflow
from common.outputs import files as files_module
from common.run.lifecycle import EXIT_CODES, exit_code
from tests.helpers import ROOT, Watched, run_script

DEMOS = {"demo_tensorflow": demo_tensorflow, "demo_keras": demo_keras}


def no_partial_or_empty_files(folder):
    """No temporary file left behind, and no file that is empty (a truncated write)."""
    for path in Path(folder).rglob("*"):
        if path.is_file():
            assert ".partial" not in path.name, path
            assert path.stat().st_size > 0, path


def test_ctrl_c_between_an_epoch_and_its_test_evaluation_loses_nothing(tmp_path, monkeypatch):
    """The moment of the old bug: the epoch was recorded, its test metrics were not yet."""
    import common.run.skeleton

    evaluate, calls = common.run.skeleton.evaluate, []

    def interrupted_evaluate(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # inside the third test evaluation of the run
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(common.run.skeleton, "evaluate", interrupted_evaluate)
    summary = demo_keras.main(["--epochs", "500", "--no-show", "--logdir", str(tmp_path)])
    assert summary["status"] == "interrupted" and exit_code(summary) == 130
    (run_dir,) = tmp_path.iterdir()
    assert {"history.png", "history.csv", "run.json", "pruned.keras"} <= {
        path.name for path in run_dir.iterdir()}
    rows = (run_dir / "history.csv").read_text().splitlines()
    assert len(rows) - 1 == summary["steps"] == 75  # three chunks of 25 epochs
    assert [row.split(",")[0] for row in rows[1:] if row.split(",")[-1]] == ["25", "50"]
    no_partial_or_empty_files(tmp_path)


def start(demo, logdir, *flags):
    """A demo training (nearly) without end in a fresh process, once its first progress line
    (after the first chunk of training steps) is out."""
    watched = Watched(f"{demo}.py", "--epochs", "1000000", "--no-show", "--logdir",
                      str(logdir), *flags, env={"TF_CPP_MIN_LOG_LEVEL": "3"})
    watched.wait_for("train [")
    return watched


@pytest.mark.slow
@pytest.mark.parametrize("demo, signal_number, status", [
    ("demo_tensorflow", signal.SIGTERM, "terminated"),
    ("demo_keras", signal.SIGTERM, "terminated"),
    ("demo_tensorflow", signal.SIGINT, "interrupted"),
    ("demo_keras", signal.SIGHUP, "hangup"),  # the terminal or the SSH session closed
])
def test_a_signal_stops_training_and_keeps_everything(tmp_path, demo, signal_number, status):
    watched = start(demo, tmp_path)
    watched.process.send_signal(signal_number)
    returncode, _, err = watched.finish()
    assert returncode == EXIT_CODES[status] == {"terminated": 143, "interrupted": 130,
                                                "hangup": 129}[status], err
    assert "Traceback" not in err
    (run_dir,) = tmp_path.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == status and record["steps"] > 0
    names = {path.name for path in run_dir.iterdir()}
    assert "pruned.keras" in names and set(record["files"]) <= names
    if demo == "demo_keras":
        assert {"history.png", "history.csv"} <= names
    else:
        assert any(name.startswith("events.out.tfevents") for name in names)
    no_partial_or_empty_files(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("demo, signal_number, status", [
    ("demo_tensorflow", signal.SIGTERM, "terminated"),
    ("demo_keras", signal.SIGINT, "interrupted"),
])
def test_a_signal_as_the_settings_line_appears_ends_the_run_with_its_status(
        tmp_path, demo, signal_number, status):
    """A SIGTERM sent as soon as the settings line was printed killed the process by the
    signal itself (no run.json, an empty run folder); a Ctrl-C then could be swallowed by a
    garbage-collection callback, and the run trained on. From the script's first line a
    signal is noted and the run stops at its next check: the exit code says which signal,
    and the run folder holds a run.json that says so."""
    watched = Watched(f"{demo}.py", "--epochs", "1000000", "--no-show", "--logdir",
                      str(tmp_path), env={"TF_CPP_MIN_LOG_LEVEL": "3"})
    watched.wait_for(f"{demo} on ", stream="stdout")
    watched.process.send_signal(signal_number)
    returncode, _, err = watched.finish()
    assert returncode == EXIT_CODES[status], err
    assert "Traceback" not in err and "Exception ignored" not in err
    (run_dir,) = tmp_path.iterdir()  # made before the settings line: it says what happened
    assert json.loads((run_dir / "run.json").read_text())["status"] == status
    no_partial_or_empty_files(tmp_path)


def test_a_noted_stop_carries_into_inner_blocks_and_no_signal_raises_where_it_lands(capsys):
    from common.run.lifecycle import Stopped, raise_if_stopped, stop_on_signals

    with stop_on_signals(at_once=False, before_training=True):
        os.kill(os.getpid(), signal.SIGTERM)  # noted, with one line
        with stop_on_signals(at_once=False):  # the run's own block inherits it
            with pytest.raises(Stopped) as stop:
                raise_if_stopped()
        assert stop.value.status == "terminated"
        with pytest.raises(Stopped):  # a block that stops at once does so as it starts
            with stop_on_signals(at_once=True):
                pytest.fail("the block ran although a stop was noted")
        os.kill(os.getpid(), signal.SIGINT)  # asked again: still only noted, never raised here
        with pytest.raises(Stopped) as stop:
            raise_if_stopped()
        assert stop.value.status == "terminated"  # the first signal's status
    err = capsys.readouterr().err
    assert "terminated: the run stops at its next check" in err
    assert "already stopping: the run stops at its next check" in err


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this system")
def test_a_signal_set_to_be_ignored_stays_ignored_as_nohup_asks():
    """`nohup` (or `trap '' HUP`) starts the run with SIGHUP ignored: the run keeps it so, and
    goes on when the terminal closes."""
    from common.run.lifecycle import raise_if_stopped, stop_on_signals

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_on_signals(at_once=False, before_training=True):
            with stop_on_signals(at_once=False):
                assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
                os.kill(os.getpid(), signal.SIGHUP)
                raise_if_stopped()  # nothing was noted
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_closed_terminal_quiets_the_output_instead_of_ending_the_run():
    """Once the terminal is gone, writing to it fails with EIO (not a broken pipe): the run's
    streams go quiet, as for `| head`, so it can still write its files."""
    import io

    from common.run.lifecycle import _ClosedPipeProof

    controller, terminal = os.openpty()
    stream = io.TextIOWrapper(io.FileIO(terminal, "w"), write_through=True)
    guarded = _ClosedPipeProof(stream)
    guarded.write("before\n")
    os.close(controller)  # the terminal closes
    for _ in range(3):  # the first write may still be buffered by the terminal
        assert guarded.write("after the terminal closed\n") == len("after the terminal closed\n")
        guarded.flush()
    stream.close()


def test_a_signal_before_the_run_folder_is_made_leaves_none(tmp_path, monkeypatch, capsys):
    """A stop noted before the run begins (here: during the data's loading) ends the script
    with one line and the signal's exit code, and no run folder."""
    from common.run import config as config_module
    from common.run.lifecycle import run_as_script

    real = config_module.load_or_exit

    def load_then_signal(config):
        data = real(config)
        os.kill(os.getpid(), signal.SIGTERM)
        return data

    monkeypatch.setattr(demo_keras, "load_or_exit", load_then_signal)
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # run_as_script wraps both streams
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    assert run_as_script(lambda: demo_keras.main(
        ["--epochs", "5", "--no-show", "--logdir", str(tmp_path / "runs")])) == 143
    assert capsys.readouterr().err.strip().endswith(
        "terminated before training started: nothing was trained")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_signal_during_training_never_raises_inside_tensorflow():
    """Inside Run.stopping() a signal is only noted: an exception raised where it lands,
    inside TensorFlow's Python code, crashed the interpreter (SIGSEGV creating an
    EagerTensor, about 1 Ctrl-C in 10). The stop comes from raise_if_stopped, between chunks."""
    import tensorflow as tf

    from common.run.lifecycle import Stopped, raise_if_stopped, stop_on_signals

    with stop_on_signals(at_once=False):
        os.kill(os.getpid(), signal.SIGINT)
        total = sum(float(tf.constant(index)) for index in range(200))  # no exception here
        with pytest.raises(Stopped) as stop:
            raise_if_stopped()
    assert total == 19900.0 and stop.value.status == "interrupted"
    with stop_on_signals(at_once=True):  # plain Python (the wait for workers): at once
        with pytest.raises(Stopped):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(60)


@pytest.mark.parametrize("demo", DEMOS)
def test_a_signal_whose_exception_is_swallowed_still_stops_the_run(tmp_path, demo):
    """A signal during training is noted, and the run ends at the next chunk, terminated,
    even where the code it landed in swallows every exception (a __del__, a callback whose
    errors are only printed)."""
    def swallow_a_signal(done):
        if done >= 50:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            except BaseException:  # swallows a Stopped, had the handler raised one
                pass

    summary = DEMOS[demo].main(["--epochs", "3000", "--no-show", "--logdir", str(tmp_path)],
                               on_progress=swallow_a_signal)
    assert summary["status"] == "terminated" and summary["steps"] < 1000


@pytest.mark.parametrize("demo", DEMOS)
def test_a_signal_during_the_final_fine_tuning_stops_it(tmp_path, demo, monkeypatch):
    """--finetune is a training stage: SIGTERM there ends the run as terminated, with
    everything trained before it kept (it used to print "still writing", train to the end
    and exit 0, #29 item 1)."""
    import common.run.skeleton

    finetune, calls = common.run.skeleton.finetune, []

    def terminated_finetune(*args, **kwargs):
        calls.append(1)
        os.kill(os.getpid(), signal.SIGTERM)  # noted: the stage stops at its first chunk
        return finetune(*args, **kwargs)

    monkeypatch.setattr(common.run.skeleton, "finetune", terminated_finetune)
    summary = DEMOS[demo].main(["--epochs", "50", "--finetune", "100000", "--no-show",
                                "--logdir", str(tmp_path)])
    assert calls == [1] and summary["status"] == "terminated" and exit_code(summary) == 143
    (run_dir,) = tmp_path.iterdir()
    names = {path.name for path in run_dir.iterdir()}
    assert {"run.json", "pruned.keras"} <= names and "pruned_finetuned.keras" not in names
    assert "finetuned_test" not in summary["pruned"] and summary["steps"] == 50
    assert json.loads((run_dir / "run.json").read_text())["status"] == "terminated"
    no_partial_or_empty_files(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("demo, closed", [("demo_tensorflow", "stdout"), ("demo_keras", "stderr")])
def test_a_reader_that_stops_reading_loses_nothing(tmp_path, demo, closed):
    """`python demo_tensorflow.py | head -1`: the pipe's reader goes after one line; the run
    still writes every file and exits with its own status (#29 item 5)."""
    other = "stderr" if closed == "stdout" else "stdout"
    process = subprocess.Popen(
        [sys.executable, f"{demo}.py", "--epochs", "200", "--eval-every", "10", "--no-show",
         "--logdir", str(tmp_path)], cwd=ROOT, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        **{closed: subprocess.PIPE, other: subprocess.PIPE if other == "stderr" else None})
    stream = getattr(process, closed)
    assert stream.readline()  # the first line, then the reader is gone
    stream.close()
    errors = process.communicate(timeout=300)[1] or ""
    assert process.returncode == 0, errors
    assert "Traceback" not in errors and "BrokenPipeError" not in errors
    (run_dir,) = tmp_path.iterdir()
    summary = json.loads((run_dir / "run.json").read_text())
    assert summary["status"] == "completed" and (run_dir / "pruned.keras").is_file()
    # Run as a script: the start-up (imports, the data) is timed apart from the run.
    assert summary["startup_seconds"] > 0


@pytest.mark.parametrize("demo", DEMOS)
def test_a_file_that_cannot_be_written_is_named_and_the_rest_is_kept(tmp_path, monkeypatch,
                                                                     capsys, demo):
    """A fake full disk: renaming run.json (and history.csv) into place fails with ENOSPC."""
    replace = os.replace

    def full_disk_replace(source, target):
        if Path(target).name in ("run.json", "history.csv"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return replace(source, target)

    monkeypatch.setattr(files_module.os, "replace", full_disk_replace)
    summary = DEMOS[demo].main(["--epochs", "30", "--no-show", "--logdir", str(tmp_path)])
    assert summary["status"] == "failed" and exit_code(summary) == 1
    assert "run.json" in summary["not_written"]
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith("error: the disk is full: could not write")
    (run_dir,) = tmp_path.iterdir()
    names = {path.name for path in run_dir.iterdir()}
    assert "pruned.keras" in names and "run.json" not in names and "history.csv" not in names
    no_partial_or_empty_files(tmp_path)


def small_tmpfs(folder, kilobytes):
    """Mount a tmpfs of this size at `folder`, or skip where mounting is not allowed."""
    folder.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs",
                             str(folder)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    return folder


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("mount") is None or os.geteuid() != 0,
                    reason="mounting a small tmpfs needs root")
@pytest.mark.parametrize("demo, kilobytes", [("demo_tensorflow", 100), ("demo_keras", 60)])
def test_a_really_full_disk_is_one_sentence_and_exit_code_1(tmp_path, demo, kilobytes):
    disk = small_tmpfs(tmp_path / "disk", kilobytes)
    try:
        result = run_script(f"{demo}.py", "--epochs", "3000", "--no-show", "--logdir",
                            str(disk), timeout=300)
        assert result.returncode == 1, result.stderr[-3000:]
        assert "Traceback" not in result.stderr and "OOM" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
        assert len(errors) == 1 and errors[0].startswith("error: the disk is full")
        assert str(disk) in errors[0]
        no_partial_or_empty_files(disk)
        for record in disk.rglob("run.json"):  # if it fitted, it is whole
            assert json.loads(record.read_text())["status"] == "failed"
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.mark.slow
def test_exit_codes_of_the_scripts(tmp_path):
    completed = run_script("demo_tensorflow.py", "--epochs", "5", "--logdir", str(tmp_path))
    diverged = run_script("demo_keras.py", "--epochs", "50", "--lr", "1e30", "--no-show",
                          "--logdir", str(tmp_path))
    bad = run_script("demo_keras.py", "--seed", "-1")
    assert (completed.returncode, diverged.returncode, bad.returncode) == (0, 1, 2)
    assert "Traceback" not in diverged.stderr + bad.stderr


@pytest.mark.slow
def test_a_missing_worker_ends_the_wait_with_one_sentence():
    import socket

    ports = []
    for _ in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            ports.append(probe.getsockname()[1])
    tf_config = json.dumps({"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                            "task": {"type": "worker", "index": 0}})
    result = run_script("demo_tensorflow.py", "--strategy", "multiworker", "--connect-timeout",
                        "2", timeout=120, env={"TF_CONFIG": tf_config})
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"waiting up to 2 s (--connect-timeout) for worker:1 at 127.0.0.1:{ports[1]}",
        f"error: no answer within 2 s (--connect-timeout) from worker:1 at 127.0.0.1:{ports[1]}: "
        "start every worker of TF_CONFIG, or check the addresses"]


@pytest.mark.slow
@pytest.mark.parametrize("signal_number, status", [(signal.SIGTERM, "terminated"),
                                                   (signal.SIGINT, "interrupted")])
def test_signals_end_the_wait_for_workers(signal_number, status):
    """The signal comes once the demo says it waits (a fixed sleep once signalled a slow
    machine's demo while it still imported TensorFlow)."""
    tf_config = json.dumps({"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:0"]},
                            "task": {"type": "worker", "index": 1}})
    watched = Watched("demo_tensorflow.py", "--strategy", "multiworker",
                      env={"TF_CONFIG": tf_config})
    watched.wait_for("waiting up to 120 s (--connect-timeout) for worker:0 at 127.0.0.1:1")
    watched.process.send_signal(signal_number)
    returncode, _, err = watched.finish()
    assert returncode == EXIT_CODES[status], err
    assert err.splitlines()[-1] == f"{status} while waiting for the other workers: nothing was " \
                                   "written"


def test_the_readme_line_loads_a_saved_proximal_model_in_a_fresh_process(tmp_path):
    model_path = tmp_path / "trained.keras"
    demo_keras.main(["--epochs", "5", "--solver", "proximal", "--no-show", "--logdir",
                     str(tmp_path / "runs"), "--save-model", str(model_path)])
    # Exactly the README's line, in both import orders, in a process that saw nothing else;
    # and with Keras first imported by the penalty itself (its registration ran while the
    # penalty's module was still loading, and failed, when common/ was flat).
    for imports in ["import common; import keras", "import keras; import common",
                    "from common import GroupSparse; import keras"]:
        check = (f"{imports}\n"
                 f"model = keras.saving.load_model(r'{model_path}')\n"
                 "print(type(model.optimizer).__name__, "
                 "type(model.layers[0].kernel_regularizer).__name__)\n")
        result = run_script("-c", check)
        assert result.stdout.split() == ["ProximalOptimizer", "GroupSparse"], result.stderr[-2000:]
    # ... and the command line still does not wait for TensorFlow.
    result = run_script("-c", "import sys, common, common.run.config; "
                              "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert result.stdout.split() == ["False", "False"]


def test_ctrl_c_before_training_is_one_line_and_exit_130(monkeypatch, capsys):
    """A Ctrl-C while TensorFlow loads used to end in a KeyboardInterrupt traceback (#29
    item 4): the script says so in one line and exits 130."""
    from common.run.lifecycle import run_as_script

    def interrupted_import():
        raise KeyboardInterrupt

    monkeypatch.setattr(demo_tensorflow, "import_tensorflow_quietly", interrupted_import)
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # run_as_script wraps both streams
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    assert run_as_script(lambda: demo_tensorflow.main(["--epochs", "5"])) == 130
    err = capsys.readouterr().err.strip()
    assert err == "interrupted before training started: nothing was trained"


def test_a_stop_that_tensorflow_wraps_is_still_the_stop(tmp_path):
    """TensorFlow can turn the signal's exception into `SystemError: ... returned a result
    with an exception set` (#29 item 3): the run still ends as the signal says, with run.json."""
    from common.run.lifecycle import Stopped

    def wrapped_stop(steps_done):
        if steps_done >= 50:
            try:
                raise Stopped("terminated")
            except Stopped as stop:
                raise SystemError("TFE_Py_TapeVariableAccessed returned a result with an "
                                  "exception set") from stop

    summary = demo_tensorflow.main(["--epochs", "200", "--logdir", str(tmp_path)],
                                   on_progress=wrapped_stop)
    assert summary["status"] == "terminated" and exit_code(summary) == 143
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((run_dir / "run.json").read_text())["steps"] == 50


@pytest.mark.parametrize("demo", DEMOS)
def test_a_test_metric_that_is_not_finite_is_not_completed(tmp_path, monkeypatch, demo):
    """Finite weights whose test predictions overflow (a CSV cell of 1e308 once got this far)
    ended "completed" with exit 0 and bare NaN tokens in run.json: now the run has diverged,
    saves no model, and run.json is strict JSON with null where the number is not finite."""
    import common.run.skeleton

    real = common.run.skeleton.evaluate

    def overflowing(model, data, x=None, y=None, split="test"):
        metrics = real(model, data, x=x, y=y, split=split)
        return {name: math.nan for name in metrics} if split == "test" else metrics

    monkeypatch.setattr(common.run.skeleton, "evaluate", overflowing)
    module = DEMOS[demo]
    summary = module.main(["--epochs", "5", "--no-show", "--logdir", str(tmp_path)])
    assert summary["status"] == "diverged" and exit_code(summary) == 1
    (run_dir,) = tmp_path.iterdir()

    def refuse(constant):
        raise AssertionError(f"{constant} in run.json")

    record = json.loads((run_dir / "run.json").read_text(), parse_constant=refuse)
    assert record["status"] == "diverged" and record["test"]["rmse"] is None
    assert "not finite" in record["message"] and not (run_dir / "pruned.keras").exists()


def test_the_tensorflow_demo_saves_with_save_model_as_the_keras_demo_does(tmp_path):
    """--save-model was echoed and ignored by the TF demo."""
    import keras

    from common import GroupSparse, ProximalOptimizer

    path = tmp_path / "trained.keras"
    summary = demo_tensorflow.main(["--epochs", "20", "--solver", "proximal", "--logdir",
                                    str(tmp_path / "runs"), "--save-model", str(path)])
    assert summary["status"] == "completed" and path.name in summary["files"]
    model = keras.saving.load_model(path)
    assert isinstance(model.optimizer, ProximalOptimizer)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == summary["steps"] == 20
    assert all(isinstance(layer.kernel_regularizer, GroupSparse) for layer in model.layers)
