"""Sparsity against accuracy: penalty families and strengths over seeds, pruned models on test,
and whether the targets taken from the paper are met."""

import statistics

from common.config import Config, preset_settings


def penalty_config(penalty, strength):
    """The Config strengths of one penalty family at one strength."""
    none = dict(group_strength=0.0, l1=0.0, l2=0.0)
    return {"none": none, "l2": {**none, "l2": strength}, "l1": {**none, "l1": strength},
            "gl": {**none, "group_strength": strength},
            "sgl": {**none, "group_strength": strength, "l1": strength}}[penalty]


def train_and_prune(data, config):
    """Train with the demos' fit in chunks (lean: no monitoring), prune, evaluate the pruned
    model on test."""
    import keras
    import tensorflow as tf

    from common.batches import training_batches
    from common.fitting import finetune, fit_in_chunks
    from common.model import build_model, evaluate, loss_name, make_optimizer, make_regularizer
    from common.pruning import prune_model

    keras.utils.set_random_seed(config.seed)
    regularizer = make_regularizer(config)
    model = build_model(data, config.hidden, regularizer)
    batches = training_batches(tf.distribute.get_strategy(), data.x_train, data.y_train,
                               config.batch_size, config.seed, with_rows=False)
    fit_in_chunks(model, batches.dataset, config.epochs, batches.steps_per_epoch, 50,
                  dict(optimizer=make_optimizer(config, regularizer), loss=loss_name(data.task)))
    pruned, report = prune_model(model, config.threshold, data.feature_names)
    if config.finetune:
        finetune(pruned, data.task, data.x_train[:, report.kept_inputs], data.y_train,
                 config.finetune, config.batch_size, config.lr, config.seed)
    metrics = evaluate(pruned, data, x=data.x_test[:, report.kept_inputs])
    return metrics, report


SETUPS = {
    # The original demo: 13-20-15-1, 1500 full-batch steps.
    "boston": dict(hidden=(20, 15), epochs=1500, batch_size=None, metric="rmse",
                   fixed=1e-3, sweep=[1e-3, 3e-3, 1e-2], proximal_sweep=[1e-3, 3e-3, 5e-3]),
    # The paper's DIGITS setup: 64-40-20-10, batches of 300, 200 epochs, lambda 10^-3.5.
    "digits": dict(hidden=(40, 20), epochs=200, batch_size=300, metric="accuracy",
                   fixed=10**-3.5, sweep=[10**-3.5, 1e-3, 3e-3],
                   proximal_sweep=[10**-3.5, 1e-3, 2e-3]),
}


def sparsity_cases(setup, sweep_size):
    """(penalty, lambda, solver, preset) for every row of one data set."""
    sweep = setup["sweep"][:sweep_size]
    proximal_sweep = setup["proximal_sweep"][:sweep_size]
    cases = [("none", 0.0, "subgradient", None), ("l2", setup["fixed"], "subgradient", None),
             ("l1", setup["fixed"], "subgradient", None)]
    cases += [(penalty, strength, "subgradient", None)
              for penalty in ("gl", "sgl") for strength in sweep]
    cases += [(penalty, strength, "proximal", None)
              for penalty in ("gl", "sgl") for strength in proximal_sweep]
    return cases + [("compact", None, "proximal", "compact")]


