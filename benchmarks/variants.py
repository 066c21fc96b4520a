"""#30's variants of `--preset compact`: which one keeps the smallest network, on validation.

    python benchmarks/variants.py preset units           # Boston, seeds 0-4: about 4 minutes each
    python benchmarks/variants.py preset units --digits  # DIGITS' setup instead (13 min a variant)
    python benchmarks/variants.py --list

Each variant is the preset plus a few flags (VARIANTS), run as a user runs it
(`python demo_tensorflow.py --preset compact FLAGS --seed S`, wall time from process start;
a library rule the demos do not offer is patched in by RUNNER, the demo otherwise unchanged), on
every seed, paired with the same seed's unregularized network. A row keeps what the choice
saw, on validation only: the pick's units and pooled-fold metric, and that metric over the dense
network's (point 0) on the same folds; then the test metric, read once by the run after its
choice, and its ratio to the unregularized network's. Variants are compared on the validation
columns; the test columns are the report. Results go to benchmarks/results/latest.json under
"variants" → data set → variant (a variant measured again replaces its rows).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search import DIGITS, run_demo  # noqa: E402  (this folder: run as a script)

VARIANTS = {  # flags after the preset's, and the library's selection rules (RUNNER)
    "preset": ([], {}),
    # The 1-SE rule over network sizes, each fold's first point with at most B units
    # (common.search.crossval.budget_records).
    "units": (["--select", "units"], {}),
    # Twice as many lambdas (a finer grid where layers collapse).
    "80 lambdas": (["--path-points", "80"], {}),
    # The fewest units within a relative tolerance of the dense network's pooled validation
    # score (common.search.path.select_point): each data set's target allowance, Boston's RMSE ratio
    # 1.05 and DIGITS' 2 points of accuracy.
    "within 5%": ([], {"tolerance": 0.05}),
    "within 2%": ([], {"tolerance": 0.02}),
    # Longer points: 5 x Boston's --epochs (1500) a point instead of the preset's 3 x, each
    # still ending once settled.
    "7500 epochs a point": (["--path-epochs", "7500"], {}),
    # Repeated cross-validation: a second cut into 5 folds beside the first
    # (common.data.datasets.repeated_folds; the pooled SE is the cuts' mean, crossval.pooled_repeats).
    "2 x 5 folds": ([], {"repeats": 2}),
}
# The TF demo as a script, with the library's options the demos do not offer: --select also
# takes "units", LIBRARY_RULE='{"tolerance": T}' gives select_point that tolerance, and
# '{"repeats": R}' gives the path's PathSettings R cuts into folds.
RUNNER = """import functools, json, os, runpy, sys
import common.run.config, common.search.path, common.search.choose, common.run.stages
common.run.config.SELECTION_RULES = (*common.run.config.SELECTION_RULES, "units")
library = json.loads(os.environ.get("LIBRARY_RULE") or "{}")
if "tolerance" in library:
    select = common.search.path.select_point
    common.search.path.select_point = lambda records, task, rule="1se", max_units=None, tolerance=None: \
        select(records, task, rule, max_units, library["tolerance"])
if "repeats" in library:
    common.run.stages.PathSettings = functools.partial(common.search.choose.PathSettings,
                                                   repeats=library["repeats"])
