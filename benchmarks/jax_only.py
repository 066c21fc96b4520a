"""The Keras demo with and without TensorFlow: wall time as a user waits, ms per step, peak
memory, and what each requirements file installs.

    python -m venv /tmp/jax && /tmp/jax/bin/pip install -r requirements-jax.txt
    python -m venv /tmp/tf && /tmp/tf/bin/pip install -r requirements.txt
    python benchmarks/jax_only.py --jax-python /tmp/jax/bin/python --tf-python /tmp/tf/bin/python

Rows: Keras on TensorFlow; on JAX where TensorFlow is installed too (this interpreter's
environment, requirements-dev.txt); on JAX where it is not (--jax-python). Runs interleaved.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from memory import PEAK_RSS_WRAPPER

ROOT = Path(__file__).resolve().parents[1]


def one_run(python, backend, logdir):
    """Wall seconds from process start to exit, the demo's ms per step, peak RSS in MiB."""
    started = time.perf_counter()
    process = subprocess.run([python, "-c", PEAK_RSS_WRAPPER, "demo_keras.py", "--no-show",
                              "--logdir", logdir], cwd=ROOT, capture_output=True, text=True,
                             env={**os.environ, "KERAS_BACKEND": backend})
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(process.stderr[-2000:])
    ms = [float(line.split()[-1]) for line in process.stdout.splitlines()
          if line.strip().startswith("ms per step")][0]
    peak = [int(line.split()[1]) for line in process.stderr.splitlines()
            if line.startswith("PEAK_RSS_KIB")][0] / 1024
    return wall, ms, peak


def installed_mib(python):
    """The size of the interpreter's site-packages (its whole environment's packages)."""
    folder = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                             "['purelib'])"], capture_output=True, text=True, check=True)
    out = subprocess.run(["du", "-sm", folder.stdout.strip()], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.split()[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jax-python", required=True, help="a Python with requirements-jax.txt")
    parser.add_argument("--tf-python", help="a Python with requirements.txt (install size)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    variants = {"tensorflow": (sys.executable, "tensorflow"),
                "jax, TensorFlow installed": (sys.executable, "jax"),
                "jax, no TensorFlow": (args.jax_python, "jax")}
    samples = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as logdir:
        for _ in range(args.runs):
            for name, (python, backend) in variants.items():
                samples[name].append(one_run(python, backend, logdir))
    result = {name: {"wall_seconds_median": statistics.median(s[0] for s in runs),
                     "ms_per_step_median": statistics.median(s[1] for s in runs),
                     "peak_rss_mib_median": statistics.median(s[2] for s in runs),
                     "runs": len(runs)} for name, runs in samples.items()}
    result["installed_mib"] = {"requirements-jax.txt": installed_mib(args.jax_python)}
    if args.tf_python:
        result["installed_mib"]["requirements.txt"] = installed_mib(args.tf_python)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
