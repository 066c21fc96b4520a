"""The Keras demo's pictures: the run's history (history.png) and each kernel as a heatmap
at the end of the run (kernels.png).

Each picture is a `matplotlib.figure.Figure` of its own, never pyplot's: saving one never
switches pyplot's backend or closes a figure, so the history's window (a pyplot figure the
demo hands in, `new_window_figure`) still shows after the kernels are saved.
"""

import numpy as np
from keras import ops

from common.shrink.counting import group_activity, unit_kernels, unit_names


def plot_kernels(model, feature_names, threshold, path, title):
    """|W| of every kernel over its largest, one row per unit of the layer below (input rows
    labelled by feature name), on a log colour scale so that weak but active rows stay
    visible; a removed unit's row (black) is marked with a red cross. Each panel is as wide
    as its kernel has columns (at least a few)."""
    import matplotlib
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    kernels = [np.abs(ops.convert_to_numpy(kernel)) for kernel in unit_kernels(model)]
    names = unit_names(len(kernels))
    widths = [max(kernel.shape[1], 4) for kernel in kernels]
    figure = Figure(figsize=(4 + 0.28 * sum(widths), 6))
    axes = figure.subplots(1, len(kernels) + 1,
                           gridspec_kw={"width_ratios": [*widths, 0.6], "wspace": 0.35,
                                        "left": 0.08, "right": 0.93, "bottom": 0.14})
    colours = matplotlib.colormaps["viridis"].with_extremes(under="black", bad="black")
    norm = LogNorm(vmin=1e-3, vmax=1.0, clip=False)
    for axis, kernel, name in zip(axes, kernels, names):
        image = axis.imshow(kernel / (float(kernel.max()) or 1.0), aspect="auto", cmap=colours,
                            norm=norm, interpolation="nearest")
        removed = np.flatnonzero(ops.convert_to_numpy(group_activity(kernel)) <= threshold)
        axis.plot(np.full(len(removed), -0.5), removed, "rx", markersize=8, clip_on=False,
                  label=f"removed unit: sum |w| of its row <= {threshold:g}")
        axis.set_title(f"{name}: {kernel.shape[0] - len(removed)} of {kernel.shape[0]} active",
                       fontsize=10)
        axis.set_xlabel("unit of the next layer")
        if name == "inputs" and len(feature_names) == kernel.shape[0] <= 64:
            axis.set_yticks(range(kernel.shape[0]), feature_names,
                            fontsize=8 if kernel.shape[0] <= 20 else 5)
        else:
            axis.set_ylabel(f"unit of {name}")
            axis.yaxis.set_major_locator(MaxNLocator(nbins=10, integer=True))
        if kernel.shape[1] <= 4:
            axis.set_xticks(range(kernel.shape[1]))
        else:
            axis.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    figure.colorbar(image, cax=axes[-1], label="|w| / the kernel's largest |w| (log scale; "
                                               "black: under 1/1000)")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles[:1], labels[:1], loc="lower left", fontsize=8)
    figure.suptitle(title)
    figure.savefig(path, dpi=100)


HISTORY_SIZE = (9, 9)  # inches


def new_window_figure():
    """A pyplot figure for plot_history, shown by `plt.show()` (only where there is a
    display: pyplot picks the backend)."""
    import matplotlib.pyplot as plt

    return plt.figure(figsize=HISTORY_SIZE, layout="constrained")


def plot_history(records, title, path, split="test", points=(), chosen=None, figure=None):
    """Data loss, penalty and active units against the epoch, in one PNG; returns the
    figure. `points`: the path's kept points as (index, lambda, epoch its training ended),
    each marked by a line; `chosen` the selected point's index, marked in red. `figure`: an
    empty figure to draw on (a window's, new_window_figure); a Figure of its own if None."""
    if figure is None:
        from matplotlib.figure import Figure

        figure = Figure(figsize=HISTORY_SIZE, layout="constrained")
    loss_axis, penalty_axis, units_axis = figure.subplots(3, 1, sharex=True)
    epochs = records["epoch"]
    loss_axis.plot(epochs, records["loss"], label="train")
    loss_axis.plot(records["test_epoch"], [test["loss"] for test in records["test"]],
                   label=split, marker=".", linestyle="none")
    loss_axis.set_yscale("log")
    loss_axis.set_ylabel("data loss (no penalty)")
    penalty_axis.plot(epochs, records["penalty"], color="tab:red")
    penalty_axis.set_ylabel("penalty")
    units = list(zip(*records["units"])) if records["units"] else []
    for name, counts in zip(unit_names(len(units)), units):
        units_axis.plot(epochs, counts, label=name)
    totals = [sum(row) for row in records["units"]]
    if units:  # none when the very first epoch diverged
        units_axis.plot(epochs, totals, color="black", label="total (neurons)")
    for index, lam, end in points:  # where each path point's training ended
        mine = index == chosen
        for axis in (loss_axis, penalty_axis, units_axis):
            axis.axvline(end, color="red" if mine else "grey", linewidth=1.2 if mine else 0.5,
                         linestyle="-" if mine else ":")
        if mine and 0 < end <= len(totals):
            units_axis.plot(end, totals[end - 1], "r*", markersize=14,
                            label=f"chosen: lambda {lam:.3g}, {totals[end - 1]} units")
    for axis in (loss_axis, units_axis):  # beside the curves, never over them
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    units_axis.set_ylabel("active units")
    units_axis.set_xlabel("epoch" + (" (dotted: where each path point ends)" if points else ""))
    figure.suptitle(title)
    figure.savefig(path, dpi=100)
    return figure
