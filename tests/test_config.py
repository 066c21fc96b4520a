"""The shared command line: defaults of the original, one-line errors before TensorFlow loads."""

import subprocess
import sys

import pytest

from common.run.config import Config, parse_config
from tests.helpers import ROOT, run_script


def test_defaults_are_the_original_experiment():
    tf_config, keras_config = parse_config([], "tensorflow"), parse_config([], "keras")
    assert (tf_config.epochs, keras_config.epochs) == (1500, 2500)
    assert tf_config.hidden == (20, 15) and tf_config.lr == 1e-3 and tf_config.group_strength == 1e-3
    assert (tf_config.l1, tf_config.l2, tf_config.threshold, tf_config.seed) == (0, 0, 1e-3, 0)
    assert tf_config.batch_size is None and tf_config.logdir == "summaries"
    assert tf_config == Config(epochs=1500)


def test_flags_fill_the_config():
    config = parse_config(["--dataset", "digits", "--hidden", "40", "20", "--batch-size", "300",
                           "--group", "3e-4", "--l1", "1e-4", "--no-show"], "keras")
    assert config.dataset == "digits" and config.hidden == (40, 20)
    assert config.batch_size == 300 and config.l1 == 1e-4 and config.no_show
    assert parse_config(["--csv", "x.csv", "--target", "y"]).dataset == "csv"


@pytest.mark.parametrize("argv", [
    ["--group", "-1"], ["--l1", "nan"], ["--epochs", "0"], ["--hidden", "20", "-3"],
    ["--threshold", "-0.1"], ["--dataset", "mnist"], ["--lr", "0"], ["--csv", "x.csv"],
    ["--save-model", "model.h5"], ["--epochs", "ten"],
])
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_config(argv)
    assert stop.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_a_bad_flag_is_one_line_before_tensorflow_loads():
    # Run in a fresh interpreter: parsing must not import TensorFlow at all.
    check = ("import sys; from demo_tensorflow import main\n"
             "try:\n    main(['--group', '-1'])\n"
             "except SystemExit as stop:\n"
             "    print('tensorflow' in sys.modules, stop.code)\n")
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout.split() == ["False", "2"]


@pytest.mark.parametrize("script", ["demo_tensorflow.py", "demo_keras.py"])
def test_scripts_report_bad_input_in_one_sentence(script, tmp_path):
    result = run_script(script, "--epochs", "-5")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--epochs: must be positive, got -5" in result.stderr
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,y\n1,2\n3,oops\n" + "4,5\n" * 10)
    result = run_script(script, "--csv", str(bad_csv), "--target", "y")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {bad_csv}, line 3, column 'y': 'oops' is not a number"


def test_solver_flags_and_their_threshold():
    assert parse_config([]).threshold == 1e-3 and parse_config([]).solver == "subgradient"
    proximal = parse_config(["--solver", "proximal", "--freeze-zeros"])
    assert proximal.threshold == 0.0 and proximal.freeze_zeros
    assert parse_config(["--solver", "proximal", "--threshold", "0.01"]).threshold == 0.01


def test_freeze_zeros_needs_the_proximal_solver(capsys):
    with pytest.raises(SystemExit) as stop:
        parse_config(["--freeze-zeros"])
    assert stop.value.code == 2
    assert "--freeze-zeros needs --solver proximal" in capsys.readouterr().err


