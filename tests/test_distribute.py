"""tf.distribute on CPU: a 2-replica MirroredStrategy (the CPU split into two logical devices)
and a 2-worker MultiWorkerMirroredStrategy on 127.0.0.1 give the single-device run.

Each distributed run is a fresh process: logical devices and the multi-worker runtime can
only be set up before TensorFlow starts; the single-device run it is compared with runs in the
test's own process. The data set has 104 rows, so its 78 training rows split
evenly over two replicas and both demos must match the single-device run.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # subprocesses running whole demos

# Run one demo in this process, on `devices` logical CPUs; print its summary as JSON.
RUNNER = """
import json, sys
import tensorflow as tf
devices = int(sys.argv[1])
if devices > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
demo = __import__(sys.argv[2])
summary = demo.main(sys.argv[3:])
print("SUMMARY " + json.dumps(summary))
"""


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(104, 6))
    y = x[:, 0] - 2 * x[:, 1] + 0.5 * x[:, 2] ** 2 + 0.1 * rng.normal(size=104)
    path = tmp_path_factory.mktemp("data") / "small.csv"
    header = ",".join([f"x{index}" for index in range(6)] + ["y"])
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", header=header, comments="")
    return path


def launch(demo, devices, args, env=None):
    return subprocess.Popen([sys.executable, "-c", RUNNER, str(devices), demo, *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def summary_of(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    (line,) = [line for line in out.splitlines() if line.startswith("SUMMARY ")]
    return json.loads(line[len("SUMMARY "):])


def run(demo, devices, args):
    return summary_of(launch(demo, devices, args))


def single_device(demo, args, running=()):
    """The single-device run in this test process (one CPU device, as a fresh process has):
    its summary as the runner prints it, without a second TensorFlow start-up. If it fails,
    the `running` processes launched beside it are ended first."""
    import importlib

    try:
        return json.loads(json.dumps(importlib.import_module(demo).main(args)))
    except BaseException:
        for process in running:
            process.kill()
            process.communicate()
        raise


# Strengths at which some units go within 100 steps, for each solver: one per kernel for the
# subgradient runs; the proximal runs add the adaptive second stage (from step 50).
GROUP = {"subgradient": ["1e-2", "1e-2", "2e-2"], "proximal": ["1e-3", "--adaptive"]}


def args_for(csv_path, logdir, *extra, solver="subgradient"):
    return ["--csv", str(csv_path), "--target", "y", "--epochs", "100", "--eval-every", "20",
            "--solver", solver, "--group", *GROUP[solver], "--lr", "0.01", "--no-show",
            "--logdir", str(logdir), *extra]


def assert_same_run(single, distributed, replicas):
    assert single["num_replicas"] == 1 and distributed["num_replicas"] == replicas
    assert distributed["steps"] == single["steps"]
    assert distributed["final_loss"] == pytest.approx(single["final_loss"], rel=1e-4)
    assert distributed["test"]["loss"] == pytest.approx(single["test"]["loss"], rel=1e-4)
    assert distributed["units_after"] == single["units_after"]
    assert single["units_after"] != single["units_before"]  # the penalty did something


@pytest.mark.parametrize("demo", ["demo_tensorflow", "demo_keras"])
@pytest.mark.parametrize("solver", ["subgradient", "proximal"])
def test_mirrored_on_two_devices_equals_one_device(demo, solver, small_csv, tmp_path):
    # The mirrored run starts first; the single-device one runs here while it starts.
    mirrored = launch(demo, 2, args_for(small_csv, tmp_path / "two", "--strategy", "mirrored",
                                        solver=solver))
    single = single_device(demo, args_for(small_csv, tmp_path / "one", solver=solver),
                           [mirrored])
    assert_same_run(single, summary_of(mirrored), replicas=2)
    # One run folder each, written once.
    assert len(list((tmp_path / "two").iterdir())) == 1


@pytest.mark.parametrize("solver", ["subgradient", "proximal"])
def test_keras_data_parallel_on_two_jax_devices_equals_one_device(solver, small_csv, tmp_path):
    """On JAX, --strategy mirrored is Keras' DataParallel: two logical CPU devices (XLA's
    forced host device count) give the run of one device."""
    pytest.importorskip("jax", reason="the JAX backend is not installed")
    jax = {"KERAS_BACKEND": "jax"}
    single = launch("demo_keras", 1, args_for(small_csv, tmp_path / "one", solver=solver),
                    env=jax)
    mirrored = launch("demo_keras", 1, args_for(small_csv, tmp_path / "two", "--strategy",
                                                "mirrored", solver=solver),
                      env={**jax, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert_same_run(summary_of(single), summary_of(mirrored), replicas=2)


def free_ports(count):
    """Free ports below the ephemeral range. A port the kernel hands out for bind(0) is an
    ephemeral one, and between the workers' meeting and TensorFlow's server start an
    outgoing connection (a worker's own gRPC client) may be given it as its local port: the
    server then cannot bind, that worker dies and the other waits for it without end."""
    import random

    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as file:
            ephemeral_low = int(file.read().split()[0])
    except OSError:
        ephemeral_low = 32768
    ports = []
    while len(ports) < count:
        port = random.randrange(10000, ephemeral_low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
    return ports


@pytest.mark.parametrize("demo", ["demo_tensorflow"])
def test_two_workers_on_localhost_equal_one_device(demo, small_csv, tmp_path):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(launch(demo, 1, args_for(small_csv, tmp_path / "workers",
                                                  "--strategy", "multiworker"),
                                env={"TF_CONFIG": json.dumps(tf_config)}))
    single = single_device(demo, args_for(small_csv, tmp_path / "one"), processes)
    chief, other = [summary_of(process) for process in processes]
    assert chief["chief"] and not other["chief"]
    assert_same_run(single, chief, replicas=2)
    assert other["final_loss"] == pytest.approx(chief["final_loss"], rel=1e-6)
    # Only the chief wrote a run folder.
    (run_dir,) = (tmp_path / "workers").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["num_replicas"] == 2


def test_keras_demo_refuses_multiworker_in_one_sentence():
    # Keras 3's fit() fails under MultiWorkerMirroredStrategy (keras-team/keras#20585).
    result = subprocess.run([sys.executable, "demo_keras.py", "--strategy", "multiworker"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "keras-team/keras#20585" in result.stderr


def test_multiworker_without_tf_config_is_one_clear_sentence():
    env = {key: value for key, value in os.environ.items() if key != "TF_CONFIG"}
    result = subprocess.run([sys.executable, "demo_tensorflow.py", "--strategy", "multiworker"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "needs the TF_CONFIG environment variable" in result.stderr
