"""Rows in, arrays out: the data sets, the splits and their scalers (fitted on the training
rows only), a CSV of numbers read with one sentence per problem. No Keras, no TensorFlow."""

from common._exports import lazy_exports

_EXPORTS = {"load_dataset": "datasets", "Dataset": "datasets", "fold_datasets": "datasets",
            "metric_name": "datasets", "DataError": "csvfile", "parse_numeric_csv": "csvfile"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
