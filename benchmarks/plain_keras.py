"""The end-to-end peer of demo_keras.py: what a Keras user writes without this repository.

The same data, network, optimizer and 2500 full-batch epochs, in fit() epochs of 25 steps
(steps_per_execution, as the demo), with Keras' built-in L1 penalty; one test evaluation and
one Matplotlib picture of the loss at the end. No counting, no event files, no pruning, no
files but the picture. memory.py times it like the demos, so the demo's end-to-end time has
a floor to be compared with. Flags other than --logdir are ignored (memory.py passes
--no-show).
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EPOCHS, CHUNK = 2500, 25


def main(argv):
    logdir = Path(argv[argv.index("--logdir") + 1]) if "--logdir" in argv else Path(
        tempfile.mkdtemp())
    from common.backend import import_tensorflow_quietly

    import_tensorflow_quietly()
    import keras
    import tensorflow as tf

    from common.data.datasets import load_dataset

    data = load_dataset("boston", seed=0)
    keras.utils.set_random_seed(0)
    penalty = keras.regularizers.L1(1e-4)
    model = keras.Sequential([
        keras.Input((data.num_features,)),
        keras.layers.Dense(20, "relu", kernel_regularizer=penalty),
        keras.layers.Dense(15, "relu", kernel_regularizer=penalty),
        keras.layers.Dense(1, kernel_regularizer=penalty)])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", steps_per_execution=CHUNK)
    batches = tf.data.Dataset.from_tensors((data.x_train, data.y_train)).repeat()
    history = model.fit(batches, epochs=EPOCHS // CHUNK, steps_per_epoch=CHUNK, shuffle=False,
                        verbose=0)
    test_loss = model.evaluate(data.x_test, data.y_test, verbose=0)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(history.history["loss"])
    axis.set_title(f"plain Keras fit, test mse {test_loss:.4f}")
    logdir.mkdir(parents=True, exist_ok=True)
    figure.savefig(logdir / "plain_keras.png", dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    main(sys.argv[1:])
