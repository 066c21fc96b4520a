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
import math

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
    """The HParams metrics: (tag, description)."""
    metric = metric_name(task)
    metrics = [(f"final/test_{metric}", f"test {metric} of the trained network"),
               ("final/active_units", "active units after training, inputs included"),
               ("final/params_after", "parameters of the pruned network"),
               ("final/data_loss", "the last training data loss")]
    if path:
        metrics.append((f"final/val_{metric}", f"validation {metric} of the chosen point"))
    return metrics


def hparam_values(config):
    values = {}
    for key in HPARAMS:
        value = getattr(config, key)
        values[key] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return values


def write_run_start(writer, config, run_name, task, num_kernels):
    """The settings as text, the HParams trial (named by the run folder) and its metrics,
    and a custom-scalars chart with every layer's units and the total."""
    import tensorflow as tf
    from tensorboard.plugins.custom_scalar import layout_pb2
    from tensorboard.plugins.custom_scalar import summary as custom_scalars
    from tensorboard.plugins.hparams import api as hparams

    rows = "\n".join(f"| {key} | {value} |" for key, value in dataclasses.asdict(config).items())
    names = unit_names(num_kernels)
    layout = layout_pb2.Layout(category=[layout_pb2.Category(title="units", chart=[
        layout_pb2.Chart(title="active units per layer and in total",
                         multiline=layout_pb2.MultilineChartContent(
                             tag=[r"^neurons$", *[rf"^units/{name}$" for name in names]]))])])
    with writer.as_default(step=0):
        tf.summary.text("config", "| setting | value |\n|---|---|\n" + rows)
        hparams.hparams_config(
            hparams=[hparams.HParam(key) for key in HPARAMS],
            metrics=[hparams.Metric(tag, description=text)
                     for tag, text in final_metrics(task, config.path)])
        hparams.hparams(hparam_values(config), trial_id=run_name)
        tf.summary.experimental.write_raw_pb(custom_scalars.pb(layout).SerializeToString(),
                                             step=0)


def step_scalar_tags(names, threshold):
    """(tag, description) of the per-step scalars, in the order of their values: the data
    loss, the penalty, the active units in total and per layer."""
    text = describe(threshold)
    return [("loss", text["loss"]), ("reg_loss", text["reg_loss"]),
            ("neurons", text["neurons"])] + [(f"units/{name}", text["units"]) for name in names]


def write_step_scalars(loss, penalty, counts, names, threshold, step=None):
    """The per-step scalars (call inside `writer.as_default`; works in a tf.function);
    `step` None: the writer's default step."""
    import tensorflow as tf

    values = [loss, penalty, tf.reduce_sum(counts)] + [counts[index] for index in range(len(names))]
    for (tag, description), value in zip(step_scalar_tags(names, threshold), values):
        tf.summary.scalar(tag, value, step=step, description=description)


def step_scalar_protos(records, names, threshold, described):
    """The per-step scalars of `records` ((step, loss, penalty, units per layer) each) as
    serialized Summary protos, one per record, as tf.summary.scalar writes them; a tag's
    description (its metadata) only in its first record when `described` is False, since
    TensorBoard reads a tag's metadata from its first value. Built in Python: no graph to
    trace for them (common.events.RecordWriter)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.compat.proto.types_pb2 import DT_FLOAT
    from tensorboard.plugins.scalar.metadata import create_summary_metadata

    tags = step_scalar_tags(names, threshold)
    metadata = [create_summary_metadata(display_name=None, description=description)
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
        protos.append(summary.SerializeToString())
    return protos


def kernel_image(kernel):
    """|W| scaled to [0, 1] by its largest entry, as a [1, fan_in, fan_out, 1] image: one
    row per unit of the layer below, a removed unit a row of zeros (black)."""
    import tensorflow as tf

    magnitude = tf.abs(tf.convert_to_tensor(kernel))
    magnitude = tf.where(tf.math.is_finite(magnitude), magnitude, 0.0)  # a diverged run
    largest = tf.reduce_max(magnitude)
    scaled = tf.math.divide_no_nan(magnitude, largest)
    return scaled[tf.newaxis, :, :, tf.newaxis]


def write_kernel_pictures(kernels, names, step=None):
    """group_norms/<layer> histograms and kernels/<layer> images (works in a tf.function).

    The histogram is written directly in TensorBoard's format (one fixed-width bucketing op,
    at most 10 buckets over [0, largest norm]): tf.summary.histogram's generic bucketing
    costs several times more, and this runs about 20 times a run.
    """
    import tensorflow as tf
    from tensorboard.plugins.histogram import metadata as histogram_metadata

    for kernel, name in zip(kernels, names):
        norms = tf.norm(tf.convert_to_tensor(kernel), axis=1)
        norms = tf.where(tf.math.is_finite(norms), norms, 0.0)  # a diverged run: no NaN range
        buckets = min(int(kernel.shape[0]), 10)
        top = tf.maximum(tf.reduce_max(norms), 1e-12)
        counts = tf.histogram_fixed_width(norms, tf.stack([0.0, top]), nbins=buckets)
        edges = tf.linspace(0.0, top, buckets + 1)
        tf.summary.write(f"group_norms/{name}",
                         tf.stack([edges[:-1], edges[1:], tf.cast(counts, tf.float32)], axis=1),
                         step=step, metadata=histogram_metadata.create_summary_metadata(
                             display_name=f"group_norms/{name}",
                             description="L2 norm of each unit's outgoing row"))
        tf.summary.image(f"kernels/{name}", kernel_image(kernel), step=step,
                         description="|W| / max |W|, one row per unit; black rows are removed")


def write_final_metrics(writer, summary, step):
    """The HParams metrics of the run, at its last step (and --cv's pooled path)."""
    import tensorflow as tf

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
    with writer.as_default(step=step):
        for tag, value in values.items():
            if value is not None:
                tf.summary.scalar(tag, value)
    # --cv: the folds' pooled metric and mean units by point index, beside path/val_*.
    for record in (summary.get("cv") or {}).get("records") or []:
        with writer.as_default(step=record["index"]):
            tf.summary.scalar(f"path/cv_val_{metric}", record["val_metric"])
            tf.summary.scalar("path/cv_units", record["total_units"])
    writer.flush()
