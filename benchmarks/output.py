"""The benchmark's results as a Markdown table and a picture."""

from sparsity import SETUPS


def markdown(results):
    speed_result = results["speed"]
    lines = ["| speed (Boston, default setup) | ms per step |", "|---|---|"]
    for key in ["tf_loop_ms_per_step", "tf_loop_no_pictures_ms_per_step",
                "plain_loop_ms_per_step", "keras_fit_ms_per_step",
                "naive_keras_ms_per_step", "tf_loop_proximal_ms_per_step"]:
        lines.append(f"| {key} | {speed_result[key]:.3f} |")
    for key, value in speed_result["ratios"].items():
        lines.append(f"| {key} | {value:.2f} |")
    lines.append(f"| path_over_single (a --path run / a default run, wall) | "
                 f"{speed_result['path_over_single']:.2f} |")
    for backend, value in speed_result.get("keras_fit_ms_per_step_by_backend", {}).items():
        lines.append(f"| keras demo on {backend} (fresh process) | {value:.3f} |")
    lines += overhead_table(results.get("overhead", {})) + end_to_end_table(
        results.get("end_to_end", {}))
    lines += ["", "| dataset | penalty | solver | variant | chosen by | lambda | test metric "
              "(mean ± sd) | paired ratio to unregularized | inputs kept | hidden kept | "
              "params after |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in results["sparsity"]:
        if row["selection"] == "validation-1se":
            lambdas = row["lambda_selected"]
            strength = f"{min(lambdas):.2e} to {max(lambdas):.2e}" if len(lambdas) > 1 \
                else f"{lambdas[0]:.2e}"
        else:
            strength = f"{row['lambda']:.2e}"
        ratio = row.get("ratio_to_unregularized_mean")
        lines.append(
            f"| {row['dataset']} | {row['penalty']} | {row['solver']} | {row['variant']} | "
            f"{row['selection']} | "
            f"{strength} | {row['metric']} {row['metric_mean']:.4f} ± {row['metric_sd']:.4f} | "
            f"{'' if ratio is None else f'{ratio:.3f}'} | "
            f"{row['inputs_kept_mean']:.1f}/{row['inputs_total']} | "
            f"{row['hidden_kept_mean']:.1f}/{row['hidden_total']} | "
            f"{row['params_after_mean']:.0f} |")
    return "\n".join(lines) + "\n"


def overhead_table(overhead):
    """ms per step and overhead ratios, one column per size."""
    if not overhead:
        return []
    cases = list(overhead)
    lines = ["", "| per step, at three sizes | " + " | ".join(
        f"{case} ({overhead[case]['rows']} rows, {'-'.join(map(str, overhead[case]['hidden']))}"
        f", batch {overhead[case]['batch_size']})" for case in cases) + " |",
        "|---|" + "---|" * len(cases)]
    for key in overhead[cases[0]]["ms_per_step"]:
        lines.append(f"| {key} ms | " + " | ".join(
            f"{overhead[case]['ms_per_step'][key]:.3f}" for case in cases) + " |")
    for key in overhead[cases[0]]["overhead"]:
        lines.append(f"| {key} | " + " | ".join(
            f"{overhead[case]['overhead'][key]:.2f}" for case in cases) + " |")
    return lines


def end_to_end_table(end_to_end):
    if not end_to_end:
        return []
    lines = ["", f"| end to end, default run (TensorFlow import: "
             f"{end_to_end['import_seconds_median']:.1f} s) | wall s | without the import | "
             "peak MiB |", "|---|---|---|---|"]
    for script, row in end_to_end.items():
        if isinstance(row, dict):
            lines.append(f"| {script} | {row['wall_seconds_median']:.1f} | "
                         f"{row['wall_seconds_without_import']:.1f} | "
                         f"{row['peak_rss_mib_median']:.0f} |")
    return lines


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 7), constrained_layout=True)
    styles = {"none": "ks", "fixed": "o", "validation-1se": "*"}
    variant_markers = {"adaptive": "P", "relaxed": "h", "relaxed adaptive": "p",
                       "relaxed cv": "8",
                       "relaxed adaptive cv": "<", "compact": ">",
                       "compact 1x": "+", "compact 1x per-layer": "x",
                       "compact 1x gamma 2": "1", "compact 20 points": "2"}
    for axis, dataset in zip(axes, SETUPS):
        rows = [row for row in results["sparsity"] if row["dataset"] == dataset]
        if not rows:
            axis.set_visible(False)
            continue
        for row in rows:
            style = styles.get(row["selection"], "o") if row["penalty"] != "none" else "ks"
            style = variant_markers.get(row.get("variant"), style)
            axis.errorbar(row["params_after_mean"], row["metric_mean"], yerr=row["metric_sd"],
                          fmt=style, markersize=12 if style == "*" else 7, capsize=3,
                          label=f"{row['penalty']} {row['solver']} {row.get('variant', '')} "
                          f"({row['selection']})")
        axis.set_xscale("log")
        axis.set_xlabel("parameters after pruning (mean over seeds)")
        axis.set_ylabel(f"test {SETUPS[dataset]['metric']} of the chosen network")
        axis.set_title(f"{dataset}: stars chosen on validation (1-SE rule)")
        # Below the plot: with a row per variant the legend would hide the points.
        axis.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    figure.savefig(path, dpi=100)
    plt.close(figure)