def test_preset_compact_is_the_path_with_exact_zeros():
    """No shipped setting may come from the test split: compact is the validation path."""
    compact = parse_config(["--preset", "compact"])
    assert compact.path and compact.solver == "proximal" and compact.threshold == 0.0
    assert compact.group_strength == 1e-3 and compact.finetune == 1000
    assert compact.patience == 50 and compact.uses_validation
    assert compact.adaptive == 1.0
    # Each point three times as long as the dense network, chosen on 5 folds (1/5 of the
    # rows each).
    assert compact.epochs == 1500 and compact.path_epochs == 4500 and compact.cv == 5
    assert compact.path_points == 40 and compact.path_settle == 1e-3
    assert parse_config(["--preset", "compact", "--path-settle", "1e-2"]).path_settle == 1e-2
    assert parse_config(["--preset", "compact", "--path-settle", "0"]).path_settle == 0  # off
    assert compact.val_fraction == 0.2
    assert parse_config(["--preset", "compact"], "keras").path_epochs == 7500
    assert parse_config(["--preset", "compact", "--epochs", "300"]).path_epochs == 900
    assert parse_config(["--preset", "compact", "--path-epochs", "50"]).path_epochs == 50
    own_split = parse_config(["--preset", "compact", "--val-fraction", "0.3"])
    assert own_split.cv is None and own_split.val_fraction == 0.3
    assert parse_config(["--preset", "compact", "--cv", "3"]).val_fraction == 1 / 3
    l1_only = parse_config(["--preset", "compact", "--group", "0", "--l1", "1e-3"])
    assert l1_only.adaptive is None and l1_only.finetune == 1000
    mine = parse_config(["--preset", "compact", "--solver", "subgradient", "--select", "min"])
    assert mine.path and mine.solver == "subgradient" and mine.select == "min"
    assert mine.threshold == 1e-3


