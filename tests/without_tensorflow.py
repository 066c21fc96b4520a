"""Run a script as on a machine without TensorFlow: `import tensorflow` fails in this process,
as it does where TensorFlow is not installed. Afterwards one line tells whether anything of
TensorFlow was imported after all.

    KERAS_BACKEND=jax python tests/without_tensorflow.py demo_keras.py --epochs 50 --no-show
"""

import os
import runpy
import sys

sys.modules["tensorflow"] = None  # every import of tensorflow (or tensorflow.x) now fails


def imported():
    return sorted(name for name, module in sys.modules.items()
                  if module is not None and (name == "tensorflow"
                                             or name.startswith("tensorflow.")))


if __name__ == "__main__":
    script, sys.argv = sys.argv[1], sys.argv[1:]
    sys.path[0] = os.path.dirname(os.path.abspath(script))  # as `python script` would
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        print(f"tensorflow modules imported: {imported()}", flush=True)
