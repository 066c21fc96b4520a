"""What a path leaves to look at in the Keras demo: path.csv and path.png (the TF demo's
TensorBoard runs per point: common.outputs.events)."""

import csv

from common.shrink.counting import unit_names


def write_path_csv(records, path, metric):
    """One row per point: lambda, units per layer, total, parameters, validation metric."""
    layers = unit_names(1 + len(records[0]["units"]["hidden"])) if records else []
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["index", "lambda", *layers, "total_units", "params",
                         f"val_{metric}", "val_se"])
        for record in records:
            units = [record["units"]["inputs"], *record["units"]["hidden"]]
            writer.writerow([record["index"], f"{record['lambda']:.6g}", *units,
                             record["total_units"], record["params"],
                             f"{record['val_metric']:.6g}", f"{record['val_se']:.6g}"])


def one_se_bound(records, task):
    """The 1-SE rule's threshold: the best validation metric plus its standard error (minus
    for accuracy); the rule takes the fewest units within it."""
    from common.data.datasets import higher_is_better

    sign = -1.0 if higher_is_better(task) else 1.0
    best = min(records, key=lambda record: sign * record["val_metric"])
    return best["val_metric"] + sign * best["val_se"]


def plot_path(records, selected, path, metric, title, pooled=None, task="regression"):
    """Keras demo: validation metric (± SE) against active units, the chosen point marked
    and, for the 1-SE rule, its threshold; and active units per layer against lambda (a
    symmetric-log axis: lambda 0, the dense start, is on it). `pooled`: --cv's records, drawn
    beside the run's own split (mean units of the folds)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(12, 4.8), layout="constrained")  # never pyplot's: no window
    metric_axis, units_axis = figure.subplots(1, 2)
    metric_axis.errorbar([record["total_units"] for record in records],
                         [record["val_metric"] for record in records],
                         yerr=[record["val_se"] for record in records], fmt="o-", capsize=3,
                         label="this run's validation split")
    if pooled:
        metric_axis.errorbar([record["total_units"] for record in pooled],
                             [record["val_metric"] for record in pooled],
                             yerr=[record["val_se"] for record in pooled], fmt="s--", capsize=3,
                             label=f"all {len(pooled[0]['fold_val_metrics'])} folds")
    lambdas = [record["lambda"] for record in records]
    layers = list(zip(*[[record["units"]["inputs"], *record["units"]["hidden"]]
                        for record in records]))
    for name, counts in zip(unit_names(len(layers)), layers):
        units_axis.plot(lambdas, counts, "o-", label=name)
    if selected is not None:
        chosen = (pooled or records)[selected["index"]]
        if selected["rule"].split(",")[0] == "1se":  # "1se, 5-fold cross-validation" too
            metric_axis.axhline(one_se_bound(pooled or records, task), color="red",
                                linestyle="--", linewidth=0.8,
                                label="best + 1 SE: the fewest units under it win")
        metric_axis.plot(chosen["total_units"], chosen["val_metric"], "r*", markersize=16,
                         label=f"selected ({selected['rule']}): lambda {chosen['lambda']:.3g}")
        units_axis.axvline(chosen["lambda"], color="red", linestyle=":", label="selected")
    if metric_axis.get_legend_handles_labels()[0]:
        metric_axis.legend(fontsize=8)
    metric_axis.set_xlabel("active units (inputs included)")
    metric_axis.set_ylabel(f"validation {metric} of the pruned network")
    metric_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    positive = [lam for lam in lambdas if lam > 0]
    if positive:  # linear below the smallest positive lambda, so that 0 has its place
        units_axis.set_xscale("symlog", linthresh=min(positive))
        units_axis.set_xlim(-0.1 * min(positive), max(positive) * 1.5)
    units_axis.set_xlabel("lambda (0: the dense start)")
    units_axis.set_ylabel("active units")
    units_axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    if layers:
        units_axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.savefig(path, dpi=100)


def path_files(chosen, run_dir, metric, dataset, task="regression"):
    """Keras demo: (path, write) pairs for path.csv and path.png; none without a path."""
    if not chosen.get("path"):
        return []
    title = (f"{dataset}: lambda path of {len(chosen['path'])} points (the first at "
             f"lambda 0), {chosen['path_ended']}")
    return [(run_dir / "path.csv", lambda file: write_path_csv(chosen["path"], file, metric)),
            (run_dir / "path.png", lambda file: plot_path(
                chosen["path"], chosen["selected"], file, metric, title,
                (chosen.get("cv") or {}).get("records"), task))]