@pytest.mark.parametrize("argv, message", [
    (["--seed", "-1"], "--seed: must be between 0 and 4294967295, got -1"),
    (["--seed", "4294967296"], "--seed: must be between 0 and 4294967295, got 4294967296"),
    (["--threshold", "-1e-3"], "--threshold: must be a finite number >= 0, got -1e-3"),
    (["--hidden", "20,15"], "separated by spaces, not commas: --hidden 20 15"),
    (["--target", "y"], "--target names a column of --csv PATH"),
    (["--save-model", "/no/such/dir/m.keras"], "the folder /no/such/dir does not exist"),
    (["--logdir", "/proc/no-such-run-folder"], "--logdir /proc/no-such-run-folder: cannot write"),
    (["--logdir", ""], "--logdir is empty: name a folder"),
    (["--cv", "5"], "--cv belongs to --path; add --path or drop it"),
    (["--path", "--cv", "1"], "--cv: must be between 2 and 20, got 1"),
    (["--path", "--cv", "5", "--val-fraction", "0.3"],
     "--cv 5 holds out 1/5 of the training rows in each fold; drop --val-fraction"),
])
def test_bad_input_is_one_line_pointing_to_help(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_config(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err
    assert err.count("\n") == 1 and err.rstrip().endswith("(see --help)")


def test_output_paths_are_checked_before_training(tmp_path, capsys):
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    folder_named_like_a_model = tmp_path / "x.keras"
    folder_named_like_a_model.mkdir()
    for argv, message in [
            (["--logdir", str(a_file)], "this is a file, not a folder"),
            (["--logdir", str(tmp_path), "--save-model", str(folder_named_like_a_model)],
             "this is a folder")]:
        with pytest.raises(SystemExit) as stop:
            parse_config(argv)
        assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("tf_config, message", [
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     "task index 2 does not exist: its cluster has 2 'worker' task(s)"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
     "task type 'chief' is not in its cluster"),
    ('{"cluster": ["a:1"]}', "TF_CONFIG must be JSON like"),
])
def test_tf_config_must_name_a_task_of_its_cluster(tf_config, message, monkeypatch, capsys):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(SystemExit) as stop:
        parse_config(["--strategy", "multiworker"])
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_help_shows_every_default_and_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        parse_config(["--help"])
    out = capsys.readouterr().out
    text = " ".join(out.split("options:")[1].split())
    # The flags in groups, in the order a run uses them.
    groups = ["data:", "network and training:", "penalty:", "choosing lambda", "after training:",
              "output and distribution:"]
    assert [out.index(f"\n{group}") for group in groups] == sorted(
        out.index(f"\n{group}") for group in groups)
    assert out.index("\n  --finetune") > out.index("\nafter training:") > out.index("\n  --cv K")
    for flag, default in [("--lr LR", "0.001"), ("--group LAMBDA", "0.001"),
                          ("--l1 STRENGTH", "0.0"), ("--l2 L2", "0.0"), ("--seed SEED", "0"),
                          ("--eval-every EVAL_EVERY", "25"), ("--epochs EPOCHS", "1500")]:
        start = text.index(flag)
        assert f"(default {default})" in text[start:text.index(" --", start + len(flag))], flag
    assert "seeds the split" in text and "143 terminated" in text


@pytest.mark.parametrize("argv, message", [
    (["--path", "--path-points", "0"], "--path-points: must be positive, got 0"),
    (["--path", "--path-lambdas", "1e-3", "1e-4"], "--path-lambdas must increase strictly"),
    (["--path", "--path-lambdas", "1e-3", "1e-3"], "--path-lambdas must increase strictly"),
    (["--path", "--path-lambdas", "-1e-3"], "--path-lambdas: must be a finite number >= 0"),
    (["--path", "--val-fraction", "0.6"], "--val-fraction: must be above 0 and at most 0.5"),
    (["--path", "--val-fraction", "0"], "--val-fraction: must be above 0 and at most 0.5"),
    (["--path", "--max-units", "2"], "--max-units 2 is below the smallest network (3 units"),
    (["--path", "--group", "0"], "--group or --l1 must be above 0"),
    (["--select", "min"], "--select belongs to --path"),
    (["--path-settle", "1e-3"], "--path-settle belongs to --path"),
    (["--path", "--path-settle", "-1e-3"], "--path-settle: must be"),
    (["--path", "--path-settle", "2"], "--path-settle: must be"),
    (["--path", "--strategy", "mirrored"], "--path runs on one device"),
    (["--group", "1e-3", "2e-3"], "--group takes one value or one per kernel (3 for --hidden 20 15)"),
    (["--l1", "1", "2", "3", "4"], "--l1 takes one value or one per kernel (3 for"),
    (["--adaptive", "--group", "0"], "--adaptive weighs the group Lasso: --group must be above 0"),
    (["--patience", "5"], "--patience stops --finetune early"),
    (["--finetune", "9", "--patience", "5", "--path-points", "3"], "--path-points belongs to"),
    # Left the command line (their benchmark rows showed no smaller network at the same error).
    (["--layer-scaling", "lambda-max"], "unrecognized arguments: --layer-scaling"),
    (["--mcp", "3"], "unrecognized arguments: --mcp"),
    (["--retrain", "9"], "unrecognized arguments: --retrain"),
])
def test_path_flags_are_checked_before_training(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_config(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_the_path_defaults_to_exact_zeros_and_a_validation_split():
    config = parse_config(["--path"])
    assert config.solver == "proximal" and config.threshold == 0.0
    assert (config.val_fraction, config.path_points, config.select) == (0.2, 20, "1se")
    assert parse_config(["--path", "--solver", "subgradient"]).threshold == 1e-3


@pytest.mark.slow
def test_a_too_small_validation_split_is_one_line_before_tensorflow(tmp_path):
    rows = "".join(f"{i},{i % 5},{2 * i}\n" for i in range(24))
    path = tmp_path / "tiny.csv"
    path.write_text("a,b,y\n" + rows)
    result = run_script("demo_tensorflow.py", "--path", "--csv", str(path), "--target", "y")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().endswith("a validation split needs at least 10")


def test_strategy_on_torch_is_one_line_and_exit_2():
    result = run_script("demo_keras.py", "--strategy", "mirrored", env={"KERAS_BACKEND": "torch"})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "demo_keras.py: error: --strategy runs on TensorFlow (tf.distribute) or JAX (Keras' "
        "DataParallel), and Keras runs on torch here: run with KERAS_BACKEND=tensorflow or jax, "
        "or without --strategy (see --help)"]


def test_per_layer_strengths_and_the_new_stages_fill_the_config():
    config = parse_config(["--group", "1e-3", "3e-3", "3e-3", "--l1", "0", "1e-4", "0",
                           "--adaptive", "--finetune", "500", "--patience", "20",
                           "--val-fraction", "0.25"])
    assert config.group_layers == (1e-3, 3e-3, 3e-3) and config.group_strength == 3e-3
    assert config.l1_layers == (0.0, 1e-4, 0.0) and config.adaptive == 1.0
    assert config.finetune == 500 and config.patience == 20 and config.uses_validation
    assert config.kernel_strengths() == [
        (1e-3, 0.0), (3e-3, 1e-4), (3e-3, 0.0)]
    assert parse_config(["--adaptive", "0.5"]).adaptive == 0.5
    plain = parse_config([])
    assert plain.group_layers is None and plain.adaptive is None and not plain.uses_validation


def test_cv_holds_out_one_fold_of_the_training_rows():
    config = parse_config(["--path", "--cv", "4"])
    assert config.cv == 4 and config.val_fraction == 0.25 and config.uses_validation
    assert parse_config(["--path"]).cv is None


@pytest.mark.parametrize("argv, message", [
    # Bounds that keep float32 finite and memory sane (#29 item 8).
    (["--path", "--path-points", "2000000000"], "--path-points: must be at most 1000"),
    (["--path", "--path-lambdas", "1e-3", "1e300"], "--path-lambdas: must be at most 1e+06"),
    (["--adaptive", "1e300"], "--adaptive: must be at most 4"),
    (["--lr", "1e300"], "--lr: must be at most 1e+30"),
    (["--hidden", "20", "1000000000"], "--hidden: must be at most 100000"),
    (["--eval-every", "1000000000"], "--eval-every: must be at most 10000"),
    # Contradictions (#29 item 12).
    (["--path", "--path-points", "3", "--path-lambdas", "1e-3"],
     "--path-lambdas replaces the grid of --path-points: give one of them"),
    (["--path", "--select", "min", "--max-units", "10"], "--max-units K is a selection rule"),
])
def test_absurd_and_contradictory_requests_are_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_config(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_the_path_takes_freeze_zeros_since_it_picks_the_proximal_solver():
    """--path chooses --solver proximal, so --freeze-zeros is meaningful (#29 item 10)."""
    config = parse_config(["--path", "--freeze-zeros"])
    assert config.solver == "proximal" and config.freeze_zeros


@pytest.mark.parametrize("backend, message", [
    ("bogus", "KERAS_BACKEND=bogus is not a Keras backend: use one of tensorflow, jax"),
    ("openvino", "Keras runs on openvino here, and openvino is not installed: pip install"),
])
def test_a_backend_that_cannot_run_is_one_line_and_exit_2(backend, message):
    """#29 item 9: a 53-line ModuleNotFoundError traceback before."""
    import importlib.util

    if importlib.util.find_spec(backend) is not None:
        pytest.skip(f"{backend} is installed here")
    result = run_script("demo_keras.py", env={"KERAS_BACKEND": backend})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_the_config_line_of_a_path_run_leaves_out_the_base_strength(capsys):
    """On a path run lambda is what the path chooses: `group_strength=0.001` printed beside
    it read as the strength trained (#32 item 6)."""
    from common.outputs.report import print_config

    for argv, shown in [([], True), (["--path"], False), (["--path", "--group", "1", "2", "3"],
                                                          False)]:
        print_config(parse_config(argv, "keras").applying(), "keras")
        line = capsys.readouterr().out
        assert ("group_strength=" in line) == shown, argv
        assert ("group_layers=" in line) == ("--group" in argv)


def test_a_run_that_ends_before_its_planned_total_gets_a_last_progress_line():
    """A path's stop rule ends it at 440 of a planned 700 steps: the bar used to stop at its
    last tenth with no final line (#32 item 11)."""
    import io

    from common.outputs.report import ProgressBar

    stream = io.StringIO()
    bar = ProgressBar(700, stream=stream)
    for done in range(20, 441, 20):
        bar.update(done, loss="0.1")
    bar.close(440, "the validation loss stayed above 2 x the best")
    last = stream.getvalue().splitlines()[-1]
    assert "440/440" in last
    assert last.endswith("ended the validation loss stayed above 2 x the best")
    stream = io.StringIO()
    bar = ProgressBar(100, stream=stream)
    bar.update(100)
    bar.close(100, "unused")  # a run that reached its total: no extra line
    assert len(stream.getvalue().splitlines()) == 1
