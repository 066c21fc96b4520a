"""One short proximal training in a fresh process, on the backend KERAS_BACKEND names.

Used by tests/test_backends.py to compare backends (a process has one Keras backend):

    python tests/backend_run.py train INIT.npz OUT.npz      # from given initial weights
    python tests/backend_run.py save MODEL.keras OUT.npz    # train from the seed, save, go on
    python tests/backend_run.py resume MODEL.keras OUT.npz  # load, predict, train on

Several such triples in one call run one after the other in the same process (one start-up
of the backend instead of one per triple).
"""

import sys

import keras
import numpy as np

from common.data.datasets import load_dataset
from common.training.batches import LOOP
from common.training.fitting import IndexBatches, fit_in_chunks
from common.training.model import build_model
from common.training.monitor import UnitHistory
from common.penalty.penalties import GroupSparse
from common.penalty.proximal_optimizer import ProximalOptimizer

EPOCHS, CHUNK = 100, 25  # full-batch epochs, epochs per graph call


def train(model, data, epochs, optimizer=None):
    """Full-batch proximal training, per-epoch records as the Keras demo keeps them."""
    history = UnitHistory(model, data.task, 0.0, steps_per_epoch=1, capacity=CHUNK)
    dataset = IndexBatches(data.x_train, data.y_train, None, seed=0, stream=(LOOP,))
    optimizer = optimizer or ProximalOptimizer(keras.optimizers.Adam(0.01))
    fit_in_chunks(model, dataset, epochs, CHUNK,
                  dict(optimizer=optimizer, loss="mse", metrics=[history.recorder]),
                  callbacks=[history])
    return history.records


def outputs(model, data, records):
    weights = {f"weight_{index}": weight for index, weight in enumerate(model.get_weights())}
    return dict(**weights, units=np.array(records["units"]), penalty=np.array(records["penalty"]),
                loss=np.array(records["loss"]),
                predictions=keras.ops.convert_to_numpy(model(data.x_test)),
                iterations=int(keras.ops.convert_to_numpy(model.optimizer.iterations)),
                backend=keras.backend.backend())


def main(mode, model_or_init, out):
    data = load_dataset("boston", seed=0)
    if mode == "resume":
        model = keras.saving.load_model(model_or_init)
        loaded = keras.ops.convert_to_numpy(model(data.x_test))
        records = train(model, data, EPOCHS // 2, optimizer=model.optimizer)
        np.savez(out, loaded_predictions=loaded, **outputs(model, data, records))
        return
    keras.utils.set_random_seed(0)
    model = build_model(data, (20, 15), GroupSparse(3e-3, proximal=True))
    if mode == "train":
        initial = np.load(model_or_init)
        model.set_weights([initial[f"weight_{index}"] for index in range(len(initial.files))])
    records = train(model, data, EPOCHS)
    saved = outputs(model, data, records)
    if mode == "save":  # without the recorder, as the demo saves (a training aid), then on
        model.compile(optimizer=model.optimizer, loss="mse")
        model.save(model_or_init)
        records = train(model, data, EPOCHS // 2, optimizer=model.optimizer)
        saved.update({f"continued_{key}": value
                      for key, value in outputs(model, data, records).items()})
    np.savez(out, **saved)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    for start in range(0, len(arguments), 3):
        main(*arguments[start:start + 3])
