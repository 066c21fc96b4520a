"""What both demos show in TensorBoard: the same tags and pictures (common.outputs.trials: HParams).

    tensorboard --logdir summaries

Scalars (every step in the TF demo, every epoch in the Keras demo): `loss`, `reg_loss`,
`neurons`, `units/<layer>`; `test/*` (or `val/*` with --path) every --eval-every. About 20
times a run, at the end of an --eval-every chunk, and at the end of the run (the network it
ends with: a path run's chosen point):
`weights/group_norms/<layer>` (Distributions: rows collapsing to zero) and
`weights/kernels/<layer>` (Images: |W| with one row per unit; a removed unit is a black row).
Tags sort so that TensorBoard opens on `loss` and `neurons`. Once: the settings that differ
from the defaults as text, and a custom-scalars chart of the units.
"""

import io
import math

import numpy as np
from PIL import Image  # Matplotlib's own dependency
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.compat.proto.types_pb2 import DT_DOUBLE, DT_FLOAT, DT_STRING
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.custom_scalar import metadata as custom_scalars
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.plugins.text.summary_v2 import text_pb

from common.shrink.counting import unit_names
from common.data.datasets import metric_name

# TensorBoard shows 10 images per tag (its --samples_per_plugin default): a picture every
# chunk (60 of them in the default TF run, 100 in the Keras one) cost 5 % of every step.
PICTURES_PER_RUN = 20


def pictures_due(done, end, total, path=False):
    """Whether a chunk that trained steps (or epochs) done+1 .. end, of `total` in the run,
    ends with the pictures: the chunk that crosses a multiple of total / PICTURES_PER_RUN,
    and the run's last chunk; on a `path` run not the last (the writer's close draws the
    network the run ends with, the chosen point's)."""
    if end >= total:
        return not path
    spacing = max(1, math.ceil(total / PICTURES_PER_RUN))
    return end // spacing > done // spacing


def describe(threshold):
    """A one-line description of each scalar, shown beside its chart."""
    return {
        "loss": "data loss (mean squared error or cross-entropy) without the penalty",
        "reg_loss": "the group sparse penalty (applied by the proximal step with "
                    "--solver proximal)",
        "neurons": f"active units, inputs included: rows whose sum of |w| exceeds {threshold:g}",
        "units": f"active units of this layer (sum of |w| of its outgoing row > {threshold:g})",
        "test": "on the test split, every --eval-every",
        "val": "on the validation split (--path), every --eval-every",
    }


def settings_text(changed, demo):
    """The settings that differ from the demo's defaults (Config.changed: {name: (value,
    default)}), as a Markdown table."""
    rows = [f"| {key} | {value} | {default} |" for key, (value, default) in changed.items()]
    head = f"The settings of this run that differ from `python demo_{demo}.py`'s defaults"
    if not rows:
        return f"Every setting at `python demo_{demo}.py`'s default."
    return head + ":\n\n| setting | value | default |\n|---|---|---|\n" + "\n".join(rows)


def run_start_summaries(changed, demo, num_kernels):
    """The main run's summaries for step 0: the settings that differ from the defaults
    (`changed`, Config.changed's) as text, and a custom-scalars chart with every layer's units and the total."""
    names = unit_names(num_kernels)
    layout = layout_pb2.Layout(category=[layout_pb2.Category(title="units", chart=[
        layout_pb2.Chart(title="active units per layer and in total",
                         multiline=layout_pb2.MultilineChartContent(
                             tag=[r"^neurons$", *[rf"^units/{name}$" for name in names]]))])])
    return [text_pb("config", settings_text(changed, demo)),
            tensor_summary(custom_scalars.CONFIG_SUMMARY_TAG,
                           TensorProto(dtype=DT_STRING, string_val=[layout.SerializeToString()]),
                           custom_scalars.create_summary_metadata())]


def tensor_summary(tag, tensor, metadata):
    """A Summary proto of one tagged TensorProto with its plugin's metadata."""

    summary = Summary()
    summary.value.add(tag=tag, tensor=tensor, metadata=metadata)
    return summary


def scalar_summary(tag, value, description=None):
    """One scalar as a Summary proto, as tf.summary.scalar writes it."""

    return scalar_pb(tag, np.float32(value), description=description)


def step_scalar_tags(names, threshold):
    """(tag, description) of the per-step scalars, in the order of their values: the data
    loss, the penalty, the active units in total and per layer."""
    text = describe(threshold)
    return [("loss", text["loss"]), ("reg_loss", text["reg_loss"]),
            ("neurons", text["neurons"])] + [(f"units/{name}", text["units"]) for name in names]


