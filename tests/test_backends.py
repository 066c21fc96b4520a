"""The Keras side on two backends: the same run agrees, and files cross between them.

Each backend runs in its own process (tests/backend_run.py), so these run in the
TensorFlow pass of the suite and need JAX installed (requirements-dev.txt has it).
"""

import numpy as np
import pytest

from tests.helpers import ROOT, run_script

# Fresh processes on two backends, three in all: the module's runs are made once, on one
# xdist worker (pyproject.toml: --dist loadgroup).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("backends")]
BACKENDS = ("tensorflow", "jax")


def run_on(backend, *args):
    completed = run_script(str(ROOT / "tests" / "backend_run.py"), *map(str, args),
                           env={"KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)})
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each backend trains from the same initial weights, trains from the seed and saves, and
    loads the other's saved model and trains on: TensorFlow first, then JAX (loading
    TensorFlow's file), then TensorFlow again (loading JAX's). Returns the folder of results."""
    pytest.importorskip("jax", reason="the JAX backend is not installed")
    import keras

    from common.data.datasets import load_dataset
    from common.training.model import build_model
    from common.penalty.penalties import GroupSparse

    folder = tmp_path_factory.mktemp("backends")
    keras.utils.set_random_seed(1)
    model = build_model(load_dataset("boston", seed=0), (20, 15), GroupSparse(3e-3))
    np.savez(folder / "initial.npz",
             **{f"weight_{index}": weight for index, weight in enumerate(model.get_weights())})
    for backend in BACKENDS:
        other = [name for name in BACKENDS if name != backend][0]
        resume = (["resume", folder / f"{other}.keras", folder / f"{backend}_loaded.npz"]
                  if backend == "jax" else [])
        run_on(backend, "train", folder / "initial.npz", folder / f"{backend}.npz",
               "save", folder / f"{backend}.keras", folder / f"{backend}_saved.npz", *resume)
    run_on("tensorflow", "resume", folder / "jax.keras", folder / "tensorflow_loaded.npz")
    return folder


def test_the_same_proximal_run_on_both_backends_agrees(runs):
    """From the same initial weights, 100 full-batch proximal epochs end in the same weights
    (to float32 rounding) and the per-epoch unit counts are identical."""
    results = {backend: np.load(runs / f"{backend}.npz") for backend in BACKENDS}
    tf_run, jax_run = results["tensorflow"], results["jax"]
    assert str(tf_run["backend"]) == "tensorflow" and str(jax_run["backend"]) == "jax"
    assert len(tf_run["units"]) == 100
    np.testing.assert_array_equal(tf_run["units"], jax_run["units"])
    assert tf_run["units"][-1].sum() < tf_run["units"][0].sum()  # the penalty removed units
    np.testing.assert_allclose(tf_run["penalty"], jax_run["penalty"], rtol=1e-4)
    np.testing.assert_allclose(tf_run["loss"], jax_run["loss"], rtol=1e-4)
    for index in range(6):
        mine, theirs = tf_run[f"weight_{index}"], jax_run[f"weight_{index}"]
        np.testing.assert_allclose(theirs, mine, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(mine == 0, theirs == 0)  # the same exact zeros


@pytest.mark.parametrize("saved_on, loaded_on", [("jax", "tensorflow"), ("tensorflow", "jax")])
def test_saved_on_one_backend_loads_and_trains_on_the_other(runs, saved_on, loaded_on):
    saved = np.load(runs / f"{saved_on}_saved.npz")
    other = np.load(runs / f"{loaded_on}_loaded.npz")
    assert str(other["backend"]) == loaded_on
    np.testing.assert_allclose(other["loaded_predictions"], saved["predictions"], atol=1e-5)
    # The optimizer's state crossed too: training on continues as it did on the first backend
    # (which went on from the same point after saving).
    assert int(other["iterations"]) == int(saved["continued_iterations"]) == 150
    np.testing.assert_array_equal(other["units"], saved["continued_units"])
    np.testing.assert_allclose(other["predictions"], saved["continued_predictions"], rtol=1e-4,
                               atol=1e-4)
