"""Speed and sparsity-versus-accuracy of the two demos, measured side by side in one run.

    python benchmarks/bench.py --quick            # about 4 minutes on 2 cores (Boston only)
    python benchmarks/bench.py --out benchmarks/results   # the full run behind the README

Writes DIR/results.json (a full run also as DIR/latest.json), DIR/results.md and
DIR/sparsity.png. Speed variants are interleaved round by round so that machine noise hits
them alike; each figure is the median over the rounds. One module per part: speed.py,
memory.py (end to end), sparsity.py (with the targets), output.py (table and picture).
"""

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# Run as a script: the repository root holds `common` and the demos.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.backend import import_tensorflow_quietly  # noqa: E402
from memory import end_to_end  # noqa: E402
from output import markdown, plot  # noqa: E402
from overhead import overhead  # noqa: E402
from sparsity import sparsity, targets  # noqa: E402
from speed import scaling, speed  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, seeds and epochs")
    parser.add_argument("--smoke", action="store_true",
                        help="every part at a token size, in well under a minute (for the tests)")
    parser.add_argument("--out", default="benchmarks/out", help="folder for the results")
    return parser.parse_args(argv)


# Sizes per mode: full (the README's numbers), quick (--quick) and smoke (--smoke).
SIZES = {
    "full": dict(rounds=5, picture_rounds=15, steps=1500, end_to_end_runs=3, scaling_epochs=200,
                 seeds=5, path_points=20, finetune=1000, flags=[], path_flags=[],
                 synthetic_rows=100_000, datasets=("boston", "digits")),
    "quick": dict(rounds=2, picture_rounds=3, steps=500, end_to_end_runs=1, scaling_epochs=50,
                  seeds=1, path_points=8, finetune=500, flags=[], path_flags=[],
                  synthetic_rows=100_000, datasets=("boston",), variants=("relaxed adaptive",)),
    "smoke": dict(rounds=1, picture_rounds=1, steps=50, end_to_end_runs=0, scaling_epochs=5,
                  seeds=1, path_points=3, finetune=20, flags=["--epochs", "30"],
                  path_flags=["--path-epochs", "10"], synthetic_rows=4_000, datasets=("boston",),
                  # one row per kind of flag (tests/test_adaptive.py runs them together)
                  variants=("adaptive", "relaxed adaptive"),
                  all_backends=False, separate_bare_loop=False),
}


def main(argv=None):
    args = parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    size = dict(SIZES[mode], name=mode)
    import_tensorflow_quietly()
    import keras
    import tensorflow as tf

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as logdir:
        results = {"mode": mode,
                   "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                               "python": platform.python_version()},
                   "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
                   "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
                       timespec="seconds")}
        print("speed ...", flush=True)
        results["speed"] = speed(size, logdir)
        print("overhead at three sizes ...", flush=True)
        results["overhead"] = overhead(size, logdir)
        print("end to end ...", flush=True)
        results["end_to_end"] = end_to_end(size, logdir)
        print("scaling ...", flush=True)
        results["scaling"] = scaling(size, logdir)
        print("sparsity ...", flush=True)
        results["sparsity"] = sparsity(size)
    results["targets"] = targets(results["sparsity"])
    results["wall_seconds"] = time.perf_counter() - started
    text = json.dumps(results, indent=2) + "\n"
    (out / "results.json").write_text(text)
    if mode == "full":  # the run behind the README, committed as benchmarks/results/latest.json
        (out / "latest.json").write_text(text)
    (out / "results.md").write_text(markdown(results))
    plot(results, out / "sparsity.png")
    print(markdown(results))
    print(json.dumps({"ratios": results["speed"]["ratios"], "targets": results["targets"],
                      "wall_seconds": results["wall_seconds"]}, indent=2))
    return results


if __name__ == "__main__":
    main()
