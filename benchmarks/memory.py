"""End to end: wall time and peak memory of the default demo runs, started as a user starts them."""

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs a script as `python script ...` would, then prints the process's peak RSS (VmHWM).
# A child's ru_maxrss would also count the benchmark process it was forked from (Linux
# keeps the high-water mark across exec); VmHWM belongs to the new process image only.
PEAK_RSS_WRAPPER = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
finally:
    with open("/proc/self/status") as status:
        peak = [line.split()[1] for line in status if line.startswith("VmHWM")][0]
    print("PEAK_RSS_KIB", peak, file=sys.stderr)
"""


def import_seconds(runs):
    """Median wall time of a fresh `python -c "import tensorflow, keras"` (start-up included)."""
    walls = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import tensorflow, keras"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
    return statistics.median(walls)


def end_to_end(size, logdir):
    """Wall time and peak memory (VmHWM) of the default runs, as a user starts them, and the
    same less the TensorFlow import (Python's start-up included)."""
    runs = size["end_to_end_runs"]
    if not runs:
        return {}
    result = {"import_seconds_median": import_seconds(runs)}
    # plain_keras.py: the Keras demo's peer without this repository, the floor of its time.
    for script in ["demo_tensorflow.py", "demo_keras.py", "benchmarks/plain_keras.py"]:
        walls, peaks = [], []
        for _ in range(runs):
            started = time.perf_counter()
            process = subprocess.run([sys.executable, "-c", PEAK_RSS_WRAPPER, script,
                                      "--logdir", str(logdir), "--no-show"], cwd=ROOT,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
            walls.append(time.perf_counter() - started)
            if process.returncode != 0:
                raise RuntimeError(f"{script} failed: {process.stderr[-2000:]}")
            peak = [line.split()[1] for line in process.stderr.splitlines()
                    if line.startswith("PEAK_RSS_KIB")][0]
            peaks.append(int(peak) / 1024)
        result[script] = {"wall_seconds_median": statistics.median(walls),
                          "wall_seconds_without_import": statistics.median(walls)
                          - result["import_seconds_median"],
                          "peak_rss_mib_median": statistics.median(peaks), "runs": runs}
    return result
