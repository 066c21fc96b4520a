"""The benchmark's results as a Markdown table and a picture."""

from sparsity import SETUPS


def markdown(results):
    speed_result = results["speed"]
    lines = ["| speed (Boston, default setup) | ms per step |", "|---|---|"]
    for key in ["tf_loop_ms_per_step", "plain_loop_ms_per_step", "keras_fit_ms_per_step",
                "naive_keras_ms_per_step", "tf_loop_proximal_ms_per_step"]:
        lines.append(f"| {key} | {speed_result[key]:.3f} |")
    for key, value in speed_result["ratios"].items():
        lines.append(f"| {key} | {value:.2f} |")
    lines += ["", "| dataset | penalty | lambda | solver | metric (mean ± sd) | inputs kept | "
              "hidden kept | params after |", "|---|---|---|---|---|---|---|---|"]
    for row in results["sparsity"]:
        solver = row["solver"] + (" + frozen zeros" if row["freeze_zeros"] else "") + (
            " (--preset compact)" if row["preset"] else "") + (
            f" + {row['finetune_epochs']} epochs fine-tuning" if row["finetune_epochs"] else "")
        strength = f"{row['lambda']:.2e}"
        if row["penalty"] == "sgl" and row.get("l1") not in (None, row["lambda"]):
            strength += f" (l1 {row['l1']:.2e})"
        lines.append(
            f"| {row['dataset']} | {row['penalty']} | {strength} | {solver} | "
            f"{row['metric']} "
            f"{row['metric_mean']:.4f} ± {row['metric_sd']:.4f} | "
            f"{row['inputs_kept_mean']:.1f}/{row['inputs_total']} | "
            f"{row['hidden_kept_mean']:.1f}/{row['hidden_total']} | "
            f"{row['params_after_mean']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    series = [("none", "subgradient", "o-"), ("l2", "subgradient", "o-"),
              ("l1", "subgradient", "o-"), ("gl", "subgradient", "o-"),
              ("sgl", "subgradient", "o-"), ("gl", "proximal", "s--"), ("sgl", "proximal", "s--")]
    for axis, dataset in zip(axes, SETUPS):
        rows = [row for row in results["sparsity"] if row["dataset"] == dataset]
        if not rows:
            axis.set_visible(False)
            continue
        for penalty, solver, style in series:
            chosen = [row for row in rows if row["penalty"] == penalty
                      and row["solver"] == solver and not row["preset"]]
            axis.plot([row["params_after_mean"] for row in chosen],
                      [row["metric_mean"] for row in chosen], style,
                      label=penalty if solver == "subgradient" else f"{penalty} proximal")
        compact = [row for row in rows if row["preset"]]
        axis.plot([row["params_after_mean"] for row in compact],
                  [row["metric_mean"] for row in compact], "k*", markersize=14,
                  label="--preset compact")
        axis.set_xscale("log")
        axis.set_xlabel("parameters after pruning (mean over seeds)")
        axis.set_ylabel(f"test {SETUPS[dataset]['metric']} after pruning")
        axis.set_title(dataset)
        axis.legend(fontsize="small")
    figure.savefig(path, dpi=100)
    plt.close(figure)
