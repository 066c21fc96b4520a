"""Which Keras backend runs, and TensorFlow's import without its start-up chatter.

Nothing here imports TensorFlow or Keras until a function asks for it: the command line
uses these before anything heavy loads.
"""

import importlib.util
import json
import os
import sys
import tempfile

KERAS_BACKENDS = ("tensorflow", "jax", "torch", "numpy", "openvino")


def backend_problem(backend, demo):
    """One sentence when Keras cannot run on `backend` here (None when it can)."""
    if backend not in KERAS_BACKENDS:
        return (f"KERAS_BACKEND={backend} is not a Keras backend: use one of "
                f"{', '.join(KERAS_BACKENDS)}")
    if importlib.util.find_spec(backend) is not None:
        return None
    if demo == "tensorflow":
        return ("demo_tensorflow.py needs TensorFlow, which is not installed: pip install -r "
                "requirements.txt (demo_keras.py runs on JAX too)")
    return (f"Keras runs on {backend} here, and {backend} is not installed: pip install "
            f"{backend}, or set KERAS_BACKEND to a backend that is")


def keras_backend_name():
    """The backend Keras runs on, or will once imported (without importing it)."""

    if "keras" in sys.modules:
        import keras

        return keras.backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    settings = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")),
                            "keras.json")
    try:
        with open(settings) as file:
            return json.load(file).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def use_tensorflow_backend(script="demo_tensorflow.py"):
    """Make Keras run on TensorFlow for a TensorFlow-only script, saying so when the user's
    KERAS_BACKEND asked for another; exit 2 if Keras already runs on another backend."""

    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != "tensorflow":
            print(f"error: {script} needs Keras on TensorFlow, but Keras was already imported "
                  f"on {keras.backend.backend()} in this process (use demo_keras.py there)",
                  file=sys.stderr)
            raise SystemExit(2)
        return
    requested = os.environ.get("KERAS_BACKEND", "tensorflow")
    if requested != "tensorflow" and importlib.util.find_spec("tensorflow") is not None:
        print(f"note: {script} is a TensorFlow training loop, so it runs Keras on TensorFlow "
              f"and not on KERAS_BACKEND={requested} (demo_keras.py runs on {requested})",
              file=sys.stderr)
    os.environ["KERAS_BACKEND"] = "tensorflow"


def import_tensorflow_quietly():
    """Import TensorFlow and Keras without the C++ start-up chatter on stderr.

    TensorFlow prints CUDA probing lines from C++ before Python can filter them; the
    file descriptor is redirected for the import only, and what was printed is shown
    again if the import fails.
    """

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401  (imports TensorFlow as its backend)
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_keras_quietly():
    """Import Keras on its backend: with TensorFlow's chatter held back when TensorFlow is
    the backend, and without importing TensorFlow at all on JAX or torch."""
    if keras_backend_name() == "tensorflow":
        import_tensorflow_quietly()
    import keras  # noqa: F401