def case_config(name, setup, epochs, seed, penalty, strength, solver, preset):
    base = dict(dataset=name, hidden=setup["hidden"], epochs=epochs,
                batch_size=setup["batch_size"], seed=seed)
    if preset:
        settings = preset_settings(preset, name)
        finetune = max(settings["finetune"] * epochs // setup["epochs"], 1)
        return Config(**base, preset=preset, **{**settings, "finetune": finetune})
    return Config(**base, solver=solver, **penalty_config(penalty, strength))


def sparsity(size):
    from common.data import load_dataset

    seeds = list(range(size["seeds"]))
    rows = []
    for name in size["datasets"]:
        setup = SETUPS[name]
        epochs = max(setup["epochs"] // size["epoch_divisor"], 2)
        datasets = {seed: load_dataset(name, seed=seed) for seed in seeds}
        for penalty, strength, solver, preset in sparsity_cases(setup, size["sweep"]):
            runs = []
            for seed in seeds:
                config = case_config(name, setup, epochs, seed, penalty, strength, solver,
                                     preset)
                metrics, report = train_and_prune(datasets[seed], config)
                runs.append((metrics[setup["metric"]], report))
            values = [value for value, _ in runs]
            if preset:
                penalty = "sgl" if config.l1 else "gl"
            rows.append({
                "dataset": name, "penalty": penalty,
                "lambda": config.group_strength or config.l1 or config.l2,
                "solver": config.solver, "preset": preset, "freeze_zeros": config.freeze_zeros,
                "l1": config.l1, "finetune_epochs": config.finetune,
                "seeds": len(seeds), "epochs": epochs, "metric": setup["metric"],
                "metric_mean": statistics.mean(values),
                "metric_sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                "inputs_kept_mean": statistics.mean(r.architecture_after[0] for _, r in runs),
                "inputs_total": runs[0][1].architecture_before[0],
                "hidden_kept_mean": statistics.mean(sum(r.architecture_after[1:-1])
                                                    for _, r in runs),
                "hidden_total": sum(runs[0][1].architecture_before[1:-1]),
                "params_after_mean": statistics.mean(r.params_after for _, r in runs)})
            row = rows[-1]
            print(f"  {name:7s} {penalty:7s} {row['lambda']:.5f} {row['solver']:11s}: "
                  f"{row['metric']} {row['metric_mean']:.4f}, inputs "
                  f"{row['inputs_kept_mean']:.1f}, hidden {row['hidden_kept_mean']:.1f}",
                  flush=True)
    return rows


def targets(rows):
    """The paper's claim made concrete: whether some row reaches each target, and the
    rows that come closest from either side."""
    def label(row):
        return f"{row['penalty']} {row['solver']} lambda {row['lambda']:.2e}"

    digits = [row for row in rows if row["dataset"] == "digits"]
    boston = [row for row in rows if row["dataset"] == "boston"]
    result = {}
    if digits:
        l2 = [row for row in digits if row["penalty"] == "l2"][0]["metric_mean"]
        sgl = [row for row in digits if row["l1"] > 0 and row["penalty"] != "l1"]
        small = [row for row in sgl if row["hidden_kept_mean"] <= 0.4 * row["hidden_total"]
                 and row["inputs_kept_mean"] <= 0.7 * row["inputs_total"]]
        accurate = [row for row in sgl if row["metric_mean"] >= l2 - 0.02]
        result["digits"] = {
            "target": "sgl keeps <= 40% hidden and <= 70% inputs at accuracy >= L2 - 0.02",
            "l2_accuracy": l2, "met": any(row in accurate for row in small),
            "smallest_within_2_points": min(
                ((label(row), row["hidden_kept_mean"] / row["hidden_total"],
                  row["inputs_kept_mean"] / row["inputs_total"], row["metric_mean"])
                 for row in accurate), key=lambda item: item[1], default=None),
            "most_accurate_that_small": max(
                ((label(row), row["metric_mean"]) for row in small),
                key=lambda item: item[1], default=None)}
    if boston:
        none = [row for row in boston if row["penalty"] == "none"][0]["metric_mean"]
        small = [row for row in boston if row["inputs_kept_mean"] + row["hidden_kept_mean"] <= 16]
        accurate = [row for row in boston if row["metric_mean"] <= 1.10 * none]
        result["boston"] = {
            "target": "<= 16 of 48 units at test RMSE <= 1.10 x unregularized",
            "unregularized_rmse": none, "met": any(row in accurate for row in small),
            "most_accurate_that_small": min(
                ((label(row), row["inputs_kept_mean"] + row["hidden_kept_mean"],
                  row["metric_mean"] / none) for row in small),
                key=lambda item: item[2], default=None),
            "smallest_within_10_percent": min(
                ((label(row), row["inputs_kept_mean"] + row["hidden_kept_mean"],
                  row["metric_mean"] / none) for row in accurate),
                key=lambda item: item[1], default=None)}
    return result
