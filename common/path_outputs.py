"""What a path leaves to look at in the Keras demo: path.csv and path.png (the TF demo's
TensorBoard runs per point: common.events)."""

import csv

from common.counting import unit_names


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


def plot_path(records, selected, path, metric, title, pooled=None):
    """Keras demo: validation metric (± SE) against active units, the chosen point marked;
    and active units per layer against lambda. `pooled`: --cv's records, drawn beside the
    run's own split (mean units of the folds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (metric_axis, units_axis) = plt.subplots(1, 2, figsize=(11, 4.5),
                                                     constrained_layout=True)
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
        metric_axis.plot(chosen["total_units"], chosen["val_metric"], "r*", markersize=16,
                         label=f"selected ({selected['rule']})")
    if selected is not None or pooled:
        metric_axis.legend()
        units_axis.axvline(chosen["lambda"], color="red", linestyle=":", label="selected")
    metric_axis.set_xlabel("active units (inputs included)")
    metric_axis.set_ylabel(f"validation {metric} of the pruned network")
    units_axis.set_xscale("log")
    units_axis.set_xlabel("lambda")
    units_axis.set_ylabel("active units")
    if layers:
        units_axis.legend()
    figure.suptitle(title)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def path_files(chosen, run_dir, metric, config):
    """Keras demo: (path, write) pairs for path.csv and path.png; none without a path."""
    if not chosen.get("path"):
        return []
    title = (f"{config.dataset}: lambda path of {len(chosen['path']) - 1} points, "
             f"{chosen['path_ended']}")
    return [(run_dir / "path.csv", lambda file: write_path_csv(chosen["path"], file, metric)),
            (run_dir / "path.png", lambda file: plot_path(
                chosen["path"], chosen["selected"], file, metric, title,
                (chosen.get("cv") or {}).get("records")))]
