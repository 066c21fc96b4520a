"""What the method's machinery costs per step at three sizes, against what a user would run
without it: the TF demo's loop against the same loop bare, the proximal solver against the
same loop with the penalty in Adam's loss, and the Keras demo against a plain fit with
Keras' own L1. Rounds are interleaved so machine noise hits every variant alike."""

import statistics
import tempfile
import time
from pathlib import Path

from common.run.config import Config

# hidden widths, batch size, epochs (full / quick / smoke); the Keras demo evaluates every
# epoch at the wide size (its chunks are whole epochs, and the first one is not timed).
CASES = {
    "boston": dict(hidden=(20, 15), batch_size=None, epochs=(1500, 500, 50), keras_every=25),
    "digits": dict(hidden=(40, 20), batch_size=300, epochs=(200, 100, 10), keras_every=25,
                   flags=["--dataset", "digits"]),
    "wide": dict(hidden=(320, 240), batch_size=1024, epochs=(4, 3, 2), keras_every=1),
}


def synthetic_csv(folder, rows):
    """A regression set of `rows` rows: 13 inputs, a linear target of 4 of them plus noise."""
    import numpy as np

    path = Path(folder) / "synthetic.csv"
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(rows, 13))
    y = x[:, :4] @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.normal(size=rows)
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", fmt="%.6f",
               header=",".join([f"x{i}" for i in range(13)] + ["y"]), comments="")
    return path


def bare_tf_demo_ms_per_step(flags):
    """The TF demo's own loop with its penalty, counting and summaries switched off: no
    group or L1 strength, no pictures, and no per-step unit count or scalars
    (`per_step_records=False`). A separately written loop measured slower than the shipped
    one on DIGITS, so the bare figure is taken from the very same loop."""
    import demo_tensorflow

    return demo_tensorflow.main([*flags, "--group", "0", "--l1", "0", "--no-pictures"],
                                per_step_records=False)["ms_per_step"]


def plain_fit_l1_ms_per_step(data, config, every):
    """The Keras peer: the same model, batches and chunking, with keras.regularizers.L1 and
    no counting, history, evaluation or event files."""
    import keras

    from common.training.batches import LOOP
    from common.training.fitting import IndexBatches
    from common.training.model import build_model, loss_name

    keras.utils.set_random_seed(config.seed)
    model = build_model(data, config.hidden, keras.regularizers.L1(1e-4))
    batches = IndexBatches(data.x_train, data.y_train, config.batch_size, config.seed, (LOOP,))
    chunk = min(every, config.epochs) * batches.steps_per_epoch
    model.compile(optimizer=keras.optimizers.Adam(config.lr), loss=loss_name(data.task),
                  steps_per_execution=chunk)
    # Timed as the Keras demo times itself: each fit() epoch (one graph call) but the first,
    # which also traces.
    times = []
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: times.append(time.perf_counter()),
        on_epoch_end=lambda epoch, logs: times.append(time.perf_counter() - times.pop()))
    calls = max(config.epochs // min(every, config.epochs), 2)
    model.fit(batches, epochs=calls, steps_per_epoch=chunk, shuffle=False, verbose=0,
              callbacks=[timer])
    return 1000.0 * sum(times[1:]) / ((calls - 1) * chunk)


def _without_eval_every(flags):
    if "--eval-every" not in flags:
        return list(flags)
    index = flags.index("--eval-every")
    return flags[:index] + flags[index + 2:]


def overhead(size, logdir):
    import demo_keras
    import demo_tensorflow
    from common.training.batches import count_epoch_steps
    from common.data.datasets import load_dataset
    from speed import plain_loop_ms_per_step

    mode_index = {"full": 0, "quick": 1, "smoke": 2}[size["name"]]
    result = {}
    with tempfile.TemporaryDirectory() as folder:
        csv = synthetic_csv(folder, size["synthetic_rows"])
        for case, spec in CASES.items():
            flags = list(spec.get("flags", []))
            if case == "wide":
                flags = ["--csv", str(csv), "--target", "y"]
            epochs = spec["epochs"][mode_index]
            if spec["batch_size"]:
                flags += ["--batch-size", str(spec["batch_size"])]
            flags += ["--hidden", *map(str, spec["hidden"]), "--epochs", str(epochs),
                      "--logdir", str(logdir)]
            data = load_dataset("csv", csv_path=csv, target="y") if case == "wide" \
                else load_dataset(spec.get("flags", ["", "boston"])[1])
            # Two graph calls at least in every variant (the first one traces, untimed):
            # --eval-every is in epochs in both demos; the plain loop's chunk is in steps.
            tf_every = min(25, max(epochs // 2, 1))
            flags += ["--eval-every", str(tf_every)] if tf_every < 25 else []
            config = Config(hidden=spec["hidden"], batch_size=spec["batch_size"], epochs=epochs,
                            eval_every=tf_every * count_epoch_steps(len(data.x_train),
                                                                    spec["batch_size"]))
            every = min(spec["keras_every"], max(epochs // 2, 1))  # two chunks at least
            keras_flags = _without_eval_every(flags) + ["--no-show", "--eval-every", str(every)]
            samples = {key: [] for key in ["tf_shipped", "tf_bare", "tf_separate_bare_loop",
                                           "tf_proximal", "keras_shipped", "keras_plain_l1"]}
            for _ in range(size["rounds"]):
                samples["tf_shipped"].append(demo_tensorflow.main(flags)["ms_per_step"])
                samples["tf_bare"].append(bare_tf_demo_ms_per_step(flags))
                if size.get("separate_bare_loop", True):
                    samples["tf_separate_bare_loop"].append(plain_loop_ms_per_step(data, config))
                samples["tf_proximal"].append(
                    demo_tensorflow.main(flags + ["--solver", "proximal"])["ms_per_step"])
                samples["keras_shipped"].append(demo_keras.main(keras_flags)["ms_per_step"])
                samples["keras_plain_l1"].append(
                    plain_fit_l1_ms_per_step(data, config, every))
            medians = {key: statistics.median(values) for key, values in samples.items() if values}
            result[case] = {
                "ms_per_step": medians, "samples": samples,
                "rows": len(data.x_train), "hidden": list(spec["hidden"]),
                "batch_size": spec["batch_size"] or len(data.x_train), "epochs": epochs,
                "overhead": {
                    "tf_shipped_over_bare": medians["tf_shipped"] / medians["tf_bare"],
                    "proximal_over_adam": medians["tf_proximal"] / medians["tf_shipped"],
                    "keras_shipped_over_plain_l1": medians["keras_shipped"]
                    / medians["keras_plain_l1"],
                    "keras_shipped_over_tf_shipped": medians["keras_shipped"]
                    / medians["tf_shipped"]}}
    return result
