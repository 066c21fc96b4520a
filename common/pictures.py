"""Keras demo: each kernel as a heatmap at the end of the run (kernels.png)."""

import numpy as np
from keras import ops

from common.counting import group_activity, unit_kernels, unit_names


def plot_kernels(model, feature_names, threshold, path, title):
    """|W| of every kernel, one row per unit of the layer below (input rows labelled by
    feature name); a removed unit's row is marked with a red cross."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    kernels = [np.abs(ops.convert_to_numpy(kernel)) for kernel in unit_kernels(model)]
    names = unit_names(len(kernels))
    figure, axes = plt.subplots(1, len(kernels), figsize=(4.5 * len(kernels), 6), squeeze=False)
    figure.subplots_adjust(left=0.08, right=0.97, wspace=0.45, top=0.88, bottom=0.1)
    for axis, kernel, name in zip(axes[0], kernels, names):
        image = axis.imshow(kernel, aspect="auto", cmap="viridis", interpolation="nearest")
        removed = np.flatnonzero(ops.convert_to_numpy(group_activity(kernel)) <= threshold)
        axis.plot(np.full(len(removed), -0.5), removed, "rx", markersize=8, clip_on=False)
        axis.set_title(f"{name}: {kernel.shape[0] - len(removed)} of {kernel.shape[0]} active")
        axis.set_xlabel("unit of the next layer")
        if name == "inputs" and len(feature_names) == kernel.shape[0] <= 64:
            axis.set_yticks(range(kernel.shape[0]), feature_names,
                            fontsize=8 if kernel.shape[0] <= 20 else 5)
        else:
            axis.set_ylabel(f"unit of {name}")
        axis.set_xticks(range(0, kernel.shape[1], max(1, kernel.shape[1] // 8)))
        if name != "inputs":
            axis.yaxis.set_major_locator(MaxNLocator(integer=True))
        figure.colorbar(image, ax=axis, label="|w|")
    figure.suptitle(title)
    figure.savefig(path, dpi=100)
    plt.close(figure)
