"""What small DIGITS networks can do from scratch (#30's capacity row): the penalty's picks
against networks of the same size whose pixels a simple ranking chose.

    python benchmarks/capacity.py              # seeds 0-4, two sizes, two rankings: about 5 minutes
    python benchmarks/capacity.py --seeds 1 --no-save

For each seed, the split the demos use (`load_dataset("digits", seed, val_fraction=0.2)`: the
run's own training rows and validation split, the test split apart), K pixels are ranked on the
training rows only, by their variance or by an L1 logistic regression (scikit-learn, C = 0.05:
the sum of |coefficient| over the ten classes), and a K-H1-H2-10 ReLU network is trained from
scratch on those pixels: Adam 1e-3, batches of 300, up to 1000 epochs, early stopping on the
validation split (patience 50, the best weights kept), then its test accuracy read once. Sizes:
#30's target (32 pixels, 12-6 hidden: 50 % and 30 %) and what the tolerance rule reached with
the penalty (34 pixels, 7-7 hidden: 53 % and 23 %). Written to latest.json under "capacity".
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = {"target": (32, (12, 6)), "tolerance picks": (34, (7, 7))}


def ranked_pixels(x, y, ranking, count):
    """The `count` pixels a ranking puts first, from training rows (x, y) only."""
    if ranking == "variance":
        scores = x.var(axis=0)
    else:
        import sklearn
        from sklearn.linear_model import LogisticRegression

        # scikit-learn 1.8 names the L1 penalty by l1_ratio alone (penalty= is deprecated).
        lasso = ({"l1_ratio": 1.0} if tuple(map(int, sklearn.__version__.split(".")[:2])) >=
                 (1, 8) else {"penalty": "l1"})
        model = LogisticRegression(C=0.05, solver="saga", max_iter=5000, random_state=0,
                                   **lasso).fit(x, y)
        scores = np.abs(model.coef_).sum(axis=0)
    return np.sort(np.argsort(-scores, kind="stable")[:count])


def trained_accuracy(data, pixels, hidden, seed):
    """A network on `pixels`, trained from scratch with early stopping on validation; its
    test accuracy (read once) and the epochs it ran."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((len(pixels),)),
                              *[keras.layers.Dense(width, "relu") for width in hidden],
                              keras.layers.Dense(10, "softmax")])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(data.x_train[:, pixels], data.y_train, batch_size=300, epochs=1000,
                        validation_data=(data.x_val[:, pixels], data.y_val), verbose=0,
                        callbacks=[keras.callbacks.EarlyStopping(
                            patience=50, restore_best_weights=True)])
    predicted = np.argmax(model.predict(data.x_test[:, pixels], verbose=0), axis=1)
    return float(np.mean(predicted == data.y_test)), len(history.history["loss"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 .. N-1")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args(argv)
    from common.data.datasets import load_dataset

    rows = []
    for seed in range(args.seeds):
        data = load_dataset("digits", seed=seed, val_fraction=0.2)
        for size, (count, hidden) in SIZES.items():
            for ranking in ("variance", "L1 logistic"):
                pixels = ranked_pixels(data.x_train, data.y_train, ranking, count)
                accuracy, epochs = trained_accuracy(data, pixels, hidden, seed)
                rows.append({"seed": seed, "size": size, "ranking": ranking, "pixels": count,
                             "hidden": list(hidden), "epochs": epochs,
                             "test_accuracy": accuracy})
                print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for size in SIZES:
        for ranking in ("variance", "L1 logistic"):
            values = [row["test_accuracy"] for row in rows
                      if row["size"] == size and row["ranking"] == ranking]
            summary[f"{size}, {ranking}"] = {"mean": round(statistics.mean(values), 4),
                                             "min": round(min(values), 4),
                                             "max": round(max(values), 4)}
    print(json.dumps(summary, indent=2))
    if not args.no_save:
        latest = ROOT / "benchmarks" / "results" / "latest.json"
        stored = json.loads(latest.read_text())
        stored["capacity"] = {"date": time.strftime("%Y-%m-%d"), "sizes": {
            size: {"pixels": count, "hidden": list(hidden)}
            for size, (count, hidden) in SIZES.items()}, "rows": rows, "summary": summary}
        latest.write_text(json.dumps(stored, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
