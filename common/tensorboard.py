"""What both demos show in TensorBoard: the same tags, one HParams trial per run, pictures.

    tensorboard --logdir summaries

Scalars (every step in the TF demo, every epoch in the Keras demo): `loss`, `reg_loss`,
`neurons`, `units/<layer>`; `test/*` (or `val/*` with --path) every --eval-every. About 20
times a run, at the end of an --eval-every chunk and always at the end of training:
`group_norms/<layer>` (Distributions: rows collapsing to zero) and `kernels/<layer>`
(Images: |W| with one row per unit; a removed unit is a black row). Once:
the settings as text, a custom-scalars chart of the units, and an HParams trial named by
the run folder, whose metrics (`final/*`) are written at the end.
"""

import dataclasses
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
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.plugins.scalar.summary_v2 import scalar_pb
from tensorboard.plugins.text.summary_v2 import text_pb

from common.backend import keras_backend_name
from common.counting import unit_names
from common.data import metric_name

# The settings that are hyperparameters (not paths, display or logging options).
HPARAMS = ("dataset", "hidden", "epochs", "batch_size", "lr", "group_strength", "group_layers",
           "l1", "l1_layers", "l2", "adaptive", "threshold", "solver", "freeze_zeros", "seed",
           "finetune", "patience", "preset", "strategy", "path", "val_fraction", "path_points",
           "path_epochs", "select", "max_units", "cv")


# TensorBoard shows 10 images per tag (its --samples_per_plugin default): a picture every
# chunk (60 of them in the default TF run, 100 in the Keras one) cost 5 % of every step.
PICTURES_PER_RUN = 20


def pictures_due(done, end, total):
    """Whether a chunk that trained steps (or epochs) done+1 .. end, of `total` in the run,
    ends with the pictures: the chunk that crosses a multiple of total / PICTURES_PER_RUN,
    and the run's last chunk."""
    spacing = max(1, math.ceil(total / PICTURES_PER_RUN))
    return end >= total or end // spacing > done // spacing


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


def final_metrics(task, path):
    """The HParams metrics: (tag, description). A path's points (the `path-NN` runs) carry
    the `path/*` ones."""
    metric = metric_name(task)
    metrics = [(f"final/test_{metric}", f"test {metric} of the trained network"),
               ("final/active_units", "active units after training, inputs included"),
               ("final/params_after", "parameters of the pruned network"),
               ("final/data_loss", "the last training data loss")]
    if path:
        metrics += [(f"final/val_{metric}", f"validation {metric} of the chosen point"),
                     (f"path/val_{metric}", f"validation {metric} of a path point"),
                     ("path/units", "active units of a path point, inputs included"),
                     ("path/params", "parameters of a path point's pruned network")]
    return metrics


def hparam_values(config):
    """The run's hyperparameters for its HParams trial, the Keras backend among them."""
    values = {"backend": keras_backend_name()}
    for key in HPARAMS:
        value = getattr(config, key)
        values[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return values


def point_hparams(lam):
    """A path point's HParams trial values: its lambda and the backend."""
    return {"lambda": lam, "backend": keras_backend_name()}


def run_start_summaries(config, run_name, task, num_kernels):
    """The settings as text, the HParams experiment and this run's trial (named by the run
    folder), and a custom-scalars chart with every layer's units and the total: Summary
    protos for step 0."""

    rows = "\n".join(f"| {key} | {value} |" for key, value in dataclasses.asdict(config).items())
    names = unit_names(num_kernels)
    layout = layout_pb2.Layout(category=[layout_pb2.Category(title="units", chart=[
        layout_pb2.Chart(title="active units per layer and in total",
                         multiline=layout_pb2.MultilineChartContent(
                             tag=[r"^neurons$", *[rf"^units/{name}$" for name in names]]))])])
    return [text_pb("config", "| setting | value |\n|---|---|\n" + rows),
            hparams_summary.hparams_config_pb(
                hparams=[hparams_summary.HParam(key) for key in
                         ("backend", *HPARAMS, *(("lambda",) if config.path else ()))],
                metrics=[hparams_summary.Metric(tag, description=text)
                         for tag, text in final_metrics(task, config.path)]),
            hparams_summary.hparams_pb(hparam_values(config), trial_id=run_name),
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
    """|W| scaled to [0, 255] by its largest entry, as a [fan_in, fan_out] uint8 image: one
    row per unit of the layer below, a removed unit a row of zeros (black)."""
    magnitude = np.abs(np.asarray(kernel, np.float64))
    magnitude[~np.isfinite(magnitude)] = 0.0  # a diverged run
    largest = magnitude.max() if magnitude.size else 0.0
    scaled = magnitude / largest if largest > 0 else magnitude
    return np.round(scaled * 255).astype(np.uint8)


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
    """group_norms/<layer> histograms (at most 10 buckets over [0, largest row norm]) and
    kernels/<layer> images of NumPy `kernels`."""
    summaries = []
    for kernel, name in zip(kernels, names):
        kernel = np.asarray(kernel, np.float64)
        norms = np.linalg.norm(kernel, axis=1)
        norms[~np.isfinite(norms)] = 0.0  # a diverged run: no NaN range
        summaries.append(histogram_summary(f"group_norms/{name}", norms,
                                           min(kernel.shape[0], 10),
                                           "L2 norm of each unit's outgoing row"))
        summaries.append(image_summary(f"kernels/{name}", kernel_image(kernel),
                                       "|W| / max |W|, one row per unit; black rows are removed"))
    return summaries


def final_summaries(summary, step):
    """The HParams metrics of the run at its last `step`, and --cv's pooled path by point
    index beside path/val_*: (step, Summary proto) pairs."""
    metric = metric_name(summary["dataset"]["task"])
    values = {"final/data_loss": summary.get("final_loss")}
    if summary.get("units_after"):
        units = summary["units_after"]
        values["final/active_units"] = units["inputs"] + sum(units["hidden"])
    if summary.get("test"):
        values[f"final/test_{metric}"] = summary["test"][metric]
    if summary.get("pruned"):
        values["final/params_after"] = summary["pruned"]["params_after"]
    if summary.get("selected"):
        values[f"final/val_{metric}"] = summary["selected"][f"val_{metric}"]
    pairs = [(step, scalar_summary(tag, value)) for tag, value in values.items()
             if value is not None]
    for record in (summary.get("cv") or {}).get("records") or []:
        pairs.append((record["index"], scalar_summary(f"path/cv_val_{metric}",
                                                      record["val_metric"])))
        pairs.append((record["index"], scalar_summary("path/cv_units", record["total_units"])))
    return pairs