sys.argv = ["demo_tensorflow.py", *sys.argv[1:]]
runpy.run_path("demo_tensorflow.py", run_name="__main__")
"""


def variant_rows(name, seeds, data_flags, plain, logdir):
    """One row per seed of one variant; `plain`: {seed: unregularized test metric}."""
    flags, library = VARIANTS[name]
    rows = []
    for seed in seeds:
        command = ("-c", RUNNER) if library or "units" in flags else ("demo_tensorflow.py",)
        wall, summary = run_demo([*data_flags, "--preset", "compact", *flags, "--seed", str(seed)],
                                 logdir, command, {"LIBRARY_RULE": json.dumps(library)})
        if seed not in plain:
            plain[seed] = run_demo([*data_flags, "--group", "0", "--seed", str(seed)],
                                   logdir)[1]["test"]
        task = summary["dataset"]["task"]
        metric = "accuracy" if task == "classification" else "rmse"
        selected, pooled = summary["selected"], summary["cv"]["records"]
        # The record the rule chose: the pooled folds at the pick's lambda, or with unit
        # budgets the budget's own (every fold at its first point of that size).
        chosen, dense = pooled[selected["index"]], pooled[0]
        for budget in summary.get("unit_budgets", []):
            if budget["index"] == selected["index"] and \
                    budget["val_metric"] == selected["val_" + metric]:
                chosen, dense = {**budget, "total_units": float(
                    sum(budget["fold_total_units"]) / len(budget["fold_total_units"]))}, \
                    summary["unit_budgets"][0]
        units, hidden = summary["units_after"], summary["units_after"]["hidden"]
        before = summary["units_before"]
        rows.append({
            "seed": seed, "wall_seconds": round(wall, 1), "points": len(summary["path"]),
            "architecture": summary["pruned"]["architecture"],
            "units": units["inputs"] + sum(hidden),
            "inputs_share": units["inputs"] / before["inputs"],
            "hidden_share": sum(hidden) / sum(before["hidden"]),
            # On validation: what the rule saw, the folds' mean units and pooled score there.
            "rule": selected["rule"], "val_" + metric: selected["val_" + metric],
            "cv_units": chosen["total_units"], "cv_" + metric: chosen["val_metric"],
            "cv_over_dense": chosen["val_metric"] / dense["val_metric"],
            # Read once, after the choice.
            "test_" + metric: summary["test"][metric],
            "ratio_to_unregularized": summary["test"][metric] / plain[seed][metric],
            # The pooled records the rules choose among: [index, mean units, metric, SE].
            "pooled": [[record["index"], record["total_units"], round(record["val_metric"], 5),
                        round(record["val_se"], 5)] for record in pooled]})
        print(json.dumps({"variant": name, **{key: value for key, value in rows[-1].items()
                                              if key != "pooled"}}), flush=True)
    return rows


def summarize(rows):
    mean = lambda key: round(statistics.mean(row[key] for row in rows), 4)  # noqa: E731
    return {"mean_units": mean("units"), "mean_cv_units": mean("cv_units"),
            "mean_cv_over_dense": mean("cv_over_dense"), "mean_inputs_share": mean("inputs_share"),
            "mean_hidden_share": mean("hidden_share"),
            "mean_ratio_to_unregularized": mean("ratio_to_unregularized"),
            "median_wall_seconds": statistics.median(row["wall_seconds"] for row in rows)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", help="names of VARIANTS (default: every one)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1")
    parser.add_argument("--digits", action="store_true", help="DIGITS' setup instead of Boston")
    parser.add_argument("--list", action="store_true", help="the variants and their flags")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.list:
        for name, (flags, library) in VARIANTS.items():
            print(f"{name}: --preset compact {' '.join(flags)} {library or ''}")
        return {}
    unknown = [name for name in args.variants if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; --list names them")
    dataset, data_flags = ("digits", DIGITS) if args.digits else ("boston", [])
    results, plain = {}, {}
    with tempfile.TemporaryDirectory() as logdir:
        for name in args.variants or VARIANTS:
            rows = variant_rows(name, range(args.seeds), data_flags, plain, logdir)
            results[name] = {"date": time.strftime("%Y-%m-%d"), "flags": VARIANTS[name][0],
                             "library": VARIANTS[name][1],
                             "rows": rows, **summarize(rows)}
            print(json.dumps({"variant": name, **summarize(rows)}), flush=True)
    if not args.no_save:
        latest = ROOT / "benchmarks" / "results" / "latest.json"
        stored = json.loads(latest.read_text())
        stored.setdefault("variants", {}).setdefault(dataset, {}).update(results)
        latest.write_text(json.dumps(stored, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