def step_scalar_protos(records, names, threshold, described):
    """The per-step scalars of `records` ((step, loss, penalty, units per layer) each) as
    Summary protos, one per record, as tf.summary.scalar writes them; a tag's description
    (its metadata) only in its first record when `described` is False, since TensorBoard
    reads a tag's metadata from its first value."""

    tags = step_scalar_tags(names, threshold)
    metadata = [scalar_metadata.create_summary_metadata(display_name=None,
                                                        description=description)
                for _, description in tags]
    protos = []
    for _, loss, penalty, units in records:
        values = [loss, penalty, sum(units), *units]
        summary = Summary()
        for (tag, _), meta, value in zip(tags, metadata, values):
            entry = summary.value.add(tag=tag, tensor=TensorProto(
                dtype=DT_FLOAT, tensor_shape=TensorShapeProto(), float_val=[float(value)]))
            if not described:
                entry.metadata.CopyFrom(meta)
        described = True
        protos.append(summary)
    return protos


def kernel_image(kernel):
    """|W| scaled to [0, 255] by its largest entry, as a uint8 image: one row per unit of the
    layer below, a removed unit a row of zeros (black); each column repeated so that the
    image is at most twice as tall as wide (TensorBoard fits an image to its card's width:
    a 15 x 1 kernel was a column 5,000 pixels tall)."""
    magnitude = np.abs(np.asarray(kernel, np.float64))
    magnitude[~np.isfinite(magnitude)] = 0.0  # a diverged run
    largest = magnitude.max() if magnitude.size else 0.0
    scaled = magnitude / largest if largest > 0 else magnitude
    repeat = math.ceil(magnitude.shape[0] / (2 * magnitude.shape[1])) if magnitude.size else 1
    return np.repeat(np.round(scaled * 255).astype(np.uint8), max(repeat, 1), axis=1)


def image_summary(tag, image, description=None):
    """A grey [height, width] uint8 image as TensorBoard's image summary (its v2 format: a
    string tensor of width, height and the PNG)."""


    png = io.BytesIO()
    Image.fromarray(image).save(png, format="PNG")  # uint8 [h, w]: grey
    height, width = image.shape
    tensor = TensorProto(dtype=DT_STRING, string_val=[str(width).encode(), str(height).encode(),
                                                      png.getvalue()],
                         tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=3)]))
    return tensor_summary(tag, tensor, image_metadata.create_summary_metadata(
        display_name=tag, description=description))


def histogram_summary(tag, values, buckets, description=None):
    """The values' histogram in TensorBoard's format (a [buckets, 3] tensor of left edge,
    right edge, count), `buckets` of equal width over [0, largest value]."""

    top = max(float(values.max()) if values.size else 0.0, 1e-12)
    counts, edges = np.histogram(values, bins=buckets, range=(0.0, top))
    table = np.stack([edges[:-1], edges[1:], counts], axis=1).astype(np.float64)
    tensor = TensorProto(dtype=DT_DOUBLE, double_val=table.ravel().tolist(),
                         tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=buckets),
                                                            TensorShapeProto.Dim(size=3)]))
    return tensor_summary(tag, tensor, histogram_metadata.create_summary_metadata(
        display_name=tag, description=description))


def kernel_summaries(kernels, names):
    """weights/group_norms/<layer> histograms (at most 10 buckets over [0, largest row norm])
    and weights/kernels/<layer> images of NumPy `kernels`."""
    summaries = []
    for kernel, name in zip(kernels, names):
        kernel = np.asarray(kernel, np.float64)
        norms = np.linalg.norm(kernel, axis=1)
        norms[~np.isfinite(norms)] = 0.0  # a diverged run: no NaN range
        summaries.append(histogram_summary(f"weights/group_norms/{name}", norms,
                                           min(kernel.shape[0], 10),
                                           "L2 norm of each unit's outgoing row"))
        summaries.append(image_summary(f"weights/kernels/{name}", kernel_image(kernel),
                                       "|W| / max |W|, one row per unit; black rows are removed"))
    return summaries


def cv_summaries(summary):
    """--cv's pooled path by point index, beside path/val_*: (step, Summary proto) pairs for
    the main run at its end."""
    metric = metric_name(summary["dataset"]["task"])
    pairs = []
    for record in (summary.get("cv") or {}).get("records") or []:
        pairs.append((record["index"], scalar_summary(f"path/cv_val_{metric}",
                                                      record["val_metric"])))
        pairs.append((record["index"], scalar_summary("path/cv_units", record["total_units"])))
    return pairs
